import { describe, expect, it } from 'vitest'
import { openDatabase, ManualClock, silentLogger } from '../../core/index.ts'
import { AlertBook, BUILTIN_RULE_SETS, RuleSetDocSchema, type RuleSetDoc, type EvaluatedReading } from '../index.ts'
import { backtest, backtestFromStore, backtestInWorkers, replayResident, residentsFromStore, RuleSetReplay, type BacktestReport, type BacktestResident, type ResidentOutcome } from '../backtest.ts'
import { EmbeddedStore } from '../../ingest/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { rmSync } from 'node:fs'
import { join } from 'node:path'

const FROM = Date.UTC(2026, 0, 1)
const MIN = 60_000
const DAY = 86_400_000
const ACC = BUILTIN_RULE_SETS.find((d) => d.id === 'acc-aha-2017')!
/** a draft of the same rule set that also says something about stage 1 */
const ACC_DRAFT: RuleSetDoc = RuleSetDocSchema.parse({ ...ACC, version: '2.0.0-draft', rules: [{ ...ACC.rules[0]!, alertOn: { stage1: 'info', stage2: 'warning', crisis: 'critical' } }] })
const profile = (id: string) => ({ id, birthYear: 1960, conditions: [], region: 'c1' })

/** a resident's readings: `every` minutes over `days`, normal 115/75 except where `at` (minute -> values) says */
function series (id: string, days: number, every: number, at: Record<number, { sys: number, dia: number }> = {}): EvaluatedReading[] {
  const out: EvaluatedReading[] = []
  for (let m = 0, seq = 0; m < days * 1440; m += every) out.push({ deviceId: `d-${id}`, residentId: id, seq: seq++, ts: FROM + m * MIN, hr: 70, sys: 115, dia: 75, ...at[m] })
  return out
}
const resident = (rows: EvaluatedReading[], id = rows[0]!.residentId): BacktestResident => ({ profile: profile(id), pages: [rows] })
const STAGE2 = { sys: 145, dia: 85 }; const CRISIS = { sys: 190, dia: 100 }; const STAGE1 = { sys: 132, dia: 78 }
const d = (day: number, h: number, m = 0): number => day * 1440 + h * 60 + m

/** ten residents over three days (readings every 15 minutes; r6 every 10 minutes with a flapping crisis) */
function golden (): BacktestResident[] {
  const flap: Record<number, { sys: number, dia: number }> = {}
  for (const m of [0, 20, 40, 60, 80]) flap[d(2, 6) + m] = CRISIS
  return [
    resident(series('r1', 3, 15, { [d(0, 10)]: STAGE2 })),
    resident(series('r2', 3, 15, { [d(1, 12)]: CRISIS })),
    resident(series('r3', 3, 15, { [d(0, 9)]: STAGE2, [d(2, 9)]: STAGE2 })),
    resident(series('r4', 3, 15, { [d(1, 8)]: STAGE1 })),
    resident(series('r5', 3, 15, { [d(1, 8)]: STAGE1 })),
    resident(series('r6', 3, 10, flap)),
    ...['r7', 'r8', 'r9', 'r10'].map((id) => resident(series(id, 3, 15))),
  ]
}
const opts = (k: number, days = 3) => ({ from: FROM, to: FROM + days * DAY, k, tickMs: MIN })

describe('backtest of a rule set', () => {
  it('counts alerts per 1,000 resident-days by severity and rule, flapping, and the difference from the active version (golden)', async () => {
    const r = await backtest(ACC_DRAFT, ACC, golden(), opts(2))
    expect(r.population).toEqual({ residents: 10, residentDays: 30, readings: 9 * 288 + 432 })
    expect(r.comparedWith).toEqual({ id: 'acc-aha-2017', version: '1.0.0' })
    const a = r.active!
    // r1 one warning, r3 two; r2 one critical; r6: two crises that resolve, then a third within the hour, held open as flapping
    expect(a.bySeverity).toEqual({
      info: { alerts: 0, residents: 0, per1000ResidentDays: 0 },
      warning: { alerts: 3, residents: 2, per1000ResidentDays: 100 },
      critical: { alerts: 4, residents: 2, per1000ResidentDays: 133.33 },
    })
    expect(a.total).toEqual({ alerts: 7, residents: 4, per1000ResidentDays: 233.33 })
    expect(a.byRule).toEqual({ 'bp-category': { alerts: 7, residents: 4, per1000ResidentDays: 233.33 } })
    // one resident flapped: fewer than k = 2
    expect(a.flapping.total).toEqual({ alerts: null, residents: null, per1000ResidentDays: null, suppressed: true })
    expect(r.draft.bySeverity.info).toEqual({ alerts: 2, residents: 2, per1000ResidentDays: 66.67 })
    expect(r.draft.total).toEqual({ alerts: 9, residents: 6, per1000ResidentDays: 300 })
    expect(r.difference!.bySeverity).toEqual({ info: { alerts: 2, per1000ResidentDays: 66.67 }, warning: { alerts: 0, per1000ResidentDays: 0 }, critical: { alerts: 0, per1000ResidentDays: 0 } })
    expect(r.difference!.total).toEqual({ alerts: 2, per1000ResidentDays: 66.67 })
    expect(r.difference!.flapping.total).toEqual({ alerts: null, per1000ResidentDays: null, suppressed: true })
    // with k = 1 nothing is suppressed: the flapping alert shows
    const all = await backtest(ACC_DRAFT, ACC, golden(), opts(1))
    expect(all.active!.flapping.total).toEqual({ alerts: 1, residents: 1, per1000ResidentDays: 33.33 })
    expect(all.difference!.flapping.total).toEqual({ alerts: 0, per1000ResidentDays: 0 })
  })

  it('a flapping resident in detail: three alerts, the third held open as flapping and repeated twice', async () => {
    const [, , , , , r6] = golden()
    const out = await replayResident(new RuleSetReplay(ACC, { from: FROM, tickMs: MIN }), r6!, FROM + 3 * DAY)
    expect(out.alerts.map((x) => [x.severity, x.flapCount, (x.openTs - FROM) / MIN - d(2, 6), x.resolved])).toEqual([['critical', 0, 0, true], ['critical', 0, 20, true], ['critical', 5, 40, true]])
    expect(out.flapEvents).toBe(2)
  })

  it('suppresses every cell from fewer than k residents, and a second cell where the suppressed one could be recovered by subtraction', async () => {
    const pop = [
      resident(series('a', 1, 15, { [d(0, 10)]: STAGE2 })),
      resident(series('b', 1, 15, { [d(0, 11)]: STAGE2 })),
      resident(series('c', 1, 15, { [d(0, 12)]: CRISIS })),
      resident(series('e', 1, 15)),
    ]
    const r = await backtest(ACC, undefined, pop, opts(2, 1))
    expect(r.active).toBeNull()
    expect(r.difference).toBeNull()
    expect(r.draft.bySeverity.critical.suppressed).toBe(true)
    // total 3 minus warnings 2 would give the critical: the warnings are suppressed too
    expect(r.draft.bySeverity.warning).toEqual({ alerts: null, residents: null, per1000ResidentDays: null, suppressed: true })
    expect(r.draft.bySeverity.info).toEqual({ alerts: 0, residents: 0, per1000ResidentDays: 0 })
    expect(r.draft.total).toEqual({ alerts: 3, residents: 3, per1000ResidentDays: 750 })
    // fewer than k residents in all: nothing but the marker
    const few = await backtest(ACC, undefined, pop, opts(5, 1))
    expect(few.population).toEqual({ residents: null, residentDays: null, readings: null, suppressed: true })
    expect(few.draft.suppressed).toBe(true)
    expect(JSON.stringify(few.draft)).not.toMatch(/"alerts":\d/)
    // a cell of the difference is suppressed when either side is
    const withActive = await backtest(ACC_DRAFT, ACC, pop, opts(2, 1))
    expect(withActive.difference!.bySeverity.critical).toEqual({ alerts: null, per1000ResidentDays: null, suppressed: true })
  })

  it('reads residents from a store in pages without splitting readings that share a time', async () => {
    const rows = series('p', 1, 15)
    const twin = rows.map((x) => ({ ...x, deviceId: 'd-p2' }))
    const all = [...rows, ...twin].sort((x, y) => x.ts - y.ts)
    const asked: number[] = []
    const store = { queryRange: async (_id: string, from: number, to: number, limit: number) => { asked.push(from); return all.filter((x) => x.ts >= from && x.ts < to).slice(0, limit) } }
    const seen: EvaluatedReading[] = []
    for await (const r of residentsFromStore(store, [profile('p')], FROM, FROM + DAY, { pageSize: 7 })) for await (const pg of r.pages) seen.push(...pg as EvaluatedReading[]) // (what this store's queryRange gave)
    expect(seen.length).toBe(all.length)
    expect(new Set(seen.map((x) => `${x.deviceId}/${x.seq}`)).size).toBe(all.length)
    expect(asked.length).toBeGreaterThan(20)
  })
})

// ---------------------------------------------------------------------------------------
// the lean replay against AlertBook itself

function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296 }
}

/** every kind of rule, with hold-downs, cool-downs, hysteresis and a no-data rule */
const MIXED = RuleSetDocSchema.parse({
  id: 'mixed', version: '1.0.0', publisher: 't', citation: 't', effectiveDate: '2026-01-01', audience: { kind: 'all' },
  rules: [
    { ...ACC.rules[0]!, id: 'bp' },
    { id: 'crisis', title: 'c', kind: 'threshold', severity: 'critical', when: [{ metric: 'sys', op: '>', value: 175 }], clear: { holdDownS: 0 } },
    { id: 'tachy', title: 't', kind: 'sustained', when: [{ metric: 'hr', op: '>', value: 105 }, { activity: ['rest'] }], forS: 900, maxGapS: 600, clear: { hysteresis: 5, holdDownS: 600 }, cooldownS: 1800 },
    { id: 'n-of-m', title: 'n', kind: 'nOfM', when: [{ metric: 'sys', op: '>=', value: 150 }], n: 2, m: 4, clear: { holdDownS: 300 } },
    { id: 'rise', title: 'r', kind: 'rateOfChange', metric: 'sys', direction: 'rise', delta: 30, withinS: 1800, severity: 'info' },
    { id: 'silent', title: 's', kind: 'noData', forS: 5400, clear: { holdDownS: 900 } },
    { id: 'avg', title: 'a', kind: 'average', windowS: 21_600, minReadings: 5, any: [{ metric: 'sys', op: '>', value: 138 }], clear: { hysteresis: 2 } },
    { id: 'low', title: 'l', kind: 'threshold', when: [{ metric: 'sys', op: '<', value: 95 }], skipActivities: ['moderate'], clear: { holdDownS: 120 }, cooldownS: 600 },
  ],
})

/** a population with episodes of high pressure, tachycardia, offline gaps and a second device */
function population (n: number, hours: number, seed: number): EvaluatedReading[][] {
  const rand = prng(seed)
  return Array.from({ length: n }, (_, i) => {
    const id = `p${i}`
    const out: EvaluatedReading[] = []
    const base = 110 + rand() * 35
    const spiky = rand() < 0.4
    const tachyFrom = rand() < 0.3 ? FROM + rand() * hours * 3600_000 : Infinity
    let seq = 0
    for (let t = FROM + Math.floor(rand() * 5) * MIN; t < FROM + hours * 3600_000;) {
      const r = rand()
      if (r < 0.004) { t += (60 + Math.floor(rand() * 240)) * MIN; continue } // offline for 1-5 hours
      const sys = Math.round(spiky && rand() < 0.08 ? 150 + rand() * 45 : base + (rand() - 0.5) * 20 - (rand() < 0.03 ? 30 : 0))
      const tachy = t >= tachyFrom && t < tachyFrom + 3600_000
      const hr = Math.round(tachy ? 103 + rand() * 15 : rand() < 0.1 ? 100 + rand() * 20 : 65 + rand() * 15)
      const activity = rand() < 0.8 ? 'rest' as const : 'moderate' as const
      out.push({ deviceId: rand() < 0.15 ? `${id}-b` : `${id}-a`, residentId: id, seq: seq++, ts: t, sys, dia: Math.round(sys * 0.62), hr, activity })
      t += (rand() < 0.5 ? 5 : 3 + Math.floor(rand() * 6)) * MIN + (rand() < 0.1 ? 0 : Math.floor(rand() * 50_000))
    }
    return out
  })
}

/** The reference: an AlertBook on its own in-memory database, its clock at each reading, ticked on the same grid. */
function throughAlertBook (doc: RuleSetDoc, residents: EvaluatedReading[][], to: number, tickMs: number) {
  const clock = new ManualClock(FROM)
  const book = new AlertBook({
    db: openDatabase(':memory:'), clock, logger: silentLogger(), activeRuleSets: () => [doc],
    resident: (id) => ({ ...profile(id), language: 'en', hospitalId: null }), overrides: () => new Map(), hospitalEndpoint: () => undefined, enqueueWebhook: () => {},
    options: { tickMs, escalateAfterS: 900, renotifyS: { critical: 300, warning: 3600, info: 0 } },
  })
  const all = residents.flat().sort((a, b) => a.ts - b.ts)
  let i = 0
  for (let T = FROM + tickMs; T <= to; T += tickMs) {
    // the readings before this tick, then the tick (a tick at T runs before a reading at T)
    const batch: EvaluatedReading[] = []
    while (i < all.length && all[i]!.ts < T) batch.push(all[i++]!)
    if (batch.length) { clock.set(batch[batch.length - 1]!.ts); book.feed(batch) }
    clock.set(T)
    book.tick()
  }
  const out = new Map<string, string[]>()
  for (const rows of residents) {
    const id = rows[0]!.residentId
    out.set(id, book.forResident(id, 100_000).map((a) => `${a.ruleId} ${a.severity} flap=${a.flapCount} at=${a.firstReading!.ts - FROM} ${a.state}`).sort())
  }
  return { alerts: out, flapEvents: book.stats.flapping }
}

const summary = (o: ResidentOutcome): string[] => o.alerts.map((a) => `${a.ruleId} ${a.severity} flap=${a.flapCount} at=${a.openTs - FROM} ${a.resolved ? 'resolved' : 'open'}`).sort()

describe('the lean replay gives what AlertBook gives', () => {
  it('the same alerts, severities, flapping and states, for every rule kind, on 300 residents over 24 hours', async () => {
    const hours = 24
    const to = FROM + hours * 3600_000
    const pop = population(300, hours, 16)
    const ref = throughAlertBook(MIXED, pop, to, MIN)
    const rs = new RuleSetReplay(MIXED, { from: FROM, tickMs: MIN })
    let flapEvents = 0
    const kinds = new Set<string>()
    let alerts = 0
    for (const rows of pop) {
      const out = await replayResident(rs, resident(rows), to)
      flapEvents += out.flapEvents
      alerts += out.alerts.length
      for (const a of out.alerts) kinds.add(a.ruleId + (a.flapCount ? '+flap' : ''))
      expect([rows[0]!.residentId, summary(out)]).toEqual([rows[0]!.residentId, ref.alerts.get(rows[0]!.residentId)])
    }
    expect(flapEvents).toBe(ref.flapEvents)
    // the sample exercises every rule, flapping included
    for (const k of ['bp', 'crisis', 'tachy', 'n-of-m', 'rise', 'silent', 'avg', 'low']) expect(kinds).toContain(k)
    expect([...kinds].some((k) => k.endsWith('+flap'))).toBe(true)
    expect(alerts).toBeGreaterThan(300)
  }, 120_000)
})

describe('the fast paths give what the plain replay gives', () => {
  it('worker threads reading an embedded store, and its lean replayRange, give the report of one thread reading queryRange, overrides included', async () => {
    const dir = tempDir('vm-backtest-par-')
    const store = new EmbeddedStore(join(dir, 'telemetry.db'))
    try {
      const hours = 48
      const to = FROM + hours * 3600_000
      const pop = population(150, hours, 23)
      for (const rows of pop) await store.write(rows)
      // a draft that differs from the active version in every kind of way: thresholds, hold-downs, a no-data rule
      const draft = RuleSetDocSchema.parse({ ...MIXED, version: '2.0.0-draft', rules: MIXED.rules.map((r) => r.kind === 'threshold' ? { ...r, clear: { holdDownS: 900 } } : r.kind === 'noData' ? { ...r, forS: 3600 } : r) })
      const profiles = pop.map((rows, i) => ({ ...profile(rows[0]!.residentId), birthYear: 1930 + i % 70 }))
      // personal thresholds for some residents, as the API looks them up
      const overrides = (id: string) => Number(id.slice(1)) % 7 === 0 ? new Map([['mixed/crisis', { value: 165 }], ['mixed/tachy', { value: 100, forS: 600 }]]) : undefined
      const o = { from: FROM, to, k: 3, tickMs: MIN, overrides }
      const strip = ({ elapsedMs: _, ...r }: BacktestReport) => r
      // the reference: one thread, the readings as queryRange gives them (all nine fields)
      const plain = { queryRange: store.queryRange.bind(store) }
      const ref = strip(await backtest(draft, MIXED, residentsFromStore(plain, profiles, FROM, to, { pageSize: 97 }), o))
      expect(ref.population.residents).toBe(150)
      expect(ref.draft.total.alerts).toBeGreaterThan(300)
      expect(ref.draft.flapping.total.alerts).toBeGreaterThan(0)
      // one thread, replayRange (ts, hr, sys, dia, activity)
      expect(strip(await backtest(draft, MIXED, residentsFromStore(store, profiles, FROM, to, { pageSize: 97 }), o))).toEqual(ref)
      // two worker threads, small pages (readings sharing a time at a page's end), progress per resident
      const seen: number[] = []
      const par = await backtestInWorkers(draft, MIXED, store.file, profiles, { ...o, progress: (p) => seen.push(p.residents) }, 2, 97)
      expect(strip(par)).toEqual(ref)
      // (the overrides reach the workers: without them the report is another)
      expect(strip(await backtestInWorkers(draft, MIXED, store.file, profiles, { ...o, overrides: () => undefined }, 2, 97))).not.toEqual(ref)
      expect(seen).toEqual(profiles.map((_, i) => i + 1))
      // replayRange reads only the fields the rule sets look at: rule sets of every kind, each on its own, against whole readings
      for (const rules of [
        [MIXED.rules[0]!], // classification: sys, dia
        [{ id: 'hr-score', title: 's', kind: 'score', bands: { hr: [{ upTo: 100, points: 0 }, { upTo: null, points: 3 }] }, anySubScoreAtLeast: 3 }], // hr
        [{ id: 'pp', title: 'p', kind: 'threshold', when: [{ metric: 'pp', op: '>', value: 58 }], skipActivities: ['moderate'] }], // sys, dia, activity
        [{ id: 'map-rise', title: 'm', kind: 'rateOfChange', metric: 'map', direction: 'rise', delta: 15, withinS: 3600 }],
        [{ id: 'rest-hr', title: 'r', kind: 'nOfM', when: [{ metric: 'hr', op: '>', value: 95 }, { activity: ['rest'] }], n: 2, m: 3 }],
        [MIXED.rules[5]!], // no data: ts only
        [MIXED.rules[6]!], // average: hr, sys, dia
      ]) {
        const doc = RuleSetDocSchema.parse({ ...MIXED, id: 'one', rules })
        const whole = strip(await backtest(doc, undefined, residentsFromStore(plain, profiles, FROM, to), o))
        expect(whole.draft.total.alerts).toBeGreaterThan(0)
        expect([rules[0]!.id, strip(await backtestFromStore({ draft: doc, active: undefined, store, residents: profiles, days: hours / 24, now: to, k: 3, alerting: { tickMs: MIN }, overrides }))]).toEqual([rules[0]!.id, whole])
      }
      // and through backtestFromStore in worker threads (what the API and the CLI call)
      const viaApi = await backtestFromStore({ draft, active: MIXED, store, residents: profiles, days: hours / 24, now: to, k: 3, alerting: { tickMs: MIN }, overrides, workers: 2 })
      expect(strip(viaApi)).toEqual(ref)
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
