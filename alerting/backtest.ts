import { Worker } from 'node:worker_threads'
import { HOLDS, NO_VERDICT, RuleIndex, TRIGGER, fieldsRead, severityOfCode, type CompiledRule, type Override, type ResidentProfile, type RuleState } from './engine.ts'
import { RANK, expire, onVerdict, type Effect, type Policy, type RuleLife } from './lifecycle.ts'
import { Timeline } from './timeline.ts'
import type { RuleSetDoc, Severity } from './ruleset.ts'
import { RULE_FIELDS, type RuleField, type RuleReading } from '../core/index.ts'

/**
 * Backtest of a draft rule set: a resident's readings of the last days replayed, in reading
 * time, through the same rules (engine.ts) and the same lifecycle (lifecycle.ts) as the live
 * AlertBook, but in memory and without notifications, so live alert state is untouched.
 *
 * It is AlertBook's in-order path (evaluate → step → apply) and its timer (timePassed: no-data
 * rules, hold-downs that ran out) without SQL: readings replayed from a store arrive in time
 * order, so the late-reading replay never runs. The clock is each reading's time, so every
 * reading is live. The timer ticks on a grid of `tickMs` from `from`; a tick at T runs before
 * a reading at T. Ticks at which nothing can happen (no no-data rule due, no hold-down
 * running out) are skipped, which gives the same outcome as ticking each time
 * (alerting/test/backtest.test.ts checks the counts against an AlertBook).
 */

export interface BacktestOptions {
  /** the replayed window [from, to), epoch ms */
  from: number
  to: number
  /** cells covering fewer residents than this are suppressed (forwarder.k) */
  k: number
  /** the engine timer's period (alerting.tickMs) */
  tickMs?: number
  flapCount?: number
  flapWindowS?: number
  liveHorizonS?: number
  /** personal thresholds (hospital overrides) of a resident, as the live engine applies them */
  overrides?(residentId: string): Map<string, Override> | undefined
  /** called after each resident */
  progress?(p: { residents: number, readings: number }): void
  /** clock for elapsedMs (performance.now by default) */
  now?(): number
}

/** One alert of a replay, as it stood when it resolved or when the window ended. */
export interface ReplayedAlert { ruleId: string, severity: Severity, flapCount: number, openTs: number, resolved: boolean }

export interface ResidentOutcome { residentId: string, applies: boolean, readings: number, days: number, alerts: ReplayedAlert[], flapEvents: number }

/** A resident to replay: the profile (audience, age) and its readings in time order, in pages. */
export interface BacktestResident { profile: ResidentProfile, pages: AsyncIterable<readonly RuleReading[]> | Iterable<readonly RuleReading[]> }

const DAY_MS = 86_400_000
const MAX_TIMELINE = 4096 // as AlertBook
const EMPTY: RuleState = Object.freeze({}) as RuleState
const none = (): null => null

/** The compiled form of one rule set for replays (shared by every resident). */
export class RuleSetReplay {
  readonly index: RuleIndex
  readonly retainMs: number
  readonly tickMs: number
  private readonly policies = new Map<string, Policy>()

  constructor (readonly doc: RuleSetDoc, readonly o: Pick<BacktestOptions, 'from' | 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS' | 'overrides'>) {
    this.index = new RuleIndex([doc], (id) => o.overrides?.(id))
    this.tickMs = o.tickMs ?? 1000
    // what AlertBook keeps of a timeline (buildIndex)
    let lookback = 0
    for (const r of doc.rules) {
      if (r.kind === 'sustained') lookback = Math.max(lookback, (r.forS + (r.maxGapS ?? 0)) * 1000)
      if (r.kind === 'rateOfChange') lookback = Math.max(lookback, r.withinS * 1000)
      if (r.kind === 'nOfM' || r.kind === 'sustained' || r.kind === 'rateOfChange' || r.kind === 'threshold' || r.kind === 'classification') lookback = Math.max(lookback, r.clear.holdDownS * 1000)
    }
    this.retainMs = lookback + (o.liveHorizonS ?? 3600) * 1000
  }

  /** a rule's policy (an override changes thresholds, never clearing options: one per key) */
  policy (rule: CompiledRule): Policy {
    let p = this.policies.get(rule.key)
    if (!p) {
      p = { holdDownMs: rule.rule.clear.holdDownS * 1000, cooldownMs: rule.rule.cooldownS * 1000, flapCount: this.o.flapCount ?? 3, flapWindowMs: (this.o.flapWindowS ?? 3600) * 1000 }
      this.policies.set(rule.key, p)
    }
    return p
  }

  /** A replay of one resident; `firstTs` dates the audience (age) as the live engine does at the first reading. */
  resident (p: ResidentProfile, firstTs: number): ResidentReplay {
    const rules = this.index.rulesFor(p, firstTs)
    this.index.forget(p.id) // one resident at a time: nothing kept per resident
    return new ResidentReplay(this, p.id, rules)
  }
}

/** One resident's replay through one rule set. */
export class ResidentReplay {
  private readonly tl = new Timeline<RuleReading>()
  private readonly st = new Map<string, RuleState>()
  private readonly life = new Map<string, RuleLife>()
  private readonly open = new Map<string, ReplayedAlert>()
  private readonly done: ReplayedAlert[] = []
  private readonly noData: CompiledRule[]
  private lastSeen: number | undefined
  /** every grid tick up to here has run (or had nothing to do) */
  private lastTick: number
  private readonly from: number
  private readonly tickMs: number
  private readonly byKey: Map<string, CompiledRule>
  readings = 0
  flapEvents = 0
  private lastDay = -1
  private days = 0

  constructor (private readonly rs: RuleSetReplay, readonly residentId: string, readonly rules: readonly CompiledRule[]) {
    this.noData = rules.filter((r) => r.rule.kind === 'noData')
    this.from = rs.o.from
    this.lastTick = rs.o.from
    this.tickMs = rs.tickMs
    this.byKey = new Map(rules.map((r) => [r.key, r]))
  }

  /** Readings in time order (ties in any order). */
  feed (r: RuleReading): void {
    if (this.rules.length === 0) return
    this.ticksUntil(r.ts)
    const tl = this.tl.readings
    if (tl.length > 0 && r.ts < tl[tl.length - 1]!.ts) throw new Error(`backtest readings of ${this.residentId} are not in time order`)
    this.readings++
    const day = Math.floor((r.ts - this.from) / DAY_MS)
    if (day !== this.lastDay) { this.lastDay = day; this.days++ }
    const i = this.tl.insert(r)
    for (const rule of this.rules) {
      let st: RuleState = EMPTY
      if (rule.rule.kind === 'average') {
        let s = this.st.get(rule.key)
        if (!s) this.st.set(rule.key, s = {})
        rule.observe(r, s)
        st = s
      }
      // the verdict as a number (CompiledRule.judge): the replay needs no verdict object nor its detail
      const v = rule.judge(tl, i, st)
      if (v !== NO_VERDICT) this.step(rule, v, r.ts)
    }
    this.tl.trim(this.rs.retainMs, MAX_TIMELINE)
    if (this.lastSeen === undefined || this.lastSeen < r.ts) this.lastSeen = r.ts
  }

  /** The window ended at `to`: the timer runs up to it; alerts still open are counted as they are. */
  finish (to: number): ResidentOutcome {
    if (this.rules.length > 0) this.ticksUntil(to)
    const alerts = [...this.done, ...this.open.values()]
    return { residentId: this.residentId, applies: this.rules.length > 0, readings: this.readings, days: this.days, alerts, flapEvents: this.flapEvents }
  }

  /** `v`: a verdict code of CompiledRule.judge */
  private step (rule: CompiledRule, v: number, ts: number): void {
    const life = this.life.get(rule.key)
    const open = life?.open
    const trigger = (v & TRIGGER) !== 0
    // fast paths: where onVerdict would only move lastHoldTs or clearSince, they are moved here, in place (these lives are this replay's own)
    if (!open) { if (!trigger) return } else if ((v & HOLDS) !== 0) {
      if (!open.historic && !(trigger && (v >> 2) > RANK[open.severity])) {
        // still holding, no worse, no hold-down running
        if (open.clearSince === null) { if (ts > open.lastHoldTs) open.lastHoldTs = ts; return }
        // holds again while clearing: the hold-down starts over at the next reading that clears (onVerdict's firstClearAfter is `none` here)
        if (open.flapping === 0 && ts >= open.clearSince) { if (ts > open.lastHoldTs) open.lastHoldTs = ts; open.clearSince = null; return }
      }
    } else if (open.clearSince !== null) {
      if (ts >= open.clearSince && ts - open.clearSince < this.holdMs(rule, open)) return // clearing, hold-down not over: no change
    } else if (ts > open.lastHoldTs && this.holdMs(rule, open) > 0) { open.clearSince = ts; return } // starts to clear: the hold-down runs from here
    const out = onVerdict(life ?? {}, { ts, trigger, holds: (v & HOLDS) !== 0, severity: severityOfCode(v), age: 'live', firstClearAfter: none }, this.rs.policy(rule))
    this.apply(rule, out, ts)
  }

  private apply (rule: CompiledRule, out: { life: RuleLife, effect: Effect }, ts: number): void {
    this.life.set(rule.key, out.life)
    const e = out.effect
    const cur = this.open.get(rule.key)
    switch (e.kind) {
      case 'open': {
        if (cur) { cur.resolved = true; this.done.push(cur) }
        this.open.set(rule.key, { ruleId: rule.rule.id, severity: e.severity, flapCount: e.flapping ? out.life.open?.flapping ?? 0 : 0, openTs: ts, resolved: false })
        return
      }
      case 'worse': if (cur) cur.severity = e.severity; return
      case 'flapping': if (cur) { cur.flapCount = e.count; this.flapEvents++ } return
      case 'resolve': if (cur) { cur.resolved = true; this.done.push(cur); this.open.delete(rule.key) } return
      default:
    }
  }

  /** the first grid tick at or after `x` and after `after` */
  private tickAtOrAfter (x: number, after: number): number {
    const t = Math.max(x, after + 1)
    return this.from + Math.ceil((t - this.from) / this.tickMs) * this.tickMs
  }

  private holdMs (rule: CompiledRule, open: NonNullable<RuleLife['open']>): number {
    const p = this.rs.policy(rule)
    return open.flapping > 0 ? Math.max(p.holdDownMs, p.flapWindowMs) : p.holdDownMs
  }

  /**
   * AlertBook.timePassed for this resident, at the ticks in (lastTick, t] where it can do
   * something. Rules do not interact, so each rule's ticks are found on their own.
   */
  private ticksUntil (t: number): void {
    const a0 = this.lastTick
    const last = this.from + Math.floor((t - this.from) / this.tickMs) * this.tickMs
    if (last <= a0) return
    for (const rule of this.noData) {
      const forMs = (rule.rule as { forS: number }).forS * 1000
      for (let a = a0; ;) {
        if (this.lastSeen === undefined) break
        const open = this.life.get(rule.key)?.open
        let T: number
        if (!open) T = this.tickAtOrAfter(this.lastSeen + forMs, a)
        else if (open.clearSince === null) {
          T = this.tickAtOrAfter(a + 1, a)
          // silent at T and after (no reading comes before t): each tick only moves lastHoldTs, so the last one says it all
          if (T <= last && T - this.lastSeen >= forMs) T = last
        } else T = Math.min(this.tickAtOrAfter(open.clearSince + this.holdMs(rule, open), a), this.tickAtOrAfter(this.lastSeen + forMs, a))
        if (T > last) break
        this.tick(rule, T, forMs)
        a = T
      }
    }
    if (this.open.size === 0) { this.lastTick = last; return }
    for (const key of this.open.keys()) { // (an alert resolved here leaves the map: Map iteration allows that)
      const rule = this.byKey.get(key)!
      if (rule.rule.kind === 'noData') continue // done above, with its expiry
      for (let a = a0; ;) {
        const life = this.life.get(key)
        const open = life?.open
        if (!open || open.clearSince === null) break
        const T = this.tickAtOrAfter(open.clearSince + this.holdMs(rule, open), a)
        if (T > last) break
        const out = expire(life, T, this.rs.policy(rule))
        if (out.effect.kind === 'none') break
        this.apply(rule, out, T)
        a = T
      }
    }
    this.lastTick = last
  }

  /** one tick of AlertBook.timePassed for a no-data rule: its verdict, then the expiry of what is open */
  private tick (rule: CompiledRule, now: number, forMs: number): void {
    const silent = now - this.lastSeen! >= forMs
    const life = this.life.get(rule.key)
    if (silent || life?.open) {
      const out = onVerdict(life ?? {}, { ts: now, trigger: silent, holds: silent, severity: rule.rule.severity, age: 'live', firstClearAfter: none }, this.rs.policy(rule))
      this.apply(rule, out, now)
    }
    const after = this.life.get(rule.key)
    if (after?.open && this.open.has(rule.key)) {
      const out = expire(after, now, this.rs.policy(rule))
      if (out.effect.kind !== 'none') this.apply(rule, out, now)
    }
  }
}

// ---------------------------------------------------------------------------------------
// the report

/** A count and its rate; null and `suppressed` when it comes from fewer than k residents. */
export interface Cell { alerts: number | null, residents: number | null, per1000ResidentDays: number | null, suppressed?: true }
export interface DiffCell { alerts: number | null, per1000ResidentDays: number | null, suppressed?: true }

export interface SideReport {
  ruleSet: { id: string, version: string }
  /** consenting residents with readings in the window whom the rule set's audience covers */
  residents: number | null
  residentDays: number | null
  total: Cell
  bySeverity: Record<Severity, Cell>
  byRule: Record<string, Cell>
  /** alerts held open as flapping (opened `alerting.flapCount` times within `flapWindowS`) */
  flapping: { total: Cell, byRule: Record<string, Cell> }
  suppressed?: true
}

export interface DiffReport {
  total: DiffCell
  bySeverity: Record<Severity, DiffCell>
  byRule: Record<string, DiffCell>
  flapping: { total: DiffCell, byRule: Record<string, DiffCell> }
}

export interface BacktestReport {
  schema: 'vitalmesh.rule-set-backtest/1'
  ruleSet: { id: string, version: string }
  /** the active version of the same rule set id, if one is active */
  comparedWith: { id: string, version: string } | null
  window: { from: string, to: string, days: number }
  k: number
  population: { residents: number | null, residentDays: number | null, readings: number | null, suppressed?: true }
  draft: SideReport
  active: SideReport | null
  /** draft minus active */
  difference: DiffReport | null
  elapsedMs: number
}

const SEVERITIES: Severity[] = ['info', 'warning', 'critical']

/** A Tally as data, to merge the parts of a backtest run in worker threads. */
export interface TallyData { residents: number, residentDays: number, cells: Map<string, { alerts: number, residents: number }>, contributions: string[][] }

/** Counts of one side, cell by cell, with the residents who contributed to each (for suppression). */
class Tally {
  residents = 0
  residentDays = 0
  readonly cells = new Map<string, { alerts: number, residents: number }>()
  /** per resident with alerts: the cells they contributed to */
  readonly contributions: string[][] = []

  constructor (readonly doc: RuleSetDoc) {
    for (const c of this.cellIds()) this.cells.set(c, { alerts: 0, residents: 0 })
  }

  cellIds (): string[] {
    return ['total', ...SEVERITIES.map((s) => `sev:${s}`), ...this.doc.rules.map((r) => `rule:${r.id}`), 'flap:total', ...this.doc.rules.map((r) => `flap:${r.id}`)]
  }

  /** what a worker thread sends back (structured clone keeps the Map) */
  data (): TallyData { return { residents: this.residents, residentDays: this.residentDays, cells: this.cells, contributions: this.contributions } }

  /** adds another part's counts: sums, and the contributions of its residents (their order does not matter to sideReport) */
  merge (d: TallyData): void {
    this.residents += d.residents
    this.residentDays += d.residentDays
    for (const [c, x] of d.cells) { const cell = this.cells.get(c)!; cell.alerts += x.alerts; cell.residents += x.residents }
    for (const cs of d.contributions) this.contributions.push(cs)
  }

  add (o: ResidentOutcome): void {
    if (!o.applies || o.readings === 0) return
    this.residents++
    this.residentDays += o.days
    if (o.alerts.length === 0) return
    const per = new Map<string, number>()
    const inc = (c: string): void => { per.set(c, (per.get(c) ?? 0) + 1) }
    for (const a of o.alerts) {
      inc('total'); inc(`sev:${a.severity}`); inc(`rule:${a.ruleId}`)
      if (a.flapCount > 0) { inc('flap:total'); inc(`flap:${a.ruleId}`) }
    }
    for (const [c, n] of per) {
      const cell = this.cells.get(c)!
      cell.alerts += n
      cell.residents++
    }
    this.contributions.push([...per.keys()])
  }
}

const rate = (alerts: number, days: number): number => days > 0 ? Math.round((alerts * 1000 / days) * 100) / 100 : 0
const SUPPRESSED: Cell = { alerts: null, residents: null, per1000ResidentDays: null, suppressed: true }

/**
 * k-suppression of one side: a cell from fewer than k residents is null. Where the total
 * minus the members shown (severities, rules) would give what was suppressed, and that comes
 * from fewer than k residents, the smallest member shown is suppressed too, until it does not.
 */
function sideReport (t: Tally, k: number): SideReport {
  const base = { ruleSet: { id: t.doc.id, version: t.doc.version } }
  const hidden = new Set<string>()
  const whole = t.residents < k
  for (const [id, c] of t.cells) if (whole || (c.residents > 0 && c.residents < k)) hidden.add(id)
  const groups: [string, string[]][] = [
    ['total', SEVERITIES.map((s) => `sev:${s}`)],
    ['total', t.doc.rules.map((r) => `rule:${r.id}`)],
    ['flap:total', t.doc.rules.map((r) => `flap:${r.id}`)],
  ]
  for (const [total, members] of groups) {
    if (hidden.has(total)) continue // then every member is hidden too (each comes from fewer residents)
    // total minus the members shown gives the sum of those suppressed: it must come from k residents or more
    const behind = (): number => { const gone = members.filter((m) => hidden.has(m)); return t.contributions.filter((cs) => cs.some((c) => gone.includes(c))).length }
    for (let b = behind(); b > 0 && b < k; b = behind()) {
      const next = members.filter((m) => !hidden.has(m) && t.cells.get(m)!.alerts > 0).sort((x, y) => t.cells.get(x)!.alerts - t.cells.get(y)!.alerts)[0]
      if (!next) break
      hidden.add(next)
    }
  }
  const cell = (id: string): Cell => {
    if (hidden.has(id)) return SUPPRESSED
    const c = t.cells.get(id)!
    return { alerts: c.alerts, residents: c.residents, per1000ResidentDays: rate(c.alerts, t.residentDays) }
  }
  const byRule = (prefix: string): Record<string, Cell> => Object.fromEntries(t.doc.rules.map((r) => [r.id, cell(`${prefix}:${r.id}`)]))
  return {
    ...base,
    residents: whole ? null : t.residents,
    residentDays: whole ? null : t.residentDays,
    total: cell('total'),
    bySeverity: Object.fromEntries(SEVERITIES.map((s) => [s, cell(`sev:${s}`)])) as Record<Severity, Cell>,
    byRule: byRule('rule'),
    flapping: { total: cell('flap:total'), byRule: byRule('flap') },
    ...(whole ? { suppressed: true as const } : {}),
  }
}

const ZERO: Cell = { alerts: 0, residents: 0, per1000ResidentDays: 0 }

function diff (a: Cell | undefined, b: Cell | undefined): DiffCell {
  const x = a ?? ZERO; const y = b ?? ZERO
  if (x.alerts === null || y.alerts === null) return { alerts: null, per1000ResidentDays: null, suppressed: true }
  return { alerts: x.alerts - y.alerts, per1000ResidentDays: Math.round((x.per1000ResidentDays! - y.per1000ResidentDays!) * 100) / 100 }
}

function diffReport (d: SideReport, a: SideReport): DiffReport {
  const ids = (x: Record<string, Cell>, y: Record<string, Cell>): string[] => [...new Set([...Object.keys(x), ...Object.keys(y)])]
  return {
    total: diff(d.total, a.total),
    bySeverity: Object.fromEntries(SEVERITIES.map((s) => [s, diff(d.bySeverity[s], a.bySeverity[s])])) as Record<Severity, DiffCell>,
    byRule: Object.fromEntries(ids(d.byRule, a.byRule).map((id) => [id, diff(d.byRule[id], a.byRule[id])])),
    flapping: { total: diff(d.flapping.total, a.flapping.total), byRule: Object.fromEntries(ids(d.flapping.byRule, a.flapping.byRule).map((id) => [id, diff(d.flapping.byRule[id], a.flapping.byRule[id])])) },
  }
}

/** Replays one resident through a rule set (tests compare this with an AlertBook). */
export async function replayResident (rs: RuleSetReplay, r: BacktestResident, to: number): Promise<ResidentOutcome> {
  let replay: ResidentReplay | undefined
  for await (const page of r.pages) {
    for (const x of page) {
      replay ??= rs.resident(r.profile, x.ts)
      replay.feed(x)
    }
  }
  return replay ? replay.finish(to) : { residentId: r.profile.id, applies: rs.index.rulesFor(r.profile, to).length > 0, readings: 0, days: 0, alerts: [], flapEvents: 0 }
}

/** The counts of a backtest over some of the residents; the parts of one run in worker threads add up (BacktestPass.merge). */
export interface BacktestPart { population: number, readings: number, residentDays: number, sides: TallyData[] }

/**
 * One pass over residents through the draft and (if given) the active version: each
 * resident's pages go through both replays, reading by reading, then into the tallies.
 * The backtest runs one in this thread, or one per worker thread (alerting/backtest-worker.ts).
 */
export class BacktestPass {
  readonly sides: { rs: RuleSetReplay, tally: Tally }[]
  population = 0
  readings = 0
  residentDays = 0
  private profile: ResidentProfile | undefined
  private replays: ResidentReplay[] = []
  private n = 0
  private lastDay = -1

  constructor (readonly draft: RuleSetDoc, readonly active: RuleSetDoc | undefined, readonly o: BacktestOptions) {
    this.sides = [draft, ...(active ? [active] : [])].map((doc) => ({ rs: new RuleSetReplay(doc, o), tally: new Tally(doc) }))
  }

  /** the next resident; then its readings in time order, in pages; then end() */
  begin (p: ResidentProfile): void { this.profile = p; this.n = 0; this.lastDay = -1 }

  page (rows: readonly RuleReading[]): void {
    const from = this.o.from
    for (let j = 0; j < rows.length; j++) {
      const x = rows[j]!
      if (this.n === 0) this.replays = this.sides.map((s) => s.rs.resident(this.profile!, x.ts))
      this.n++
      const day = Math.floor((x.ts - from) / DAY_MS)
      if (day !== this.lastDay) { this.lastDay = day; this.residentDays++ }
      for (let k = 0; k < this.replays.length; k++) this.replays[k]!.feed(x)
    }
  }

  /** the resident is done; returns the number of its readings */
  end (): number {
    const n = this.n
    if (n > 0) {
      this.population++
      this.readings += n
      this.sides.forEach((s, i) => s.tally.add(this.replays[i]!.finish(this.o.to)))
    }
    this.replays = []
    this.profile = undefined
    return n
  }

  part (): BacktestPart { return { population: this.population, readings: this.readings, residentDays: this.residentDays, sides: this.sides.map((s) => s.tally.data()) } }

  merge (p: BacktestPart): void {
    this.population += p.population
    this.readings += p.readings
    this.residentDays += p.residentDays
    p.sides.forEach((d, i) => this.sides[i]!.tally.merge(d))
  }

  /** the k-suppressed report of everything passed or merged */
  report (elapsedMs: number): BacktestReport {
    const { draft, active, o } = this
    const whole = this.population < o.k
    const draftSide = sideReport(this.sides[0]!.tally, o.k)
    const activeSide = this.sides[1] ? sideReport(this.sides[1].tally, o.k) : null
    return {
      schema: 'vitalmesh.rule-set-backtest/1',
      ruleSet: { id: draft.id, version: draft.version },
      comparedWith: active ? { id: active.id, version: active.version } : null,
      window: { from: new Date(o.from).toISOString(), to: new Date(o.to).toISOString(), days: Math.round((o.to - o.from) / DAY_MS * 100) / 100 },
      k: o.k,
      population: whole ? { residents: null, residentDays: null, readings: null, suppressed: true } : { residents: this.population, residentDays: this.residentDays, readings: this.readings },
      draft: draftSide,
      active: activeSide,
      difference: activeSide ? diffReport(draftSide, activeSide) : null,
      elapsedMs,
    }
  }
}

/**
 * The backtest: every resident's readings through the draft and (if given) the active version
 * of the same rule set, in one pass over the readings; a report of alerts per 1,000
 * resident-days by severity and rule, flapping, and the difference, k-suppressed. A
 * resident-day is a day of the window (24 h from `from`) in which the resident has a reading.
 */
export async function backtest (draft: RuleSetDoc, active: RuleSetDoc | undefined, residents: AsyncIterable<BacktestResident> | Iterable<BacktestResident>, o: BacktestOptions): Promise<BacktestReport> {
  const now = o.now ?? (() => performance.now())
  const t0 = now()
  const pass = new BacktestPass(draft, active, o)
  let done = 0
  for await (const r of residents) {
    pass.begin(r.profile)
    for await (const page of r.pages) pass.page(page)
    pass.end()
    done++
    o.progress?.({ residents: done, readings: pass.readings })
    // one resident at a time, then the event loop: a backtest on a live node does not hold it up
    if (done % 16 === 0) await new Promise<void>((res) => setImmediate(res))
  }
  return pass.report(Math.round(now() - t0))
}

/** What the backtest needs of a telemetry store (ingest/store.ts TelemetryStore). */
export interface ReadingSource {
  queryRange(residentId: string, from: number, to: number, limit: number): Promise<RuleReading[]>
  /** the same readings with ts and `fields` only (EmbeddedStore): read instead of queryRange where a store has it */
  replayRange?(residentId: string, from: number, to: number, limit: number, fields: readonly RuleField[]): Promise<RuleReading[]>
  /** an embedded store's SQLite file: worker threads can read it themselves (backtestInWorkers) */
  readonly file?: string
}

/** The fields of a reading the rule sets' verdicts depend on (besides ts): all a backtest reads (replayRange). */
export function replayFields (docs: readonly (RuleSetDoc | undefined)[]): RuleField[] {
  const f = new Set<RuleField>()
  for (const d of docs) for (const r of d?.rules ?? []) for (const x of fieldsRead(r)) f.add(x)
  return RULE_FIELDS.filter((x) => f.has(x))
}

/**
 * Paging of a resident's range query: what to yield of a page and where the next starts. A
 * full page stops before the readings sharing its last time, and the next page starts at that
 * time, so they are not split; a full page of one time is yielded whole and the next starts after it.
 */
export function cutPage (page: readonly RuleReading[], pageSize: number): { rows: readonly RuleReading[], next: number | null } {
  if (page.length < pageSize) return { rows: page, next: null }
  const lastTs = page[page.length - 1]!.ts
  let cut = page.length
  while (cut > 0 && page[cut - 1]!.ts === lastTs) cut--
  return cut === 0 ? { rows: page, next: lastTs + 1 } : { rows: page.slice(0, cut), next: lastTs }
}

/**
 * Residents' readings from a telemetry store, one resident after the other, in pages of
 * `pageSize`; the first page of the next `lookahead` residents is asked for while one is
 * replayed (an InfluxDB answers over the network meanwhile).
 */
export async function * residentsFromStore (store: ReadingSource, residents: readonly ResidentProfile[], from: number, to: number, o: { pageSize?: number, lookahead?: number, fields?: readonly RuleField[] } = {}): AsyncGenerator<BacktestResident> {
  const pageSize = o.pageSize ?? 50_000
  const lookahead = Math.max(1, o.lookahead ?? 2)
  const fields = o.fields ?? RULE_FIELDS
  const read = store.replayRange ? (id: string, a: number, b: number, n: number) => store.replayRange!(id, a, b, n, fields) : store.queryRange.bind(store)
  const queue: { p: ResidentProfile, first: Promise<RuleReading[]> }[] = []
  let next = 0
  const fill = (): void => {
    while (queue.length < lookahead && next < residents.length) {
      const p = residents[next++]!
      const first = read(p.id, from, to, pageSize)
      first.catch(() => {}) // awaited below; not an unhandled rejection meanwhile
      queue.push({ p, first })
    }
  }
  async function * pages (id: string, first: RuleReading[]): AsyncGenerator<readonly RuleReading[]> {
    let page = first
    for (;;) {
      const { rows, next } = cutPage(page, pageSize)
      yield rows
      if (next === null) return
      page = await read(id, next, to, pageSize)
    }
  }
  fill()
  while (queue.length > 0) {
    const { p, first } = queue.shift()!
    const firstPage = await first
    fill()
    yield { profile: p, pages: pages(p.id, firstPage) }
  }
}

/** What a worker thread is given (alerting/backtest-worker.ts). */
export interface BacktestWorkerData {
  file: string
  draft: RuleSetDoc
  active: RuleSetDoc | undefined
  o: Pick<BacktestOptions, 'from' | 'to' | 'k' | 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS'>
  pageSize: number
}
/** A batch of residents for a worker, each with its personal thresholds (overrides) if any. */
export interface BacktestChunk { residents: { profile: ResidentProfile, overrides?: [string, Override][] }[] }
export type WorkerReply = { kind: 'resident', readings: number } | { kind: 'chunk' } | { kind: 'part', part: BacktestPart }

const CHUNK = 32

/**
 * The backtest of residents read from an embedded store's file by `workers` worker threads,
 * each with its own read-only connection and both rule sets' replays. Residents go out in
 * chunks of 32 as workers ask for them (a worker on a busier core takes fewer); the workers'
 * counts are added up before k-suppression, so the report is the one `backtest` gives in this
 * thread (alerting/test/backtest.test.ts compares them). Overrides are looked up here.
 */
export async function backtestInWorkers (draft: RuleSetDoc, active: RuleSetDoc | undefined, file: string, residents: readonly ResidentProfile[], o: BacktestOptions, workers: number, pageSize = 50_000): Promise<BacktestReport> {
  const now = o.now ?? (() => performance.now())
  const t0 = now()
  const pass = new BacktestPass(draft, active, o)
  const data: BacktestWorkerData = { file, draft, active, o: { from: o.from, to: o.to, k: o.k, ...pick(o) }, pageSize }
  let next = 0
  let done = 0
  let readings = 0
  const chunk = (): BacktestChunk | null => {
    if (next >= residents.length) return null
    const part = residents.slice(next, next += CHUNK)
    return {
      residents: part.map((profile) => {
        const ov = o.overrides?.(profile.id)
        return ov && ov.size > 0 ? { profile, overrides: [...ov] } : { profile }
      }),
    }
  }
  const threads = Array.from({ length: Math.max(1, Math.min(workers, Math.ceil(residents.length / CHUNK))) }, () => new Worker(WORKER_BOOT, { eval: true, workerData: { ...data, module: WORKER_MODULE, tsx: TSX_API } }))
  try {
    await Promise.all(threads.map((w) => new Promise<void>((resolve, reject) => {
      let merged = false
      w.on('error', reject)
      w.on('exit', (code) => { if (!merged) reject(new Error(`a backtest worker stopped (exit code ${code}) before it sent its counts`)) })
      w.on('message', (m: WorkerReply) => {
        if (m.kind === 'resident') {
          done++; readings += m.readings
          o.progress?.({ residents: done, readings })
        } else if (m.kind === 'chunk') w.postMessage(chunk())
        else { pass.merge(m.part); merged = true; resolve() }
      })
      // two chunks in flight: the worker does not wait for the next one
      w.postMessage(chunk()); w.postMessage(chunk())
    })))
  } finally { await Promise.all(threads.map((w) => w.terminate())) }
  return pass.report(Math.round(now() - t0))
}

function pick (o: BacktestOptions): Pick<BacktestOptions, 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS'> {
  const x: Pick<BacktestOptions, 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS'> = {}
  if (o.tickMs !== undefined) x.tickMs = o.tickMs
  if (o.flapCount !== undefined) x.flapCount = o.flapCount
  if (o.flapWindowS !== undefined) x.flapWindowS = o.flapWindowS
  if (o.liveHorizonS !== undefined) x.liveHorizonS = o.liveHorizonS
  return x
}

// The worker is TypeScript like the rest: it is loaded through tsx's API, so it runs the same
// whether this process was started by tsx, by `node --import tsx` or by vitest.
const WORKER_MODULE = new URL('./backtest-worker.ts', import.meta.url).href
const TSX_API = import.meta.resolve('tsx/esm/api')
const WORKER_BOOT = `
const { workerData } = require('node:worker_threads')
import(workerData.tsx).then((tsx) => tsx.tsImport(workerData.module, workerData.module)).catch((e) => { console.error(e); process.exit(1) })
`

/** What the API and the CLI run: the last `days` (to `now`) of the given residents, from a store, with a node's settings. */
export async function backtestFromStore (a: {
  draft: RuleSetDoc
  /** the active version of the same rule set id, if any */
  active: RuleSetDoc | undefined
  store: ReadingSource
  residents: readonly ResidentProfile[]
  days: number
  now: number
  k: number
  /** alerting settings of the node (tickMs, flapCount, flapWindowS, liveHorizonS) */
  alerting?: Pick<BacktestOptions, 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS'>
  overrides?: BacktestOptions['overrides']
  progress?: BacktestOptions['progress']
  lookahead?: number
  /**
   * worker threads for a store with a file (the embedded store), 0 for none: the replay runs
   * in this thread. Fewer than 4 chunks of residents run here too (a worker takes a while to start).
   */
  workers?: number
}): Promise<BacktestReport> {
  const to = a.now
  const from = to - a.days * DAY_MS
  const o: BacktestOptions = { from, to, k: a.k, ...a.alerting }
  if (a.overrides) o.overrides = a.overrides
  if (a.progress) o.progress = a.progress
  const workers = a.workers ?? 0
  if (workers > 0 && a.store.file !== undefined && a.residents.length >= 4 * CHUNK) return backtestInWorkers(a.draft, a.active, a.store.file, a.residents, o, workers)
  return backtest(a.draft, a.active, residentsFromStore(a.store, a.residents, from, to, { lookahead: a.lookahead ?? 2, fields: replayFields([a.draft, a.active]) }), o)
}
