import { describe, expect, it } from 'vitest'
import { compileRule, RuleSetDocSchema, audienceMatches, type Rule, type RuleState } from '../index.ts'
import type { Reading } from '../../core/index.ts'

const DOC = { id: 't', version: '1.0.0' }
const mk = (r: Record<string, unknown>, override?: Parameters<typeof compileRule>[2]) =>
  compileRule(DOC, RuleSetDocSchema.parse({ id: 't', version: '1.0.0', publisher: 'p', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules: [{ id: 'r', title: 'T', ...r }] }).rules[0] as Rule, override)
const at = (min: number, v: Partial<Reading>): Reading => ({ seq: min, ts: min * 60_000, ...v })

describe('rule kinds (pure, with readings as the clock)', () => {
  it('threshold: every comparison, between as half-open, pulse pressure and mean arterial pressure', () => {
    expect(mk({ kind: 'threshold', when: [{ metric: 'hr', op: '>=', value: 100 }] }).evaluateOne(at(0, { hr: 100 }), {})!.trigger).toBe(true)
    expect(mk({ kind: 'threshold', when: [{ metric: 'hr', op: '>', value: 100 }] }).evaluateOne(at(0, { hr: 100 }), {})!.trigger).toBe(false)
    expect(mk({ kind: 'threshold', when: [{ metric: 'hr', op: '<', value: 50 }] }).evaluateOne(at(0, { hr: 49.9 }), {})!.trigger).toBe(true)
    expect(mk({ kind: 'threshold', when: [{ metric: 'hr', op: '<=', value: 50 }] }).evaluateOne(at(0, { hr: 50 }), {})!.trigger).toBe(true)
    const between = mk({ kind: 'threshold', when: [{ metric: 'sys', op: 'between', min: 120, max: 130 }] })
    expect([119.9, 120, 129.9, 130].map((s) => between.evaluateOne(at(0, { sys: s, dia: 70 }), {})!.trigger)).toEqual([false, true, true, false])
    const pp = mk({ kind: 'threshold', when: [{ metric: 'pp', op: '>=', value: 60 }] })
    expect(pp.evaluateOne(at(0, { sys: 150, dia: 90 }), {})!.trigger).toBe(true)
    expect(pp.evaluateOne(at(0, { sys: 149, dia: 90 }), {})!.trigger).toBe(false)
    const map = mk({ kind: 'threshold', when: [{ metric: 'map', op: '<', value: 65 }] })
    expect(map.evaluateOne(at(0, { sys: 90, dia: 50 }), {})!.trigger).toBe(true) // 50 + 40/3 = 63.3
    expect(map.evaluateOne(at(0, { sys: 100, dia: 50 }), {})!.trigger).toBe(false) // 66.7
    expect(map.evaluateOne(at(0, { hr: 80 }), {})).toBeUndefined() // nothing to judge
  })

  it('hysteresis: an open alert holds until the value is back by the margin', () => {
    const r = mk({ kind: 'threshold', when: [{ metric: 'hr', op: '>', value: 120 }], clear: { hysteresis: 5 } })
    expect(r.evaluateOne(at(0, { hr: 118 }), {})).toMatchObject({ trigger: false, holds: true })
    expect(r.evaluateOne(at(0, { hr: 115 }), {})).toMatchObject({ trigger: false, holds: false })
  })

  it('sustained: true for the whole duration, reset by one false reading, only at rest', () => {
    const r = mk({ kind: 'sustained', when: [{ metric: 'hr', op: '>', value: 120 }, { activity: ['rest'] }], forS: 600 })
    const st: RuleState = {}
    const trig = (m: number, hr: number, activity: Reading['activity'] = 'rest') => r.evaluateOne(at(m, { hr, activity }), st)!.trigger
    expect([0, 5, 9].map((m) => trig(m, 130))).toEqual([false, false, false])
    expect(trig(10, 130)).toBe(true)
    expect(trig(11, 110)).toBe(false)
    expect(trig(12, 130)).toBe(false)
    expect(trig(21, 130)).toBe(false)
    expect(trig(22, 130)).toBe(true)
    expect(trig(23, 140, 'moderate')).toBe(false) // exercising: not "at rest"
  })

  it('n of the last m readings', () => {
    const r = mk({ kind: 'nOfM', when: [{ metric: 'sys', op: '>=', value: 160 }], n: 3, m: 5 })
    const st: RuleState = {}
    const seq = [170, 120, 165, 120, 161, 120, 120, 120].map((s, i) => r.evaluateOne(at(i, { sys: s, dia: 80 }), st)!.trigger)
    expect(seq).toEqual([false, false, false, false, true, false, false, false])
  })

  it('rate of change within a window', () => {
    const r = mk({ kind: 'rateOfChange', metric: 'sys', direction: 'rise', delta: 30, withinS: 600 })
    const st: RuleState = {}
    expect(r.evaluateOne(at(0, { sys: 120, dia: 80 }), st)!.trigger).toBe(false)
    expect(r.evaluateOne(at(5, { sys: 145, dia: 80 }), st)!.trigger).toBe(false)
    expect(r.evaluateOne(at(9, { sys: 151, dia: 80 }), st)).toMatchObject({ trigger: true, detail: { change: 31 } })
    expect(r.evaluateOne(at(30, { sys: 160, dia: 80 }), st)!.trigger).toBe(false) // the old low is out of the window
    const fall = mk({ kind: 'rateOfChange', metric: 'hr', direction: 'fall', delta: 20, withinS: 60 })
    const s2: RuleState = {}
    fall.evaluateOne(at(0, { hr: 90 }), s2)
    expect(fall.evaluateOne({ seq: 1, ts: 30_000, hr: 65 }, s2)!.trigger).toBe(true)
  })

  it('average over a window with a minimum number of readings, old readings leave the window', () => {
    const r = mk({ kind: 'average', windowS: 3600, minReadings: 3, any: [{ metric: 'sys', op: '>=', value: 135 }] })
    const st: RuleState = {}
    expect(r.evaluateOne(at(0, { sys: 140, dia: 80 }), st)!.trigger).toBe(false)
    expect(r.evaluateOne(at(10, { sys: 140, dia: 80 }), st)!.trigger).toBe(false)
    expect(r.evaluateOne(at(20, { sys: 130, dia: 80 }), st)!.trigger).toBe(true) // 136.7
    expect(r.evaluateOne(at(200, { sys: 120, dia: 80 }), st)!.trigger).toBe(false) // the others aged out
  })

  it('score bands', () => {
    const r = mk({ kind: 'score', bands: { hr: [{ upTo: 50, points: 3 }, { upTo: 100, points: 0 }, { upTo: null, points: 2 }] }, anySubScoreAtLeast: 2 })
    expect([45, 80, 120].map((hr) => r.evaluateOne(at(0, { hr }), {})!.trigger)).toEqual([true, false, true])
  })

  it('classification takes the higher of the SBP and DBP categories', () => {
    const r = mk({ kind: 'classification', categories: [{ id: 'a' }, { id: 'b', sys: { op: '>=', value: 130 } }, { id: 'c', sys: { op: '>=', value: 150 }, dia: { op: '>=', value: 90 } }], alertOn: { c: 'warning' } })
    expect(r.evaluateOne(at(0, { sys: 131, dia: 95 }), {})).toMatchObject({ trigger: true, detail: { category: 'c' } })
    expect(r.evaluateOne(at(0, { sys: 131, dia: 70 }), {})).toMatchObject({ trigger: false, detail: { category: 'b' } })
  })

  it('a personal override (set by the hospital) replaces the threshold and duration', () => {
    const base = { kind: 'sustained', when: [{ metric: 'hr', op: '>', value: 120 }], forS: 600 }
    const r = mk(base, { value: 100, forS: 60 })
    const st: RuleState = {}
    r.evaluateOne(at(0, { hr: 105 }), st)
    expect(r.evaluateOne(at(1, { hr: 105 }), st)!.trigger).toBe(true)
  })

  it('audiences: all, one resident, cohorts by age, condition and region', () => {
    const p = { id: 'r1', birthYear: 1950, conditions: ['diabetes'], region: 'c1' }
    const now = Date.UTC(2026, 5, 1)
    expect(audienceMatches({ kind: 'all' }, p, now)).toBe(true)
    expect(audienceMatches({ kind: 'resident', residentId: 'r2' }, p, now)).toBe(false)
    expect(audienceMatches({ kind: 'cohort', ageMin: 65 }, p, now)).toBe(true)
    expect(audienceMatches({ kind: 'cohort', ageMax: 76 }, p, now)).toBe(false)
    expect(audienceMatches({ kind: 'cohort', conditions: ['ckd', 'diabetes'], regions: ['c1'] }, p, now)).toBe(true)
    expect(audienceMatches({ kind: 'cohort', regions: ['c2'] }, p, now)).toBe(false)
  })

  it('rejects invalid rule sets with a reason', () => {
    const bad = RuleSetDocSchema.safeParse({ id: 't', version: '1', publisher: 'p', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules: [{ id: 'r', title: 'T', kind: 'nOfM', when: [{ metric: 'hr', op: '>', value: 1 }], n: 4, m: 3 }] })
    expect(bad.success).toBe(false)
    expect(bad.error!.issues.map((i) => i.path.join('.'))).toEqual(expect.arrayContaining(['version', 'rules.0.n']))
  })
})
