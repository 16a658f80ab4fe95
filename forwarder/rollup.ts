import { z } from 'zod'
import { defaultPlausibility } from '../core/index.ts'
import { isTimeZone } from '../core/localtime.ts'
import { isWindow, windowAt, type WindowKind } from './windows.ts'

/** Counts in a roll-up: whole, non-negative, and far below what a region could ever hold in one window. */
export const MAX_ROLLUP_COUNT = 1e12
const count = z.number().int().min(0).max(MAX_ROLLUP_COUNT)
const RegionId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/)

/**
 * One metric's mergeable statistics as they travel: histogram keys are the whole-unit values
 * a reading can have, within the plausibility bounds readings are checked against
 * (core/reading.ts), so a window's histogram has at most a few hundred bins.
 */
function statsSchema (metric: 'hr' | 'sys' | 'dia') {
  const [lo, hi] = defaultPlausibility[metric]
  const value = z.number().min(lo).max(hi)
  return z.strictObject({
    n: count,
    min: value.nullable(),
    max: value.nullable(),
    sum: z.number().min(0).max(MAX_ROLLUP_COUNT * hi),
    bins: z.record(
      z.string().regex(/^(0|[1-9]\d{0,2})$/, `histogram keys are whole ${metric} values`).refine((k) => Number(k) >= lo && Number(k) <= hi, `histogram keys of ${metric} are within ${lo}-${hi}`),
      count.min(1),
    ),
  }).superRefine((s, ctx) => {
    const total = Object.values(s.bins).reduce((a, b) => a + b, 0)
    if (total !== s.n) ctx.addIssue({ code: 'custom', message: `the histogram holds ${total} values, n is ${s.n}` })
    if ((s.n === 0) !== (s.min === null) || (s.n === 0) !== (s.max === null)) ctx.addIssue({ code: 'custom', message: 'min and max are null exactly when n is 0' })
    if (s.min !== null && s.max !== null && s.min > s.max) ctx.addIssue({ code: 'custom', message: 'min is above max' })
    const slack = 1e-6 * Math.max(1, s.sum)
    if (s.min !== null && s.max !== null && (s.sum < s.n * s.min - slack || s.sum > s.n * s.max + slack)) ctx.addIssue({ code: 'custom', message: 'sum is not between n * min and n * max' })
  })
}

/** The body of `POST /v1/federation/rollups` and of every stored child roll-up: `vitalmesh.region-rollup/1`. */
export const RollupSchema = z.strictObject({
  schema: z.literal('vitalmesh.region-rollup/1'),
  region: RegionId,
  level: z.enum(['county', 'city', 'province', 'national']),
  window: z.strictObject({
    kind: z.string().regex(/^\d{1,6}[smhd]$/), start: z.number().int().min(0).max(8.64e15), end: z.number().int().min(0).max(8.64e15),
    /** the zone whose calendar a daily window follows (absent: UTC, as every roll-up was before local windows) */
    timeZone: z.string().min(1).max(64).refine(isTimeZone, 'an IANA time zone such as Asia/Shanghai').optional(),
  }),
  version: z.number().int().min(1).max(1e12),
  residents: count,
  hr: statsSchema('hr'), sys: statsSchema('sys'), dia: statsSchema('dia'),
  bpCategories: z.record(z.string().regex(/^[A-Za-z0-9 ._-]{1,64}$/), count).refine((c) => Object.keys(c).length <= 16, 'at most 16 BP categories'),
  children: z.array(RegionId).max(10_000),
  /** this node's own residents were left out of the window (fewer than its roll-up k) */
  suppressed: z.boolean().optional(),
}).superRefine((r, ctx) => {
  if (r.sys.n !== r.dia.n) ctx.addIssue({ code: 'custom', path: ['dia', 'n'], message: 'sys and dia come together: their n are equal' })
  const cats = Object.values(r.bpCategories).reduce((a, b) => a + b, 0)
  if (cats !== r.sys.n) ctx.addIssue({ code: 'custom', path: ['bpCategories'], message: `the BP categories count ${cats} readings, sys.n is ${r.sys.n}` })
  if (new Set(r.children).size !== r.children.length) ctx.addIssue({ code: 'custom', path: ['children'], message: 'children are listed once each' })
})

export type ValidRollup = z.infer<typeof RollupSchema>

/**
 * Checks a roll-up fully: the schema above, a window kind this node keeps, and a window that
 * is one of that kind in the roll-up's zone (forwarder/windows.ts: a day from local midnight
 * to local midnight, a fixed-size window aligned to its size). Pure: the API answers the message with
 * VM_INVALID_ROLLUP, the aggregator skips (and logs) a stored one that fails.
 */
export function checkRollup (body: unknown, windows: readonly WindowKind[]): { ok: true, rollup: ValidRollup } | { ok: false, message: string } {
  const r = RollupSchema.safeParse(body)
  if (!r.success) return { ok: false, message: r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') }
  const w = windows.find((x) => x.name === r.data.window.kind)
  if (!w) return { ok: false, message: `window ${r.data.window.kind} is not one this node keeps (${windows.map((x) => x.name).join(', ')})` }
  const { start, end, timeZone = 'UTC' } = r.data.window
  if (!isWindow(w, start, end, timeZone)) {
    const at = windowAt(w, start, timeZone)
    if (at.start !== start) return { ok: false, message: `window.start ${start} is not the start of a ${w.name} window in ${timeZone} (that window starts at ${at.start})` }
    return { ok: false, message: `window.end must be ${at.end}: the end of the ${w.name} window from ${start} in ${timeZone}` }
  }
  return { ok: true, rollup: r.data }
}
