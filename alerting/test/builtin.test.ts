import { describe, expect, it } from 'vitest'
import { BUILTIN_RULE_SETS, compileRule, type RuleState } from '../index.ts'

const doc = (id: string) => BUILTIN_RULE_SETS.find((d) => d.id === id)!
const rule = (setId: string, ruleId: string) => compileRule(doc(setId), doc(setId).rules.find((r) => r.id === ruleId)!)
const classify = (setId: string, ruleId: string, sys: number, dia: number) => {
  const v = rule(setId, ruleId).evaluateOne({ seq: 1, ts: 0, sys, dia }, {})!
  return { category: v.detail.category, alert: v.trigger ? v.severity : null }
}

/** Golden tests: every boundary of every built-in table, on both sides. */
describe('ACC/AHA 2017', () => {
  const cases: [number, number, string, string | null][] = [
    [119, 79, 'normal', null], [119.9, 79.9, 'normal', null],
    [120, 79, 'elevated', null], [129.9, 79, 'elevated', null],
    [130, 79, 'stage1', null], [119, 80, 'stage1', null], [139.9, 89.9, 'stage1', null], [125, 85, 'stage1', null],
    [140, 79, 'stage2', 'warning'], [119, 90, 'stage2', 'warning'], [180, 120, 'stage2', 'warning'], [180, 100, 'stage2', 'warning'],
    [180.1, 80, 'crisis', 'critical'], [181, 80, 'crisis', 'critical'], [150, 120.5, 'crisis', 'critical'], [119, 121, 'crisis', 'critical'],
  ]
  for (const [s, d, cat, alert] of cases) it(`${s}/${d} is ${cat}`, () => expect(classify('acc-aha-2017', 'bp-category', s, d)).toEqual({ category: cat, alert }))
})

describe('ESH 2023', () => {
  const cases: [number, number, string, string | null][] = [
    [119, 79, 'optimal', null], [120, 79, 'normal', null], [119, 80, 'normal', null], [129, 84, 'normal', null],
    [130, 84, 'high-normal', null], [129, 85, 'high-normal', null], [139, 89, 'high-normal', null],
    [140, 89, 'grade1', null], [139, 90, 'grade1', null], [159, 99, 'grade1', null],
    [160, 99, 'grade2', 'warning'], [159, 100, 'grade2', 'warning'], [179, 109, 'grade2', 'warning'],
    [180, 109, 'grade3', 'critical'], [179, 110, 'grade3', 'critical'], [180, 110, 'grade3', 'critical'],
  ]
  for (const [s, d, cat, alert] of cases) it(`${s}/${d} is ${cat}`, () => expect(classify('esh-2023', 'bp-grade', s, d)).toEqual({ category: cat, alert }))
  it('isolated systolic hypertension is >=140 and <90', () => {
    const ish = rule('esh-2023', 'isolated-systolic')
    expect(ish.evaluateOne({ seq: 1, ts: 0, sys: 140, dia: 89 }, {})!.trigger).toBe(true)
    expect(ish.evaluateOne({ seq: 1, ts: 0, sys: 140, dia: 90 }, {})!.trigger).toBe(false)
    expect(ish.evaluateOne({ seq: 1, ts: 0, sys: 139, dia: 80 }, {})!.trigger).toBe(false)
  })
  it('says the isolated diastolic row is unconfirmed', () => expect(doc('esh-2023').provenance).toMatch(/isolated diastolic.*unconfirmed/i))
})

describe('China 2018 (中国高血压防治指南 2018)', () => {
  const cases: [number, number, string, string | null][] = [
    [119, 79, 'normal', null], [120, 79, 'high-normal', null], [119, 80, 'high-normal', null], [139, 89, 'high-normal', null],
    [140, 89, 'grade1', null], [139, 90, 'grade1', null], [159, 99, 'grade1', null],
    [160, 99, 'grade2', 'warning'], [159, 100, 'grade2', 'warning'], [179, 109, 'grade2', 'warning'],
    [180, 109, 'grade3', 'critical'], [179, 110, 'grade3', 'critical'],
  ]
  for (const [s, d, cat, alert] of cases) it(`${s}/${d} is ${cat}`, () => expect(classify('china-2018', 'bp-grade', s, d)).toEqual({ category: cat, alert }))
  it('has Chinese titles and states the 2018-vs-2022 decision', () => {
    const r = doc('china-2018').rules[0]!
    expect(r.kind === 'classification' && r.categories.map((c) => typeof c.title === 'object' ? c.title['zh-CN'] : '')).toEqual(['正常血压', '正常高值', '1级高血压', '2级高血压', '3级高血压'])
    expect(doc('china-2018').provenance).toMatch(/2022/)
  })
})

describe('NEWS2 sub-scores (ordered <= tests)', () => {
  const r = rule('news2-subscores', 'single-parameter-3')
  const sys: [number, number][] = [[90, 3], [90.5, 2], [91, 2], [100, 2], [101, 1], [110, 1], [111, 0], [219, 0], [219.5, 3], [220, 3]]
  const hr: [number, number][] = [[40, 3], [41, 1], [50, 1], [51, 0], [90, 0], [91, 1], [110, 1], [111, 2], [130, 2], [131, 3]]
  for (const [x, pts] of sys) it(`SBP ${x} scores ${pts}`, () => expect(r.evaluateOne({ seq: 1, ts: 0, sys: x, dia: 50 }, {})!.detail.scores!.sys).toBe(pts))
  for (const [x, pts] of hr) it(`pulse ${x} scores ${pts}`, () => expect(r.evaluateOne({ seq: 1, ts: 0, hr: x }, {})!.detail.scores!.hr).toBe(pts))
  it('alerts on a 3 in a single parameter only, and says it is not NEWS2', () => {
    expect(r.evaluateOne({ seq: 1, ts: 0, sys: 105, dia: 60, hr: 125 }, {})!.trigger).toBe(false) // 1 + 2 is not "3 in one parameter"
    expect(r.evaluateOne({ seq: 1, ts: 0, hr: 131 }, {})!.trigger).toBe(true)
    expect(doc('news2-subscores').notes).toMatch(/NOT NEWS2.*seven parameters/s)
  })
})

describe('wearable heart-rate notifications', () => {
  const run = (ruleId: string, hr: number, activity: 'rest' | 'moderate', minutes: number) => {
    const r = rule('wearable-hr', ruleId)
    const st: RuleState = {}
    let last = false
    for (let m = 0; m <= minutes; m++) last = r.evaluateOne({ seq: m, ts: m * 60_000, hr, activity }, st)?.trigger ?? false
    return last
  }
  it('high: above 120 for 10 minutes at rest', () => {
    expect(run('hr-high-rest', 121, 'rest', 10)).toBe(true)
    expect(run('hr-high-rest', 121, 'rest', 9)).toBe(false)
    expect(run('hr-high-rest', 120, 'rest', 30)).toBe(false)
    expect(run('hr-high-rest', 150, 'moderate', 30)).toBe(false)
  })
  it('low: below 40 for 10 minutes at rest; 40 is unconfirmed', () => {
    expect(run('hr-low-rest', 39, 'rest', 10)).toBe(true)
    expect(run('hr-low-rest', 40, 'rest', 10)).toBe(false)
    expect(doc('wearable-hr').provenance).toMatch(/40 bpm is unconfirmed/)
  })
})

describe('home-monitoring average (135/85)', () => {
  const r = rule('home-bp-average', 'home-average')
  const feed = (n: number, sys: number, dia: number) => {
    const st: RuleState = {}
    let v
    for (let i = 0; i < n; i++) v = r.evaluateOne({ seq: i, ts: i * 3600_000 * 12, sys, dia }, st)
    return v!
  }
  it('needs the minimum number of readings and an average at or above 135 or 85', () => {
    expect(feed(12, 135, 80).trigger).toBe(true)
    expect(feed(12, 130, 85).trigger).toBe(true)
    expect(feed(11, 150, 95).trigger).toBe(false)
    expect(feed(12, 134, 84).trigger).toBe(false)
    expect(feed(12, 140, 80).detail.average).toMatchObject({ sys: 140, dia: 80, n: 12 })
  })
})

it('every built-in rule set carries a citation, an effective date and a provenance', () => {
  expect(BUILTIN_RULE_SETS.map((d) => d.id).sort()).toEqual(['acc-aha-2017', 'china-2018', 'esh-2023', 'home-bp-average', 'news2-subscores', 'vitalmesh-lost-contact', 'vitalmesh-safety', 'wearable-hr'])
  for (const d of BUILTIN_RULE_SETS) {
    expect(d.citation.length).toBeGreaterThan(20)
    expect(d.provenance).toBeTruthy()
  }
})
