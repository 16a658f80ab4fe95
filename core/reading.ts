import { z } from 'zod'
import type { ErrorCode } from './errors.ts'

/**
 * Payload v1, published by a wearable on `vitals/{deviceId}`: one reading, or a batch
 * `{ v: 1, readings: [...] }` (store-and-forward replays after an offline period).
 *
 * A watch measures heart rate only; a cuff measures systolic and diastolic pressure
 * (and usually pulse). So `hr` and the `sys`/`dia` pair are each optional, but a
 * reading carries at least one of them, and `sys` never comes without `dia`.
 */
export const ActivitySchema = z.enum(['rest', 'sleep', 'light', 'moderate', 'vigorous'])

const readingFields = {
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).describe('device sequence number, unique per device; a resend reuses it'),
  ts: z.union([z.number().int().positive(), z.iso.datetime({ offset: true })]).describe('measurement time: epoch milliseconds or ISO 8601'),
  hr: z.number().optional().describe('heart rate, beats per minute'),
  sys: z.number().optional().describe('systolic blood pressure, mmHg'),
  dia: z.number().optional().describe('diastolic blood pressure, mmHg'),
  activity: ActivitySchema.optional().describe('what the wearer was doing'),
  motion: z.boolean().optional().describe('the device detected motion during the measurement (possible artefact)'),
  confidence: z.number().min(0).max(1).optional().describe('device signal quality, 0..1'),
}

export const BatchedReadingSchema = z.strictObject(readingFields)
export const SingleReadingSchema = z.strictObject({ v: z.literal(1), ...readingFields })
export const MAX_BATCH = 500
export const BatchSchema = z.strictObject({
  v: z.literal(1),
  readings: z.array(z.unknown()).min(1).max(MAX_BATCH),
})

export type ReadingInput = z.infer<typeof BatchedReadingSchema>
export type Activity = z.infer<typeof ActivitySchema>

/** A validated reading, normalised (ts in epoch ms), not yet bound to a resident. */
export interface Reading {
  seq: number
  ts: number
  hr?: number
  sys?: number
  dia?: number
  activity?: Activity
  motion?: boolean
  confidence?: number
}

/**
 * What rules take (alerting/engine.ts): they look at ts, hr, sys, dia and activity only, which
 * is what a rule-set backtest reads from a store (EmbeddedStore.replayRange); the other fields
 * of a Reading may be there or not.
 */
export type RuleReading = Pick<Reading, 'ts' | 'hr' | 'sys' | 'dia' | 'activity'> & Partial<Reading>
/** The fields besides ts that rules may look at; a backtest reads only those its rule sets do (alerting/engine.ts fieldsRead). */
export const RULE_FIELDS = ['hr', 'sys', 'dia', 'activity'] as const
export type RuleField = typeof RULE_FIELDS[number]

/** A reading as it is stored: bound to its device and the resident wearing it. */
export interface StoredReading extends Reading {
  deviceId: string
  residentId: string
}

export interface ReadingError {
  code: ErrorCode
  message: string
  /** the reading's seq, when the error concerns one reading */
  seq?: number
  /** every seq the error concerns (a whole batch refused: each of its readings' seqs) */
  seqs?: number[]
}

export interface DecodedPayload {
  readings: Reading[]
  errors: ReadingError[]
}

/**
 * Plausibility limits for sensor errors. No standard exists (reference §5): these are
 * project heuristics kept well outside every clinically scored value (NEWS2 scores
 * HR <= 40 and SBP >= 220; crisis is DBP > 120) so a real extreme is never rejected.
 */
export interface PlausibilityLimits {
  hr: [number, number]
  sys: [number, number]
  dia: [number, number]
  /** how far in the future a timestamp may be (device clock drift) */
  maxFutureMs: number
  /** how old a reading may be when it arrives (store-and-forward) */
  maxAgeMs: number
}

export const defaultPlausibility: PlausibilityLimits = {
  hr: [20, 300],
  sys: [40, 300],
  dia: [20, 200],
  maxFutureMs: 5 * 60_000,
  maxAgeMs: 30 * 24 * 3600_000,
}

function describeIssue (issue: z.core.$ZodIssue): string {
  const path = issue.path.length ? issue.path.join('.') : 'payload'
  return `${path}: ${issue.message}`
}

/**
 * The seqs a payload carries (one reading, or each reading of a batch), as far as they can be
 * read: so an error about the whole message (rate limit, size, batch shape) names every seq
 * the device must resend or drop. Never throws; [] when the payload is not JSON.
 */
export function seqsOf (payload: Buffer | Uint8Array | string): number[] {
  let raw: unknown
  try { raw = JSON.parse(typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : Buffer.from(payload).toString('utf8')) } catch { return [] }
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && 'readings' in raw) {
    const items = (raw as { readings: unknown }).readings
    if (!Array.isArray(items)) return []
    const out: number[] = []
    for (const item of items.slice(0, MAX_BATCH * 2)) { const s = seqOf(item); if (s !== undefined) out.push(s) }
    return out
  }
  const s = seqOf(raw)
  return s === undefined ? [] : [s]
}

/** The error with the seqs it concerns: `seq` too when it is exactly one (what firmware matched on before `seqs`). */
export function withSeqs (e: ReadingError, seqs: readonly number[]): ReadingError {
  if (seqs.length === 0) return e
  return seqs.length === 1 ? { ...e, seq: seqs[0]!, seqs: [seqs[0]!] } : { ...e, seqs: [...seqs] }
}

function seqOf (raw: unknown): number | undefined {
  if (raw !== null && typeof raw === 'object' && 'seq' in raw) {
    const s = (raw as { seq: unknown }).seq
    if (typeof s === 'number' && Number.isSafeInteger(s)) return s
  }
  return undefined
}

/** Checks one reading's structure and plausibility; pure, so it is cheap to test. */
export function checkReading (input: ReadingInput, now: number, limits: PlausibilityLimits): Reading | ReadingError {
  const seq = input.seq
  const ts = typeof input.ts === 'number' ? input.ts : Date.parse(input.ts)
  const { hr, sys, dia } = input
  if (hr === undefined && sys === undefined && dia === undefined) {
    return { code: 'VM_INVALID_READING', message: 'a reading needs hr, or sys and dia, or all three', seq }
  }
  if ((sys === undefined) !== (dia === undefined)) {
    return { code: 'VM_INVALID_READING', message: 'sys and dia come together: send both or neither', seq }
  }
  if (hr !== undefined && (hr < limits.hr[0] || hr > limits.hr[1])) {
    return { code: 'VM_IMPLAUSIBLE_READING', message: `hr ${hr} is outside the plausible range ${limits.hr[0]}-${limits.hr[1]} bpm; measure again`, seq }
  }
  if (sys !== undefined && dia !== undefined) {
    if (sys < limits.sys[0] || sys > limits.sys[1]) {
      return { code: 'VM_IMPLAUSIBLE_READING', message: `sys ${sys} is outside the plausible range ${limits.sys[0]}-${limits.sys[1]} mmHg; measure again`, seq }
    }
    if (dia < limits.dia[0] || dia > limits.dia[1]) {
      return { code: 'VM_IMPLAUSIBLE_READING', message: `dia ${dia} is outside the plausible range ${limits.dia[0]}-${limits.dia[1]} mmHg; measure again`, seq }
    }
    if (dia >= sys) {
      return { code: 'VM_IMPLAUSIBLE_READING', message: `dia ${dia} must be lower than sys ${sys}; measure again`, seq }
    }
  }
  if (ts > now + limits.maxFutureMs) {
    return { code: 'VM_IMPLAUSIBLE_READING', message: `ts ${new Date(ts).toISOString()} is in the future; check the device clock`, seq }
  }
  if (ts < now - limits.maxAgeMs) {
    return { code: 'VM_IMPLAUSIBLE_READING', message: `ts ${new Date(ts).toISOString()} is older than the accepted age of ${Math.round(limits.maxAgeMs / 3600_000)} h`, seq }
  }
  const r: Reading = { seq, ts }
  if (hr !== undefined) r.hr = hr
  if (sys !== undefined) r.sys = sys
  if (dia !== undefined) r.dia = dia
  if (input.activity !== undefined) r.activity = input.activity
  if (input.motion !== undefined) r.motion = input.motion
  if (input.confidence !== undefined) r.confidence = input.confidence
  return r
}

const ACTIVITY_SET = new Set<unknown>(ActivitySchema.options)
const num = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x)

/**
 * The schema's own check for the common case (every field present is of its type, ts in
 * epoch ms, no unknown key), without zod's cost; anything else goes to zod, which also
 * words the error. `test/reading.test.ts` checks that the two agree.
 */
export function fastReading (raw: unknown, single: boolean): ReadingInput | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined
  const o = raw as Record<string, unknown>
  let n = 0
  for (const key in o) {
    n++
    const x = o[key]
    switch (key) {
      case 'v': if (!single || x !== 1) return undefined; break
      case 'seq': if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return undefined; break
      case 'ts': if (typeof x !== 'number' || !Number.isSafeInteger(x) || x <= 0) return undefined; break
      case 'hr': case 'sys': case 'dia': if (!num(x)) return undefined; break
      case 'activity': if (!ACTIVITY_SET.has(x)) return undefined; break
      case 'motion': if (typeof x !== 'boolean') return undefined; break
      case 'confidence': if (!num(x) || (x as number) < 0 || (x as number) > 1) return undefined; break
      default: return undefined
    }
  }
  if (o.seq === undefined || o.ts === undefined || (single && o.v === undefined)) return undefined
  return n > 0 ? o as unknown as ReadingInput : undefined
}

function pushChecked (out: DecodedPayload, raw: unknown, schema: typeof BatchedReadingSchema | typeof SingleReadingSchema, now: number, limits: PlausibilityLimits): void {
  const fast = fastReading(raw, schema === SingleReadingSchema)
  if (fast !== undefined) {
    const r = checkReading(fast, now, limits)
    if ('code' in r) out.errors.push(r)
    else out.readings.push(r)
    return
  }
  const parsed = schema.safeParse(raw)
  if (!parsed.success) {
    const seq = seqOf(raw)
    const err: ReadingError = { code: 'VM_INVALID_READING', message: parsed.error.issues.slice(0, 3).map(describeIssue).join('; ') }
    if (seq !== undefined) err.seq = seq
    out.errors.push(err)
    return
  }
  const r = checkReading(parsed.data, now, limits)
  if ('code' in r) out.errors.push(r)
  else out.readings.push(r)
}

/**
 * Decodes one MQTT payload. Never throws: each bad reading becomes an error with a
 * stable code, and the good readings of a batch are kept.
 */
export function decodePayload (payload: Buffer | Uint8Array, now: number, limits: PlausibilityLimits = defaultPlausibility): DecodedPayload {
  const out: DecodedPayload = { readings: [], errors: [] }
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.isBuffer(payload) ? payload.toString('utf8') : Buffer.from(payload).toString('utf8'))
  } catch (e) {
    out.errors.push({ code: 'VM_MALFORMED_PAYLOAD', message: `payload is not valid JSON: ${(e as Error).message}` })
    return out
  }
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && 'readings' in raw) {
    const batch = BatchSchema.safeParse(raw)
    if (!batch.success) {
      const items = (raw as { readings: unknown }).readings
      const seqs = Array.isArray(items) ? items.slice(0, MAX_BATCH * 2).map(seqOf).filter((x): x is number => x !== undefined) : []
      out.errors.push(withSeqs({ code: 'VM_INVALID_READING', message: batch.error.issues.slice(0, 3).map(describeIssue).join('; ') }, seqs))
      return out
    }
    for (const item of batch.data.readings) pushChecked(out, item, BatchedReadingSchema, now, limits)
    return out
  }
  pushChecked(out, raw, SingleReadingSchema, now, limits)
  return out
}
