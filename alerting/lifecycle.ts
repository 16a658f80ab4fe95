import type { Severity } from './ruleset.ts'

/**
 * The alert lifecycle of one resident and rule, as a pure function of reading-time events:
 * state + event -> state + effect. No clock, no SQL: the driver (AlertBook) feeds it the
 * verdicts of the rule at readings placed on the resident's timeline, and the passing of
 * time when no reading comes, and carries out the effect.
 *
 * Everything here is in reading time (the resident's timeline), except `expire`, whose
 * `now` is the wall clock: it decides only that time has passed without data.
 */

export const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 }

/** Kept per resident and rule; small, written with the commit that changed it. */
export interface RuleLife {
  /** the open alert of this rule, if any */
  open?: {
    severity: Severity
    /** reading time of the reading that opened it (or that it was carried over from) */
    openTs: number
    /** the newest reading at which its condition held */
    lastHoldTs: number
    /** the first reading after lastHoldTs at which it no longer held: the hold-down runs from here */
    clearSince: number | null
    /** opened by a reading older than the live horizon, and no newer reading has confirmed it */
    historic: boolean
    /** held open because it opened and resolved too often; counts the repeats */
    flapping: number
  }
  /** after a resolution: an alert of the same or a lower severity (never a critical) that opens before `until` is not announced */
  cooldown?: { from: number, until: number, severity: Severity }
  /** reading times at which it opened lately (flap detection) */
  opens?: number[]
}

export interface Policy {
  holdDownMs: number
  cooldownMs: number
  /** openings within flapWindowMs that make a rule flapping; 0: no flap detection */
  flapCount: number
  flapWindowMs: number
}

export interface VerdictEvent {
  ts: number
  trigger: boolean
  holds: boolean
  severity: Severity
  /** 'live': the reading is recent; 'historic': older than the live horizon when it arrived */
  age: 'live' | 'historic'
  /** the first reading after `ts` at which the rule no longer holds, or null (for a late holding reading) */
  firstClearAfter(ts: number): number | null
}

export type Effect =
  | { kind: 'none' }
  | { kind: 'open', severity: Severity, historic: boolean, flapping: boolean, cooled: boolean, cooledUntil?: number }
  | { kind: 'worse', severity: Severity }
  | { kind: 'confirmed' }
  | { kind: 'suppressed', reason: 'resolved-episode' }
  | { kind: 'resolve', at: number, clearSince: number, historic: boolean }
  | { kind: 'flapping', count: number }
  | { kind: 'changed' }

const NONE: Effect = { kind: 'none' }

/** A verdict of the rule at a reading of the timeline. */
export function onVerdict (life: RuleLife, e: VerdictEvent, p: Policy): { life: RuleLife, effect: Effect } {
  const open = life.open
  if (!open) {
    if (!e.trigger) return { life, effect: NONE }
    const cd = life.cooldown
    if (cd && e.ts < cd.from) return { life, effect: { kind: 'suppressed', reason: 'resolved-episode' } } // older than the resolution: part of what was resolved
    // the cool-down quiets the announcement, not the alert: clinicians see it open, and the
    // outcome does not depend on arrival order. It never quiets a worse state, nor a critical.
    const cooled = cd !== undefined && e.ts < cd.until && e.severity !== 'critical' && RANK[e.severity] <= RANK[cd.severity]
    const opens = recentOpens([...(life.opens ?? []), e.ts].sort((a, b) => a - b), e.ts, p)
    const flapping = opens !== undefined && opens.length >= p.flapCount
    return {
      life: { ...(opens ? { opens } : {}), open: { severity: e.severity, openTs: e.ts, lastHoldTs: e.ts, clearSince: null, historic: e.age === 'historic', flapping: flapping ? opens.length : 0 } },
      effect: cooled ? { kind: 'open', severity: e.severity, historic: e.age === 'historic', flapping, cooled, cooledUntil: cd!.until } : { kind: 'open', severity: e.severity, historic: e.age === 'historic', flapping, cooled },
    }
  }
  if (e.trigger || e.holds) {
    const next = { ...open }
    let effect: Effect = NONE
    if (e.ts > next.lastHoldTs) next.lastHoldTs = e.ts
    if (next.clearSince !== null && e.ts >= next.clearSince) {
      // holds again after it had started to clear: the hold-down starts over, at the next reading that clears
      next.clearSince = e.firstClearAfter(e.ts)
      if (next.flapping > 0 && e.trigger) { next.flapping++; effect = { kind: 'flapping', count: next.flapping } }
      else effect = { kind: 'changed' }
    }
    if (e.trigger && RANK[e.severity] > RANK[open.severity]) {
      next.severity = e.severity
      effect = { kind: 'worse', severity: e.severity }
    }
    if (next.historic && e.trigger && e.age === 'live') {
      next.historic = false
      if (effect.kind !== 'worse') effect = { kind: 'confirmed' }
    }
    if (effect.kind === 'none' && next.lastHoldTs !== open.lastHoldTs) effect = { kind: 'changed' }
    return { life: { ...life, open: next }, effect }
  }
  // no longer holds: only a reading newer than the newest one at which it held can clear it,
  // so a late reading never resolves an alert that a newer reading opened or kept open
  if (e.ts <= open.lastHoldTs) return { life, effect: NONE }
  const clearSince = open.clearSince === null ? e.ts : Math.min(open.clearSince, e.ts)
  const holdMs = open.flapping > 0 ? Math.max(p.holdDownMs, p.flapWindowMs) : p.holdDownMs
  if (e.ts - clearSince >= holdMs) return resolve({ ...life, open: { ...open, clearSince } }, clearSince + holdMs, p)
  if (clearSince === open.clearSince) return { life, effect: NONE }
  return { life: { ...life, open: { ...open, clearSince } }, effect: { kind: 'changed' } }
}

/** Wall-clock time passed with no reading: a hold-down that started at a reading may run out. */
export function expire (life: RuleLife, now: number, p: Policy): { life: RuleLife, effect: Effect } {
  const open = life.open
  if (!open || open.clearSince === null) return { life, effect: NONE }
  const holdMs = open.flapping > 0 ? Math.max(p.holdDownMs, p.flapWindowMs) : p.holdDownMs
  if (now - open.clearSince < holdMs) return { life, effect: NONE }
  return resolve(life, open.clearSince + holdMs, p)
}

/**
 * The opening times flap detection needs at `at`: those within the flap window (at most
 * flapCount of them: at that many the rule is held open and opens no more). None when flap
 * detection is off (a count of 0): an alert that comes and goes all day would otherwise carry
 * every opening of the window in each lifecycle snapshot.
 */
function recentOpens (opens: readonly number[], at: number, p: Policy): number[] | undefined {
  if (!(p.flapCount > 0)) return undefined
  return opens.filter((t) => t > at - p.flapWindowMs)
}

function resolve (life: RuleLife, at: number, p: Policy): { life: RuleLife, effect: Effect } {
  const open = life.open!
  const opens = recentOpens(life.opens ?? [], at, p)
  if (opens !== undefined && open.flapping === 0 && opens.length >= p.flapCount) {
    // opened and resolved too often: held open as flapping instead of telling the resident each time
    return { life: { ...life, opens, open: { ...open, flapping: opens.length } }, effect: { kind: 'flapping', count: opens.length } }
  }
  const next: RuleLife = opens ? { opens } : {}
  if (p.cooldownMs > 0) next.cooldown = { from: at, until: at + p.cooldownMs, severity: open.severity }
  return { life: next, effect: { kind: 'resolve', at, clearSince: open.clearSince ?? at, historic: open.historic } }
}

/** An open alert whose rule set was replaced or withdrawn: its lifecycle ends here. */
export function end (life: RuleLife): RuleLife {
  const next: RuleLife = {}
  if (life.opens) next.opens = life.opens
  return next
}
