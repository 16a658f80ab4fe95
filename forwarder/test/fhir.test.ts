import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { STATISTIC_EXTENSION, alertFlagEntry, measurementSink, summaryEntries, transactionBundle, researchPayload, pseudonym, ageBand, addValue, emptyStats, mergeStats, percentile, statsToJSON, statsFromJSON, type ResidentSummary, type ClosedWindow, type ResidentWindow } from '../index.ts'
import { fhirValidator } from '../../test/helpers/fhir.ts'

const summary = (version = 1): ResidentSummary => ({
  residentId: 'r1', window: { kind: '1h', start: Date.UTC(2026, 10, 1, 8), end: Date.UTC(2026, 10, 1, 9) }, version,
  hr: { count: 60, min: 55, max: 130, mean: 72.4, p50: 70, p95: 120 },
  sys: { count: 4, min: 118, max: 150, mean: 131.5, p50: 128, p95: 150 },
  dia: { count: 4, min: 76, max: 95, mean: 83, p50: 80, p95: 95 },
  bpCategories: { normal: 1, stage1: 2, stage2: 1 }, timeInRange: { bp: 0.25, hr: 0.9 }, alerts: 1,
})

describe('FHIR R4 summaries', () => {
  const validate = fhirValidator()

  it('builds transaction Bundles that validate against the FHIR R4 JSON schema', () => {
    for (const version of [1, 2]) {
      const bundle = transactionBundle(summaryEntries(summary(version), 'county-a'), 'b1', Date.UTC(2026, 10, 1, 9, 10))
      expect(validate(bundle), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true)
    }
    // and the validator does reject a broken one
    expect(validate({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Observation', status: 'guessed' } }] })).toBe(false)
  })

  it('uses the vital-signs codes, UCUM units, an effective period and a deterministic identifier', () => {
    const entries = summaryEntries(summary(), 'county-a')
    // heart rate: 5 statistics; BP: the mean as a panel, min, max, p50, p95 of SBP and of DBP apart
    expect(entries.length).toBe(5 + 1 + 8)
    const ids = entries.map((e) => (e.resource.identifier as { value: string }[])[0]!.value.replace(/^.*\/1h\/[^/]+\//, ''))
    expect(ids.sort()).toEqual(['bp/mean', ...['dia', 'hr', 'sys'].flatMap((m) => ['max', ...(m === 'hr' ? ['mean'] : []), 'min', 'p50', 'p95'].map((st) => `${m}/${st}`))].sort())
    const byId = (suffix: string) => entries.find((e) => (e.resource.identifier as { value: string }[])[0]!.value.endsWith(suffix))!
    const sys = byId('/sys/p95')
    expect(sys.resource).toMatchObject({
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }], extension: [{ url: STATISTIC_EXTENSION, valueCode: 'p95' }] },
      valueQuantity: { value: 150, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' },
      effectivePeriod: { start: '2026-11-01T08:00:00.000Z', end: '2026-11-01T09:00:00.000Z' },
      method: { text: '95th percentile of 4 readings over 1h' },
    })
    expect(sys.resource.component).toBeUndefined() // never a panel of statistics from different readings
    expect(byId('/dia/p95').resource).toMatchObject({ code: { coding: [{ code: '8462-4' }] }, valueQuantity: { value: 95, code: 'mm[Hg]' } })
    expect(byId('/dia/min').resource).toMatchObject({ valueQuantity: { value: 76 } })
    const bp = byId('/bp/mean')
    expect(bp.resource).toMatchObject({
      code: { coding: [{ code: '85354-9' }], extension: [{ valueCode: 'mean' }] },
      component: [
        { code: { coding: [{ code: '8480-6' }] }, valueQuantity: { value: 131.5, code: 'mm[Hg]' } },
        { code: { coding: [{ code: '8462-4' }] }, valueQuantity: { value: 83, code: 'mm[Hg]' } },
      ],
    })
    expect(bp.resource.valueQuantity).toBeUndefined() // obs-7: no top-level value beside components
    expect(bp.request).toEqual({ method: 'POST', url: 'Observation', ifNoneExist: expect.stringMatching(/^identifier=urn%3Avitalmesh%3Asummary\|county-a%2Fr1%2F1h%2F/) })
    const hr = entries.find((e) => (e.resource.code as { coding: { code: string }[] }).coding[0]!.code === '8867-4')!
    expect(hr.resource.valueQuantity).toEqual({ value: 72.4, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' })
    expect(summaryEntries(summary(), 'county-a').map((e) => e.fullUrl)).toEqual(entries.map((e) => e.fullUrl))
    const corrected = summaryEntries(summary(2), 'county-a')[0]!
    expect(corrected.resource.status).toBe('amended')
    expect(corrected.request.method).toBe('PUT')
  })
})

describe('statistics', () => {
  it('merges histograms exactly', () => {
    const a = emptyStats(); const b = emptyStats(); const all = emptyStats()
    for (let i = 0; i < 100; i++) { addValue(i % 2 ? a : b, 50 + i); addValue(all, 50 + i) }
    mergeStats(a, b)
    expect(statsToJSON(a)).toEqual(statsToJSON(all))
    expect(percentile(a, 50)).toBe(99)
    expect(percentile(a, 95)).toBe(144)
  })

  it('merging and the stored form agree with one histogram of all values, whatever the values and their split', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.double({ min: -50, max: 400, noNaN: true }), fc.boolean()), { maxLength: 200 }), (values) => {
      const a = emptyStats(); const b = emptyStats(); const all = emptyStats()
      for (const [x, left] of values) { addValue(left ? a : b, x); addValue(all, x) }
      const merged = statsFromJSON(statsToJSON(a)) // through the stored form, as a roll-up from a child region
      mergeStats(merged, b)
      // the sum is added in another order, so it may differ in the last bits; everything else is exact
      const { sum: ms, ...m } = statsToJSON(merged); const { sum: as, ...al } = statsToJSON(all)
      expect(m).toEqual(al)
      expect(ms).toBeCloseTo(as, 6)
      for (const p of [1, 50, 95, 100]) expect(percentile(merged, p)).toBe(percentile(all, p))
      const bins = statsToJSON(all).bins
      expect(Object.values(bins).reduce((n, c) => n + c, 0)).toBe(values.length)
      for (const [x] of values) expect(bins[Math.round(x)]).toBeGreaterThan(0)
    }), { numRuns: 300 })
  })
})

describe('research de-identification', () => {
  const win = (residents: { id: string, birthYear: number, consent: boolean }[]): ClosedWindow => {
    const all: ResidentWindow[] = residents.map((r) => {
      const w: ResidentWindow = { residentId: r.id, kind: '1h', start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 0, 1, 1), timeZone: 'UTC', hr: emptyStats(), sys: emptyStats(), dia: emptyStats(), cats: { normal: 1 }, bpIn: 1, hrIn: 1 }
      addValue(w.hr, 70); addValue(w.sys, 120); addValue(w.dia, 78)
      return w
    })
    const facts = new Map(residents.map((r) => [r.id, { region: 'county-a', birthYear: r.birthYear, hospitalId: null, researchConsent: r.consent }]))
    return { kind: '1h', start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 0, 1, 1), timeZone: 'UTC', version: 1, changed: [], all, rollup: undefined as never, facts: (id) => facts.get(id) }
  }
  const residents = [
    ...Array.from({ length: 6 }, (_, i) => ({ id: `res-sixties-${i}`, birthYear: 1961, consent: true })),
    ...Array.from({ length: 3 }, (_, i) => ({ id: `res-forties-${i}`, birthYear: 1981, consent: true })),
    { id: 'res-no-consent', birthYear: 1961, consent: false },
  ]

  it('covers consenting residents only, in county and age-band cells of at least k, with keyed pseudonyms', () => {
    const p = researchPayload(win(residents), { id: 'inst-a', pseudonymKey: 'key-a' }, 5)
    expect(p.cells.map((c) => [c.region, c.ageBand, c.residents])).toEqual([['county-a', '60-69', 6]])
    expect(p.suppressedCells).toBe(1)
    const text = JSON.stringify(p)
    for (const r of residents) expect(text).not.toContain(r.id)
    expect(text).not.toContain('res-')
    const q = researchPayload(win(residents), { id: 'inst-b', pseudonymKey: 'key-b' }, 5)
    expect(new Set([...p.cells[0]!.pseudonyms, ...q.cells[0]!.pseudonyms]).size).toBe(12)
    expect(pseudonym('key-a', 'r1')).not.toBe(pseudonym('key-b', 'r1'))
  })

  it('bands ages', () => {
    const at = Date.UTC(2026, 5, 1)
    expect([2010, 2000, 1990, 1961, 1946, 1940].map((y) => ageBand(y, at))).toEqual(['0-17', '18-29', '30-39', '60-69', '80+', '80+'])
    expect(ageBand(null, at)).toBe('unknown')
  })
})

describe('FHIR R4 alerts and measurements feeds', () => {
  const validate = fhirValidator()
  const alert = { id: 'a1', residentId: 'r1', ruleKey: 'acc-aha-2017/bp-category', ruleSetVersion: '1.0.0', severity: 'critical', state: 'open', openedAt: Date.UTC(2026, 10, 1, 8), resolvedAt: null as number | null, escalatedAt: null as number | null, messages: { en: 'hypertensive crisis' }, reading: null }

  it('a critical alert is a Flag: created active, updated when escalated, inactive with an end once it ended', () => {
    const opened = alertFlagEntry(alert, 'critical', 'county-a')
    expect(opened.request).toEqual({ method: 'POST', url: 'Flag', ifNoneExist: 'identifier=urn%3Avitalmesh%3Aalert|county-a%2Fa1' })
    expect(opened.resource).toMatchObject({ resourceType: 'Flag', status: 'active', period: { start: '2026-11-01T08:00:00.000Z' } })
    const escalated = alertFlagEntry({ ...alert, escalatedAt: alert.openedAt + 60_000 }, 'escalated', 'county-a')
    expect(escalated.request).toEqual({ method: 'PUT', url: 'Flag?identifier=urn%3Avitalmesh%3Aalert|county-a%2Fa1' })
    expect((escalated.resource.meta as { tag: { code: string }[] }).tag.map((x) => x.code)).toContain('escalated')
    const ended = alertFlagEntry({ ...alert, state: 'resolved', resolvedAt: alert.openedAt + 3600_000 }, 'ended', 'county-a')
    expect(ended.resource).toMatchObject({ status: 'inactive', period: { end: '2026-11-01T09:00:00.000Z' } })
    for (const e of [opened, escalated, ended]) expect(validate(transactionBundle([e], 'b', 0)), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true)
  })

  it('measurements: one Observation per reading, each Bundle within maxEntries and carrying the Devices it refers to, only for hospitals that chose them', () => {
    const bodies: Record<string, any>[] = []; const urls: string[] = []
    const hospitals = [{ id: 'h1', fhirUrl: 'http://h1/fhir', fhirAuth: 'bearer' as const, fhirSecret: null, feeds: ['measurements'] }, { id: 'h2', fhirUrl: 'http://h2/fhir', fhirAuth: 'bearer' as const, fhirSecret: null, feeds: ['reports', 'alerts'] }]
    const send = measurementSink({ node: 'n', maxEntries: 8, clock: { now: () => 0 } as never, hospitals: () => hospitals, hospitalOf: (r) => (r === 'r2' ? 'h2' : 'h1'), enqueue: (e) => { urls.push(e.url); bodies.push(JSON.parse(e.body)) }, audit: () => {} })
    const rows = Array.from({ length: 20 }, (_, i) => ({ deviceId: `d${i % 2}`, residentId: i % 5 === 4 ? 'r2' : 'r1', seq: i, ts: Date.UTC(2026, 0, 1) + i * 1000, hr: 70, ...(i % 3 ? { sys: 120, dia: 80 } : {}) }))
    send(rows)
    expect(urls.every((u) => u === 'http://h1/fhir')).toBe(true)
    expect(bodies.every((b) => b.entry.length <= 8)).toBe(true)
    const obs = bodies.flatMap((b) => b.entry).filter((e: any) => e.resource.resourceType === 'Observation')
    expect(obs.map((e: any) => e.resource.identifier[0].value).sort()).toEqual(rows.filter((r) => r.residentId === 'r1').map((r) => `${r.deviceId}/${r.seq}`).sort())
    for (const b of bodies) {
      const devices = new Set(b.entry.filter((e: any) => e.resource.resourceType === 'Device').map((e: any) => e.fullUrl))
      for (const e of b.entry) if (e.resource.resourceType === 'Observation') expect(devices.has(e.resource.device.reference)).toBe(true)
      expect(validate(b), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true)
    }
    const hrOnly = obs.find((e: any) => e.resource.identifier[0].value === 'd0/0')!
    expect(hrOnly.resource).toMatchObject({ code: { coding: [{ code: '8867-4' }] }, valueQuantity: { value: 70, code: '/min' } })
  })
})
