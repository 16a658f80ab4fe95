import { describe, expect, it } from 'vitest'
import { pseudonym, researchReportPayload, type ReportOutcomeInput, type ResidentFacts } from '../index.ts'

const T = Date.UTC(2026, 4, 1)
const DAY = 86400_000
const period = { from: T, to: T + 30 * DAY }
const inst = { id: 'inst-a', pseudonymKey: 'key-a' }

function people (n: number, prefix: string, f: Partial<ResidentFacts> = {}): [string, ResidentFacts][] {
  return Array.from({ length: n }, (_, i) => [`${prefix}-${i}`, { region: 'county-a', birthYear: 1961, hospitalId: null, researchConsent: true, ...f }])
}
const profile = (residentId: string, category: string, end = T + DAY): ReportOutcomeInput => ({ residentId, kind: 'abpm-24h', guideline: 'esh-2023', start: end - DAY, end, category })
const home = (residentId: string, category: string, guideline = 'china-2018', end = T + 7 * DAY): ReportOutcomeInput => ({ residentId, kind: 'home-bp', guideline, start: end - 7 * DAY, end, category })

describe('report-level research aggregates', () => {
  it('dipping classes per county and age band: consenting residents only, a cell under k left out and counted', () => {
    const facts = new Map([
      ...people(5, 'sixty'), // 5 consenting in county-a, 60-69: published at k = 5
      ...people(1, 'refused', { researchConsent: false }), // same cell, never counted
      ...people(4, 'forty', { birthYear: 1981 }), // 4 in county-a, 40-49: under k
      ...people(6, 'b', { region: 'county-b', birthYear: 1950 }), // 6 in county-b, 70-79
    ])
    const outcomes = [
      ...['dipper', 'dipper', 'non-dipper', 'reverse-dipper', 'insufficient-data'].map((c, i) => profile(`sixty-${i}`, c)),
      profile('refused-0', 'extreme-dipper'),
      ...[0, 1, 2, 3].map((i) => profile(`forty-${i}`, 'dipper')),
      ...[0, 1, 2, 3, 4, 5].map((i) => profile(`b-${i}`, i < 3 ? 'extreme-dipper' : 'non-dipper')),
    ]
    const p = researchReportPayload(outcomes, (id) => facts.get(id), inst, 5, period)
    expect(p.schema).toBe('vitalmesh.research-report-aggregate/1')
    expect(p.dipping.cells.map((c) => [c.region, c.ageBand, c.residents, c.classes])).toEqual([
      ['county-a', '60-69', 5, { dipper: 2, 'non-dipper': 1, 'reverse-dipper': 1, 'insufficient-data': 1 }],
      ['county-b', '70-79', 6, { 'extreme-dipper': 3, 'non-dipper': 3 }],
    ])
    expect(p.dipping.suppressedCells).toBe(1)
    expect(p.homeBp).toEqual({ cells: [], suppressedCells: 0 })
    // pseudonyms only, keyed per institution: never an id, and another institution cannot link them
    const text = JSON.stringify(p)
    for (const id of facts.keys()) expect(text).not.toContain(id)
    expect(p.dipping.cells[0]!.pseudonyms).toEqual(['sixty-0', 'sixty-1', 'sixty-2', 'sixty-3', 'sixty-4'].map((id) => pseudonym('key-a', id)).sort())
    const other = researchReportPayload(outcomes, (id) => facts.get(id), { id: 'inst-b', pseudonymKey: 'key-b' }, 5, period)
    expect(other.dipping.cells[0]!.pseudonyms.some((x) => p.dipping.cells[0]!.pseudonyms.includes(x))).toBe(false)
    // with the consent withdrawn by one, the cell falls under k
    facts.get('sixty-4')!.researchConsent = false
    const after = researchReportPayload(outcomes, (id) => facts.get(id), inst, 5, period)
    expect(after.dipping.cells.map((c) => c.region)).toEqual(['county-b'])
    expect(after.dipping.suppressedCells).toBe(2)
  })

  it('protocol-confirmed home hypertension per guideline; a resident counts once per kind, with the latest report that ended in the period', () => {
    const facts = new Map(people(5, 'r'))
    const outcomes = [
      home('r-0', 'hypertension'), home('r-1', 'hypertension'), home('r-2', 'below-threshold'),
      home('r-3', 'insufficient-data', 'acc-aha-2017'),
      // r-4 repeated the week: the follow-up counts, not both
      home('r-4', 'insufficient-data', 'esh-2023', T + 7 * DAY), home('r-4', 'hypertension', 'esh-2023', T + 21 * DAY),
      // ended after the period: not in it
      home('r-0', 'below-threshold', 'china-2018', period.to),
      // r-0 also had a profile: it counts there, in its own distribution (one resident: under k)
      profile('r-0', 'dipper'),
    ]
    const p = researchReportPayload(outcomes, (id) => facts.get(id), inst, 5, period)
    expect(p.homeBp.cells).toHaveLength(1)
    expect(p.homeBp.cells[0]).toMatchObject({
      region: 'county-a', ageBand: '60-69', residents: 5,
      byGuideline: { 'china-2018': { hypertension: 2, 'below-threshold': 1 }, 'acc-aha-2017': { 'insufficient-data': 1 }, 'esh-2023': { hypertension: 1 } },
    })
    expect(p.dipping).toEqual({ cells: [], suppressedCells: 1 })
    expect(p.provenance.dipping).toMatch(/project heuristic/)
    expect(p.provenance.homeBp).toMatch(/135\/85/)
  })

  it('age band at the start of the report, unknown region and birth year as their own cells', () => {
    const facts = new Map<string, ResidentFacts>([
      ...people(5, 'turning', { birthYear: 1966 }), // 59 in 2025, 60 in 2026
      ...people(5, 'anon', { region: null, birthYear: null }),
    ])
    const outcomes = [
      ...[0, 1, 2, 3, 4].map((i) => ({ ...profile(`turning-${i}`, 'dipper', Date.UTC(2026, 0, 1, 12)), start: Date.UTC(2025, 11, 31, 12) })),
      ...[0, 1, 2, 3, 4].map((i) => profile(`anon-${i}`, 'non-dipper', Date.UTC(2026, 0, 2))),
    ]
    const p = researchReportPayload(outcomes, (id) => facts.get(id), inst, 5, { from: Date.UTC(2025, 11, 1), to: Date.UTC(2026, 1, 1) })
    expect(p.dipping.cells.map((c) => [c.region, c.ageBand])).toEqual([['county-a', '50-59'], ['unknown', 'unknown']])
  })
})
