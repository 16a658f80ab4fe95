import type { RuleField, RuleReading as Reading } from '../core/index.ts'
import { concernOf, type Concern, type Condition, type Metric, type Rule, type RuleSetDoc, type Severity, type Audience } from './ruleset.ts'

/** What the engine knows of a resident to pick rule sets by audience. */
export interface ResidentProfile {
  id: string
  birthYear: number | null
  conditions: readonly string[]
  region: string | null
}

/**
 * What a rule keeps besides the resident's timeline: only the average's buckets (sums by
 * time bucket, so the order readings arrive in does not matter). Every other rule is a
 * function of the timeline. Plain JSON, checkpointed with the timeline.
 */
export interface RuleState {
  /** average: buckets [start, nBp, sumSys, sumDia, nHr, sumHr] */
  b?: [number, number, number, number, number, number][]
}

export interface Detail {
  values: { hr?: number, sys?: number, dia?: number, pp?: number, map?: number }
  category?: string
  scores?: { sys?: number, hr?: number }
  average?: { sys?: number, dia?: number, hr?: number, n: number }
  change?: number
  silentForS?: number
}

export interface Verdict {
  key: string
  rule: CompiledRule
  /** the condition to open an alert holds */
  trigger: boolean
  /** the (hysteresis-relaxed) condition to keep an open alert holds */
  holds: boolean
  severity: Severity
  detail: Detail
}

export interface CompiledRule {
  key: string
  ruleSetId: string
  ruleSetVersion: string
  rule: Rule
  concern: Concern
  /** rules whose verdict at a reading depends on other readings of the timeline */
  windowed: boolean
  /** how far back in reading time the rule looks from a reading (the timeline keeps at least this) */
  lookbackMs: number
  /**
   * The verdict at reading `i` of a resident's timeline (readings in reading time, all the
   * resident's devices); undefined when the reading lacks what the rule needs or is taken
   * during an activity the rule skips.
   */
  evaluate(tl: readonly Reading[], i: number, st: RuleState): Verdict | undefined
  /**
   * The same verdict as `evaluate`, as a number and without its detail (no allocation):
   * NO_VERDICT (-1) where `evaluate` gives undefined, else TRIGGER | HOLDS | rank << 2
   * (verdictCode). For replays that count alerts (alerting/backtest.ts); `evaluate` is built on it.
   */
  judge(tl: readonly Reading[], i: number, st: RuleState): number
  /** records a reading in the rule's own state (averages); called once per reading */
  observe(r: Reading, st: RuleState): void
  /**
   * One rule on its own: records the reading in `st` (its own little timeline, in reading
   * time) and returns the verdict at it. For callers that judge single readings or one rule
   * (the forwarder's category, the device simulator, tests); the engine uses `evaluate`.
   */
  evaluateOne(r: Reading, st: RuleState & { tl?: Reading[] }): Verdict | undefined
}

export interface Override { value?: number, min?: number, max?: number, forS?: number }

/** CompiledRule.judge: no verdict at this reading */
export const NO_VERDICT = -1
/** CompiledRule.judge: the condition to open an alert holds */
export const TRIGGER = 1
/** CompiledRule.judge: the condition to keep an open alert holds (set whenever TRIGGER is) */
export const HOLDS = 2
const SEVERITY_BY_RANK: readonly Severity[] = ['info', 'warning', 'critical']
const RANK_OF: Record<Severity, number> = { info: 0, warning: 1, critical: 2 }
/** a verdict as CompiledRule.judge returns it */
export function verdictCode (trigger: boolean, holds: boolean, severity: Severity): number {
  return (trigger ? TRIGGER | HOLDS : holds ? HOLDS : 0) | (RANK_OF[severity] << 2)
}
/** the severity of a verdict code */
export const severityOfCode = (code: number): Severity => SEVERITY_BY_RANK[code >> 2]!

export function metricOf (r: Reading, m: Metric): number | undefined {
  switch (m) {
    case 'hr': return r.hr
    case 'sys': return r.sys
    case 'dia': return r.dia
    case 'pp': return r.sys !== undefined && r.dia !== undefined ? r.sys - r.dia : undefined
    case 'map': return r.sys !== undefined && r.dia !== undefined ? r.dia + (r.sys - r.dia) / 3 : undefined
  }
}

type Test = (r: Reading) => boolean | undefined

function compare (op: '>' | '>=' | '<' | '<=', x: number, v: number): boolean {
  return op === '>' ? x > v : op === '>=' ? x >= v : op === '<' ? x < v : x <= v
}

function compileCondition (c: Condition, relax: number): Test {
  if ('activity' in c) {
    const set = new Set(c.activity)
    return (r) => r.activity === undefined ? undefined : set.has(r.activity)
  }
  const m = c.metric
  if (c.op === 'between') {
    const min = c.min - relax; const max = c.max + relax
    return (r) => { const x = metricOf(r, m); return x === undefined ? undefined : x >= min && x < max }
  }
  const op = c.op
  // hysteresis moves the threshold toward normal, so an open alert clears only once the value is clearly back
  const v = op === '>' || op === '>=' ? c.value - relax : c.value + relax
  return (r) => { const x = metricOf(r, m); return x === undefined ? undefined : compare(op, x, v) }
}

function compileAll (cs: readonly Condition[], relax: number): Test {
  const tests = cs.map((c) => compileCondition(c, relax))
  return (r) => {
    let all = true
    for (const t of tests) {
      const v = t(r)
      if (v === undefined) return undefined
      if (!v) all = false
    }
    return all
  }
}

function valuesOf (r: Reading): Detail['values'] {
  const v: Detail['values'] = {}
  if (r.hr !== undefined) v.hr = r.hr
  if (r.sys !== undefined && r.dia !== undefined) { v.sys = r.sys; v.dia = r.dia; v.pp = r.sys - r.dia; v.map = Math.round((r.dia + (r.sys - r.dia) / 3) * 10) / 10 }
  return v
}

function applyOverride (rule: Rule, o: Override | undefined): Rule {
  if (!o) return rule
  const patch = (cs: Condition[]): Condition[] => {
    let done = false
    return cs.map((c) => {
      if (done || 'activity' in c) return c
      done = true
      if (c.op === 'between') return { ...c, min: o.min ?? c.min, max: o.max ?? c.max }
      return { ...c, value: o.value ?? c.value }
    })
  }
  switch (rule.kind) {
    case 'threshold': case 'nOfM': return { ...rule, when: patch(rule.when) }
    case 'sustained': return { ...rule, when: patch(rule.when), forS: o.forS ?? rule.forS }
    case 'noData': return { ...rule, forS: o.forS ?? rule.forS }
    default: return rule
  }
}

const metricFields = (m: Metric): RuleField[] => m === 'pp' || m === 'map' ? ['sys', 'dia'] : [m]
const conditionFields = (cs: readonly Condition[]): RuleField[] => cs.flatMap((c) => 'activity' in c ? ['activity' as const] : metricFields(c.metric))

/**
 * The fields of a reading (besides ts) that a rule's verdict depends on: what compileRule's
 * judge of its kind reads. A backtest reads only these from the store (EmbeddedStore.replayRange);
 * alerting/test/backtest.test.ts checks every kind against a replay of whole readings.
 */
export function fieldsRead (rule: Rule): Set<RuleField> {
  const f = new Set<RuleField>(rule.skipActivities?.length ? ['activity'] : [])
  const add = (xs: readonly RuleField[]): void => { for (const x of xs) f.add(x) }
  switch (rule.kind) {
    case 'threshold': case 'sustained': case 'nOfM': add(conditionFields(rule.when)); break
    case 'classification': add(['sys', 'dia']); break
    case 'rateOfChange': add(metricFields(rule.metric)); break
    case 'noData': break
    case 'score': if (rule.bands.sys) add(['sys']); if (rule.bands.hr) add(['hr']); break
    case 'average': add(['hr', 'sys', 'dia']); break // observe and judge look at all three, whatever `any` asks
  }
  return f
}

/** Compiles one rule of a rule set into a closure that evaluates a reading. */
export function compileRule (doc: Pick<RuleSetDoc, 'id' | 'version'>, original: Rule, override?: Override): CompiledRule {
  const rule = applyOverride(original, override)
  const key = `${doc.id}/${rule.id}`
  const h = rule.clear.hysteresis
  const skip = rule.skipActivities?.length ? new Set(rule.skipActivities) : undefined
  const skipped = (r: Reading): boolean => skip !== undefined && r.activity !== undefined && skip.has(r.activity)
  const lookbackMs = rule.kind === 'sustained' ? rule.forS * 1000 : rule.kind === 'rateOfChange' ? rule.withinS * 1000 : 0
  const windowed = rule.kind === 'sustained' || rule.kind === 'nOfM' || rule.kind === 'rateOfChange'
  const evaluateOne = (r: Reading, st: RuleState & { tl?: Reading[] }): Verdict | undefined => {
    if (!windowed) { self.observe(r, st); return self.evaluate([r], 0, st) }
    const tl = (st.tl ??= [])
    let i = tl.length
    while (i > 0 && tl[i - 1]!.ts > r.ts) i--
    tl.splice(i, 0, r)
    const keep = lookbackMs + (rule.kind === 'sustained' ? (rule.maxGapS ?? 0) * 1000 : 0)
    // never the reading just placed (an old one may sit first)
    while (tl.length > 64 && i > 0 && tl[0]!.ts < tl[tl.length - 1]!.ts - keep) { tl.shift(); i-- }
    return self.evaluate(tl, i, st)
  }
  const base = { key, ruleSetId: doc.id, ruleSetVersion: doc.version, rule, concern: concernOf(rule), windowed, lookbackMs, observe: (): void => {}, evaluateOne }
  // each kind's judge gives the verdict as a number; evaluate adds the detail, from what judge
  // left in `last` (judge and detail run back to back, so it is always this reading's)
  const last: { category?: string, change?: number, scores?: Detail['scores'], average?: Detail['average'] } = {}
  const sevCode = RANK_OF[rule.severity ?? 'warning'] << 2 // (the schema's default)
  const withDetail = (judge: CompiledRule['judge'], detail: (r: Reading) => Detail): CompiledRule['evaluate'] => (tl, i, st) => {
    const c = judge(tl, i, st)
    if (c === NO_VERDICT) return undefined
    return { key, rule: self, trigger: (c & TRIGGER) !== 0, holds: (c & HOLDS) !== 0, severity: severityOfCode(c), detail: detail(tl[i]!) }
  }
  const plain = (r: Reading): Detail => ({ values: valuesOf(r) })
  const make = (judge: CompiledRule['judge'], detail: (r: Reading) => Detail = plain): CompiledRule => ({ ...base, judge, evaluate: withDetail(judge, detail) })
  const code = (trigger: boolean, holds: boolean): number => (trigger ? TRIGGER | HOLDS : holds ? HOLDS : 0) | sevCode
  let self: CompiledRule
  switch (rule.kind) {
    case 'threshold': {
      const t = compileAll(rule.when, 0); const relaxed = compileAll(rule.when, h)
      self = make((tl, i) => { const r = tl[i]!; if (skipped(r)) return NO_VERDICT; const v = t(r); if (v === undefined) return NO_VERDICT; return code(v, relaxed(r) === true) })
      break
    }
    case 'classification': {
      const cats = rule.categories
      const alertOn = rule.alertOn
      const firstAlerting = cats.findIndex((c) => c.id in alertOn)
      // per category level: the severity of the alert it raises, if any
      const sev = cats.map((c) => alertOn[c.id])
      // lower bounds only ('>' or '>='): the level is the highest category whose bound the value meets
      const bounds = (which: 'sys' | 'dia') => cats.map((c) => c[which]).map((b) => b ? { v: b.value, strict: b.op === '>' } : undefined)
      const sysB = bounds('sys'); const diaB = bounds('dia')
      const levelOf = (x: number, which: 'sys' | 'dia', relax: number): number => {
        const bs = which === 'sys' ? sysB : diaB
        for (let i = bs.length - 1; i >= 1; i--) {
          const b = bs[i]
          if (b !== undefined && (b.strict ? x > b.v - relax : x >= b.v - relax)) return i
        }
        return 0
      }
      let lastLevel = 0
      self = make((tl, i) => {
        const r = tl[i]!
        if (r.sys === undefined || r.dia === undefined || skipped(r)) return NO_VERDICT
        // the category is the higher of the SBP and DBP categories
        const level = Math.max(levelOf(r.sys, 'sys', 0), levelOf(r.dia, 'dia', 0))
        const relaxedLevel = h > 0 ? Math.max(levelOf(r.sys, 'sys', h), levelOf(r.dia, 'dia', h)) : level
        lastLevel = level
        const s = sev[level]
        const holds = firstAlerting >= 0 && relaxedLevel >= firstAlerting
        return s !== undefined ? TRIGGER | HOLDS | (RANK_OF[s] << 2) : (holds ? HOLDS : 0) | sevCode
      }, (r) => ({ values: valuesOf(r), category: cats[lastLevel]!.id }))
      break
    }
    case 'sustained': {
      const t = compileAll(rule.when, 0); const relaxed = compileAll(rule.when, h)
      const forMs = rule.forS * 1000
      const maxGapMs = rule.maxGapS !== undefined ? rule.maxGapS * 1000 : Infinity
      self = make((tl, i) => {
        const r = tl[i]!
        if (skipped(r)) return NO_VERDICT
        const v = t(r)
        if (v === undefined) return NO_VERDICT
        // the condition must have held at every reading back to forS before this one, with no gap longer than maxGapS
        let start = r.ts
        if (v) {
          let prev = r.ts
          for (let j = i - 1; j >= 0 && r.ts - start < forMs; j--) {
            const x = tl[j]!
            if (skipped(x)) continue
            const vx = t(x)
            if (vx === undefined) continue
            if (!vx || prev - x.ts > maxGapMs) break
            start = prev = x.ts
          }
        }
        return code(v && r.ts - start >= forMs, relaxed(r) === true)
      })
      break
    }
    case 'nOfM': {
      const t = compileAll(rule.when, 0)
      self = make((tl, i) => {
        const r = tl[i]!
        if (skipped(r)) return NO_VERDICT
        const v = t(r)
        if (v === undefined) return NO_VERDICT
        // the last m evaluated readings up to this one, in reading time
        let ones = v ? 1 : 0
        let seen = 1
        for (let j = i - 1; j >= 0 && seen < rule.m; j--) {
          const x = tl[j]!
          if (skipped(x)) continue
          const vx = t(x)
          if (vx === undefined) continue
          seen++
          if (vx) ones++
        }
        return code(ones >= rule.n, ones >= rule.n)
      })
      break
    }
    case 'rateOfChange': {
      const withinMs = rule.withinS * 1000
      self = make((tl, i) => {
        const r = tl[i]!
        if (skipped(r)) return NO_VERDICT
        const x = metricOf(r, rule.metric)
        if (x === undefined) return NO_VERDICT
        let change = 0
        for (let j = i - 1; j >= 0 && r.ts - tl[j]!.ts <= withinMs; j--) {
          if (skipped(tl[j]!)) continue
          const y = metricOf(tl[j]!, rule.metric)
          if (y !== undefined) change = Math.max(change, rule.direction === 'rise' ? x - y : y - x)
        }
        last.change = change
        return code(change >= rule.delta, change >= rule.delta - h)
      }, (r) => ({ values: valuesOf(r), change: last.change! }))
      break
    }
    case 'noData': {
      // judged on the engine's timer; a reading only ever clears it
      self = make(() => sevCode)
      break
    }
    case 'score': {
      const score = (x: number, bands: { upTo: number | null, points: number }[]): number => {
        for (const b of bands) if (b.upTo === null || x <= b.upTo) return b.points
        return 0
      }
      self = make((tl, i) => {
        const r = tl[i]!
        if (skipped(r)) return NO_VERDICT
        const scores: Detail['scores'] = {}
        if (rule.bands.sys && r.sys !== undefined) scores.sys = score(r.sys, rule.bands.sys)
        if (rule.bands.hr && r.hr !== undefined) scores.hr = score(r.hr, rule.bands.hr)
        if (scores.sys === undefined && scores.hr === undefined) return NO_VERDICT
        const top = Math.max(scores.sys ?? 0, scores.hr ?? 0)
        last.scores = scores
        return code(top >= rule.anySubScoreAtLeast, top >= rule.anySubScoreAtLeast)
      }, (r) => ({ values: valuesOf(r), scores: last.scores! }))
      break
    }
    case 'average': {
      const windowMs = rule.windowS * 1000
      const bucketMs = Math.max(60_000, Math.floor(windowMs / 168))
      const judge: CompiledRule['judge'] = (tl, i, st) => {
        const r = tl[i]!
        if ((r.hr === undefined && r.sys === undefined) || skipped(r)) return NO_VERDICT
        const b = st.b ?? []
        let nBp = 0; let sSys = 0; let sDia = 0; let nHr = 0; let sHr = 0
        for (const x of b) { nBp += x[1]; sSys += x[2]; sDia += x[3]; nHr += x[4]; sHr += x[5] }
        const avg: NonNullable<Detail['average']> = { n: Math.max(nBp, nHr) }
        if (nBp) { avg.sys = Math.round(sSys / nBp * 10) / 10; avg.dia = Math.round(sDia / nBp * 10) / 10 }
        if (nHr) avg.hr = Math.round(sHr / nHr * 10) / 10
        const met = (relax: number): boolean => rule.any.some((c) => {
          const n = c.metric === 'hr' ? nHr : nBp
          if (n < rule.minReadings) return false
          const x = c.metric === 'hr' ? avg.hr : c.metric === 'sys' ? avg.sys : c.metric === 'dia' ? avg.dia
            : c.metric === 'pp' ? avg.sys! - avg.dia! : avg.dia! + (avg.sys! - avg.dia!) / 3
          const v = c.op === '>' || c.op === '>=' ? c.value - relax : c.value + relax
          return x !== undefined && compare(c.op, x, v)
        })
        last.average = avg
        return code(met(0), met(h))
      }
      self = {
        ...make(judge, (r) => ({ values: valuesOf(r), average: last.average! })),
        observe: (r, st) => {
          if ((r.hr === undefined && r.sys === undefined) || skipped(r)) return
          const b = (st.b ??= [])
          const start = r.ts - (r.ts % bucketMs)
          if (b.length > 0 && start <= b[b.length - 1]![0] - windowMs) return // older than the window: counts in no average
          let cur = b.find((x) => x[0] === start)
          if (!cur) { cur = [start, 0, 0, 0, 0, 0]; b.push(cur); b.sort((x, y) => x[0] - y[0]) }
          if (r.sys !== undefined && r.dia !== undefined) { cur[1]++; cur[2] += r.sys; cur[3] += r.dia }
          if (r.hr !== undefined) { cur[4]++; cur[5] += r.hr }
          const newest = b[b.length - 1]![0]
          while (b.length > 0 && b[0]![0] <= newest - windowMs) b.shift()
        },
      }
      break
    }
  }
  return self
}

export function audienceMatches (a: Audience, p: ResidentProfile, now: number): boolean {
  switch (a.kind) {
    case 'all': return true
    case 'resident': return a.residentId === p.id
    case 'cohort': {
      if (a.ageMin !== undefined || a.ageMax !== undefined) {
        if (p.birthYear === null) return false
        const age = new Date(now).getUTCFullYear() - p.birthYear
        if (a.ageMin !== undefined && age < a.ageMin) return false
        if (a.ageMax !== undefined && age >= a.ageMax) return false
      }
      if (a.conditions && !a.conditions.some((c) => p.conditions.includes(c))) return false
      if (a.regions && (p.region === null || !a.regions.includes(p.region))) return false
      return true
    }
  }
}

/**
 * The rules that apply to each resident, compiled once per resident and reused for every
 * reading until the active rule sets, the resident's profile or an override change.
 */
export class RuleIndex {
  private readonly perResident = new Map<string, CompiledRule[]>()
  private readonly shared = new Map<string, CompiledRule>()
  /** whether any active rule set has a no-data rule (the engine's timer skips the residents otherwise) */
  readonly hasNoData: boolean

  constructor (private readonly active: readonly RuleSetDoc[], private readonly overrides: (residentId: string) => Map<string, Override> | undefined) {
    for (const doc of active) for (const r of doc.rules) this.shared.set(`${doc.id}/${r.id}`, compileRule(doc, r))
    this.hasNoData = active.some((d) => d.rules.some((r) => r.kind === 'noData'))
  }

  get ruleSets (): readonly RuleSetDoc[] { return this.active }

  rulesFor (p: ResidentProfile, now: number): CompiledRule[] {
    let rules = this.perResident.get(p.id)
    if (rules) return rules
    const ov = this.overrides(p.id)
    rules = []
    for (const doc of this.active) {
      if (!audienceMatches(doc.audience, p, now)) continue
      for (const r of doc.rules) {
        const key = `${doc.id}/${r.id}`
        const o = ov?.get(key)
        rules.push(o ? compileRule(doc, r, o) : this.shared.get(key)!)
      }
    }
    this.perResident.set(p.id, rules)
    return rules
  }

  forget (residentId: string): void { this.perResident.delete(residentId) }
}
