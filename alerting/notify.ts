import type { Alert, Preferences } from './store.ts'
import { RANK } from './lifecycle.ts'

/** A change of an alert that someone could be told about. */
export interface Candidate {
  alert: Alert
  kind: 'open' | 'worse' | 'confirmed' | 'resolved'
  /** the reading it was decided on (device and seq), null for the clock's decisions */
  readingKey: string | null
  ruleSetId: string
  /** the alert as it was when this happened (it may resolve within the same readings) */
  snapshot?: Alert
  /** opened inside the cool-down after the same or a worse alert: not announced */
  cooled?: boolean
  /** when the cool-down ends (reading time): announced then if still open */
  cooledUntil?: number
}

export interface PlanContext {
  now: number
  /** the resident's active alerts after the changes */
  openOf(residentId: string): Alert[]
  preferences(residentId: string): Preferences
  timeZone(residentId: string): string
  /** the rule set whose wording this resident reads when rule sets agree */
  primaryRuleSet(residentId: string): string | undefined
}

export interface Plan {
  send: Alert[]
  held: { alert: Alert, reason: 'covered' | 'snoozed' | 'quiet-hours' | 'still-out-of-range' | 'already-over' | 'cooldown', by?: string }[]
}

/**
 * Who hears what, as a pure function: for one reading the resident gets at most one
 * notification per concern, the most severe verdict among the active rule sets (the
 * primary rule set's wording on a tie); a concern that is already as bad in another open
 * alert is not announced again; "back in range" is said only when no alert of that
 * concern is left. A snooze and quiet hours hold warnings and notes, never a critical.
 * Every alert still exists for clinicians and the API; only the push is planned here.
 */
export function planNotifications (cands: readonly Candidate[], ctx: PlanContext): Plan {
  const plan: Plan = { send: [], held: [] }
  // a historic alert opened and resolved by the same readings (a late batch whose newer readings are back in range): nothing to tell
  const opened = new Set(cands.filter((c) => c.kind === 'open' && c.alert.historic).map((c) => c.alert.id))
  const over = new Set(cands.filter((c) => c.kind === 'resolved' && opened.has(c.alert.id)).map((c) => c.alert.id))
  const groups = new Map<string, Candidate[]>()
  for (const c of cands) {
    if (over.has(c.alert.id)) { if (c.kind === 'open') plan.held.push({ alert: c.alert, reason: 'already-over' }); continue }
    // an announcement of an alert that has ended since (within the same readings)
    if (c.kind !== 'resolved' && c.alert.historic && c.alert.state !== 'open' && c.alert.state !== 'acknowledged') { plan.held.push({ alert: c.alert, reason: 'already-over' }); continue }
    // back in range: once per concern
    const key = c.kind === 'resolved' ? `r\u0000${c.alert.residentId}\u0000${c.alert.concern}` : `${c.alert.residentId}\u0000${c.readingKey ?? c.alert.id}\u0000${c.alert.concern}`
    let g = groups.get(key)
    if (!g) groups.set(key, g = [])
    g.push(c)
  }
  for (const g of groups.values()) {
    const first = g[0]!
    const res = first.alert.residentId
    if (first.kind === 'resolved') {
      const still = ctx.openOf(res).find((a) => a.concern === first.alert.concern)
      const best = g.reduce((b, c) => RANK[c.alert.severity] > RANK[b.alert.severity] ? c : b)
      for (const c of g) if (c !== best || still) plan.held.push({ alert: c.alert, reason: still ? 'still-out-of-range' : 'covered', by: still?.id ?? best.alert.id })
      if (!still) plan.send.push(best.alert)
      continue
    }
    const primary = ctx.primaryRuleSet(res)
    const best = g.reduce((b, c) => {
      const d = RANK[c.alert.severity] - RANK[b.alert.severity]
      if (d !== 0) return d > 0 ? c : b
      return c.ruleSetId === primary && b.ruleSetId !== primary ? c : b
    })
    for (const c of g) if (c !== best) plan.held.push({ alert: c.alert, reason: 'covered', by: best.alert.id })
    // already told as bad or worse by another open alert of this concern (opened by an earlier reading)
    const ids = new Set(g.map((c) => c.alert.id))
    const already = ctx.openOf(res).find((a) => !ids.has(a.id) && a.concern === best.alert.concern && RANK[a.severity] >= RANK[best.alert.severity] && !a.historic)
    if (already && best.kind !== 'confirmed') { plan.held.push({ alert: best.alert, reason: 'covered', by: already.id }); continue }
    const a = best.alert
    if (best.cooled && g.every((c) => c.cooled)) { plan.held.push({ alert: a, reason: 'cooldown' }); continue }
    if (a.severity !== 'critical') {
      const p = ctx.preferences(res)
      const until = p.snoozes[a.concern]
      if (until !== undefined && until > ctx.now) { plan.held.push({ alert: a, reason: 'snoozed' }); continue }
      if (inQuietHours(p.quietHours, ctx.timeZone(res), ctx.now)) { plan.held.push({ alert: a, reason: 'quiet-hours' }); continue }
    }
    plan.send.push(best.snapshot ?? a)
  }
  return plan
}

/** Whether `now` falls in quiet hours "HH:MM"–"HH:MM" in the zone (across midnight when start > end). */
export function inQuietHours (q: { start: string, end: string } | null, timeZone: string, now: number): boolean {
  if (!q) return false
  const minutes = (hhmm: string): number => { const [h, m] = hhmm.split(':').map(Number); return (h ?? 0) * 60 + (m ?? 0) }
  let parts: Intl.DateTimeFormatPart[]
  try { parts = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hour12: false }).formatToParts(now) } catch { return false }
  const h = Number(parts.find((p) => p.type === 'hour')?.value ?? 0) % 24
  const m = Number(parts.find((p) => p.type === 'minute')?.value ?? 0)
  const t = h * 60 + m
  const s = minutes(q.start); const e = minutes(q.end)
  return s <= e ? t >= s && t < e : t >= s || t < e
}
