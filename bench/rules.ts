import { BUILTIN_RULE_SETS, RuleIndex, RuleSetDocSchema, type RuleSetDoc, type RuleState } from '../alerting/index.ts'
import type { Reading } from '../core/index.ts'

export interface RulesResult { ruleSets: number, rules: number, readings: number, nsPerReading: number, nsPerReadingPerRule: number }

/**
 * Evaluation cost of the rule engine: 10 active rule sets (the six built-ins and four
 * published variants), readings spread over 1,000 residents, state kept per resident.
 */
export function ruleEvaluation (readings = 400_000): RulesResult {
  const variants: RuleSetDoc[] = [1, 2, 3, 4].map((i) => RuleSetDocSchema.parse({
    id: `variant-${i}`, version: '1.0.0', publisher: 'bench', citation: 'bench', effectiveDate: '2026-01-01', audience: { kind: 'all' },
    rules: [
      { id: 'tachy', title: 'T', kind: 'sustained', when: [{ metric: 'hr', op: '>', value: 110 + i }, { activity: ['rest'] }], forS: 300 },
      { id: 'pp', title: 'P', kind: 'threshold', when: [{ metric: 'pp', op: '>=', value: 70 + i }] },
      { id: 'n-of-m', title: 'N', kind: 'nOfM', when: [{ metric: 'sys', op: '>=', value: 150 + i }], n: 3, m: 5 },
    ],
  }))
  const active = [...BUILTIN_RULE_SETS, ...variants]
  const index = new RuleIndex(active, () => undefined)
  const residents = Array.from({ length: 1000 }, (_, i) => ({ id: `r${i}`, birthYear: 1950 + (i % 50), conditions: [], region: 'c1' }))
  const states = residents.map(() => new Map<string, RuleState>())
  const rulesPerResident = index.rulesFor(residents[0]!, Date.now()).length
  const input: Reading[] = Array.from({ length: 4096 }, (_, i) => ({ seq: i, ts: 1_800_000_000_000 + i * 30_000, hr: 60 + (i * 7) % 80, sys: 100 + (i * 13) % 100, dia: 60 + (i * 5) % 50, activity: i % 3 ? 'rest' : 'light' }))
  const run = (n: number): number => {
    let hits = 0
    for (let i = 0; i < n; i++) {
      const ri = i % residents.length
      const rules = index.rulesFor(residents[ri]!, 0)
      const st = states[ri]!
      const r = input[i & 4095]!
      const reading = { ...r, ts: r.ts + i * 1000 }
      for (const rule of rules) {
        let s = st.get(rule.key)
        if (!s) { s = {}; st.set(rule.key, s) }
        const v = rule.evaluateOne(reading, s)
        if (v?.trigger) hits++
      }
    }
    return hits
  }
  run(50_000) // warm-up
  const t0 = process.hrtime.bigint()
  run(readings)
  const ns = Number(process.hrtime.bigint() - t0)
  return { ruleSets: active.length, rules: rulesPerResident, readings, nsPerReading: ns / readings, nsPerReadingPerRule: ns / readings / rulesPerResident }
}
