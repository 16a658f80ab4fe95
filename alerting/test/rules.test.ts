import { describe, expect, it } from 'vitest'
import { classifyAccAha2017, defaultRuleSet, evaluate } from '../index.ts'

describe('ACC/AHA 2017 classification (half-open bands, higher of SBP and DBP)', () => {
  const cases: [number, number, string][] = [
    [119, 79, 'normal'], [119.9, 79.9, 'normal'],
    [120, 79, 'elevated'], [129, 79, 'elevated'], [129.5, 70, 'elevated'],
    [130, 70, 'stage1'], [139, 79, 'stage1'], [119, 80, 'stage1'], [125, 89, 'stage1'],
    [140, 70, 'stage2'], [110, 90, 'stage2'], [180, 120, 'stage2'], [180, 100, 'stage2'],
    [181, 80, 'crisis'], [180.5, 80, 'crisis'], [150, 121, 'crisis'], [200, 130, 'crisis'],
  ]
  for (const [sys, dia, cat] of cases) {
    it(`${sys}/${dia} is ${cat}`, () => expect(classifyAccAha2017(sys, dia)).toBe(cat))
  }
})

describe('default rule set', () => {
  const active = (r: { hr?: number, sys?: number, dia?: number }) =>
    evaluate({ seq: 1, ts: 0, ...r }, defaultRuleSet).filter((f) => f.active).map((f) => f.ruleId)

  it('flags heart rate above 120 and below 40 only', () => {
    expect(active({ hr: 120 })).toEqual([])
    expect(active({ hr: 121 })).toEqual(['hr.high'])
    expect(active({ hr: 40 })).toEqual([])
    expect(active({ hr: 39 })).toEqual(['hr.low'])
  })

  it('flags crisis as critical and Stage 2 as a warning', () => {
    expect(active({ sys: 181, dia: 80 })).toEqual(['bp.crisis'])
    expect(active({ sys: 180, dia: 120 })).toEqual(['bp.stage2'])
    expect(active({ sys: 139, dia: 89 })).toEqual([])
    const f = evaluate({ seq: 1, ts: 0, sys: 190, dia: 100 }, defaultRuleSet).find((x) => x.active)!
    expect(f.severity).toBe('critical')
  })

  it('does not judge what a reading did not measure', () => {
    expect(evaluate({ seq: 1, ts: 0, hr: 70 }, defaultRuleSet).map((f) => f.ruleId)).toEqual(['hr.high', 'hr.low'])
  })
})
