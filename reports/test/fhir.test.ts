import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { medplumServer, type MedplumServer } from '../../test/helpers/medplum.ts'
import { fhirValidator } from '../../test/helpers/fhir.ts'
import { RESIDENT_SYSTEM } from '../../forwarder/index.ts'
import { ABPM_24H, HOME_BP_7D, computeHomeBp, computeProfile, reportBundles, zonedTime, addDays, localMinuteOfDay, type FinishedReport, type ReportReading } from '../index.ts'

const TZ = 'Europe/Berlin'
const cuff = (ts: number, sys: number, dia: number, over: Partial<ReportReading> = {}): ReportReading => ({ ts, deviceId: 'cuff-1', sys, dia, deviceModel: 'omron-x', validation: 'validated', ...over })

function homeReadings (sys: number): ReportReading[] {
  const out: ReportReading[] = []
  for (let d = 0; d < 7; d++) for (const m of [7 * 60, 20 * 60]) for (const k of [0, 1]) out.push(cuff(zonedTime(addDays('2025-03-27', d), m, TZ) + k * 60_000, sys + k, 82))
  out.push(cuff(zonedTime('2025-03-28', 9 * 60, TZ), 150, 95, { deviceId: 'watch-1', deviceModel: 'smartwatch', validation: 'cuffless' }))
  return out
}

function homeReport (version: number, sys: number): FinishedReport {
  const start = zonedTime('2025-03-27', 6 * 60, TZ)
  const result = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: TZ, guideline: 'esh-2023', now: Date.parse('2025-04-05T00:00:00Z') }, homeReadings(sys))
  return { runId: 'run-home-1', residentId: 'res-1', version, issuedAt: Date.parse('2025-04-03T00:00:00Z'), protocol: HOME_BP_7D, result }
}

function profileReport (): FinishedReport {
  const start = zonedTime('2025-03-29', 10 * 60, TZ)
  const rs: ReportReading[] = []
  for (let k = 0; k < 72; k++) {
    const ts = start + k * 20 * 60_000
    const m = localMinuteOfDay(ts, TZ)
    const night = m >= 22 * 60 || m < 7 * 60
    rs.push(cuff(ts, night ? 112 : 131, night ? 66 : 81, { deviceId: 'abpm-1' }))
  }
  const result = computeProfile(ABPM_24H, { startTs: start, timeZone: TZ, guideline: 'acc-aha-2017', now: start + 25 * 3600_000 }, rs)
  return { runId: 'run-abpm-1', residentId: 'res-1', version: 1, issuedAt: start + 25 * 3600_000, protocol: ABPM_24H, result }
}

type Entry = { fullUrl: string, resource: any, request: { method: string, url: string, ifNoneExist?: string } }
const entries = (b: Record<string, unknown>) => b.entry as Entry[]
const all = (bs: Record<string, unknown>[]) => bs.flatMap(entries)

describe('report Bundles', () => {
  it('a home-BP report: DiagnosticReport, adherence, the mean panel derived from the readings it averages', () => {
    const bs = reportBundles(homeReport(1, 132), { node: 'county-a', readings: true })
    for (const b of bs) expect(fhirValidator()(b)).toBe(true)
    // 24 readings in Bundles of 8 (Medplum's limit for conditional transactions), then the report
    expect(bs.map((b) => entries(b).length)).toEqual([8, 8, 8, 3])
    expect(bs.map((b) => b.id)).toEqual(['county-a-res-1-run-home-1-v1-readings-0', 'county-a-res-1-run-home-1-v1-readings-1', 'county-a-res-1-run-home-1-v1-readings-2', 'county-a-res-1-run-home-1-v1'])
    const e = all(bs)
    const dr = e.find((x) => x.resource.resourceType === 'DiagnosticReport')!
    expect(dr.resource.status).toBe('final')
    expect(dr.request).toEqual({ method: 'POST', url: 'DiagnosticReport', ifNoneExist: `identifier=${encodeURIComponent('urn:vitalmesh:report')}|${encodeURIComponent('county-a/res-1/report/run-home-1')}` })
    expect(dr.resource.result).toHaveLength(2)
    expect(dr.resource.conclusion).toContain('132.5/82')
    expect(dr.resource.conclusionCode[0].coding[0].code).toBe('below-threshold')
    const mean = e.find((x) => x.resource.identifier[0].value.endsWith('/home-bp-mean'))!
    expect(mean.resource.component.map((c: any) => [c.code.coding[0].code, c.valueQuantity.value])).toEqual([['8480-6', 132.5], ['8462-4', 82]])
    expect(mean.resource.derivedFrom).toHaveLength(24)
    const readings = e.filter((x) => x.resource.identifier[0].system === 'urn:vitalmesh:reading')
    expect(readings).toHaveLength(24)
    expect(new Set(mean.resource.derivedFrom.map((r: any) => r.identifier.value))).toEqual(new Set(readings.map((r) => r.resource.identifier[0].value)))
    expect(mean.resource.derivedFrom[0]).toEqual({ type: 'Observation', identifier: { system: 'urn:vitalmesh:reading', value: `county-a/res-1/cuff-1/${readings[0]!.resource.identifier[0].value.split('/').at(-1)}` } })
    // provenance on every resource: protocol version and the device models with their validation status
    for (const x of e) {
      expect(x.resource.meta.tag.map((t: any) => t.system)).toContain('urn:vitalmesh:device-validation')
      if (x.resource.identifier[0].system === 'urn:vitalmesh:report') expect(x.resource.meta.tag).toContainEqual({ system: 'urn:vitalmesh:protocol', code: 'home-bp-7d@1.0.0', display: HOME_BP_7D.title.en })
    }
    expect(mean.resource.note.map((n: any) => n.text).join(' ')).toContain('smartwatch (cuffless, not used): 1 readings')
    // every BP panel holds SBP and DBP of the same reading(s)
    for (const x of e.filter((y) => y.resource.code.coding.some((c: any) => c.code === '85354-9'))) expect(x.resource.component).toHaveLength(2)
    expect(new Set(e.map((x) => x.fullUrl)).size).toBe(e.length)
    expect(e.every((x) => x.request.method === 'POST' && x.request.ifNoneExist)).toBe(true)
  })

  it('an amended report updates (PUT) every summary, and still only creates readings', () => {
    const e = all(reportBundles(homeReport(2, 140), { node: 'county-a', readings: true }))
    for (const x of e) {
      if (x.resource.identifier[0].system === 'urn:vitalmesh:reading') expect(x.request.method).toBe('POST')
      else { expect(x.request.method).toBe('PUT'); expect(x.resource.status).toBe('amended') }
    }
  })

  it('a 24-hour profile: day, night and 24 h panels; dip and surge derived from the day and night panels', () => {
    const bs = reportBundles(profileReport(), { node: 'county-a', readings: false })
    expect(bs).toHaveLength(1)
    const b = bs[0]!
    expect(fhirValidator()(b)).toBe(true)
    const e = entries(b)
    const by = (k: string) => e.find((x) => x.resource.identifier[0].value.endsWith(`/${k}`))!
    const day = by('abpm-day-mean'); const night = by('abpm-night-mean')
    expect(day.resource.component[0].valueQuantity.value).toBe(131)
    expect(night.resource.component[1].valueQuantity.value).toBe(66)
    expect(by('dip').resource.valueQuantity).toEqual({ value: 14.5, unit: '%', system: 'http://unitsofmeasure.org', code: '%' })
    expect(by('dip').resource.interpretation[0].coding[0].code).toBe('dipper')
    expect(by('dip').resource.derivedFrom).toEqual([{ reference: day.fullUrl }, { reference: night.fullUrl }])
    expect(by('abpm-24h-mean').resource.derivedFrom).toEqual([{ reference: day.fullUrl }, { reference: night.fullUrl }])
    expect(by('morning-surge').resource.valueQuantity.value).toBe(19)
    expect(e.filter((x) => x.resource.identifier[0].system === 'urn:vitalmesh:reading')).toHaveLength(0)
    const dr = e.at(-1)!.resource
    expect(dr.resourceType).toBe('DiagnosticReport')
    expect(dr.result).toHaveLength(5)
    expect(dr.conclusionCode.map((c: any) => c.coding[0].code)).toEqual(['hypertension', 'hypertension', 'hypertension', 'dipper'])
  })
})

describe('a real FHIR server (Medplum fhir-router, in memory) accepts what vitalmesh sends', () => {
  let fhir: MedplumServer
  beforeAll(async () => {
    fhir = await medplumServer()
    await fhir.repo.createResource({ resourceType: 'Patient', identifier: [{ system: RESIDENT_SYSTEM, value: 'res-1' }] })
  })
  afterAll(async () => { await fhir?.stop() })
  const post1 = async (b: unknown) => {
    const res = await fetch(fhir.url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(b) })
    return { status: res.status, body: await res.json() as any }
  }
  /** every Bundle of a report, in order; the answers merged */
  const post = async (bs: unknown[]) => {
    const out = { status: 200, body: { entry: [] as any[] } }
    for (const b of bs) {
      const r = await post1(b)
      if (r.status !== 200) return r
      out.body.entry.push(...r.body.entry)
    }
    return out
  }
  const counts = async () => ({ reports: (await fhir.search('DiagnosticReport')).length, observations: (await fhir.search('Observation')).length })

  it('accepts each Bundle, a re-send creates nothing, an amended report updates the same resources', async () => {
    const first = await post(reportBundles(homeReport(1, 132), { node: 'county-a', readings: true }))
    expect(first.status, JSON.stringify(first.body).slice(0, 2000)).toBe(200)
    expect(first.body.entry.every((x: any) => x.response.status.startsWith('201'))).toBe(true)
    expect(await counts()).toEqual({ reports: 1, observations: 26 })
    const [dr] = await fhir.search<any>('DiagnosticReport', { identifier: 'urn:vitalmesh:report|county-a/res-1/report/run-home-1' })
    // fhir-router keeps a conditional reference as sent (the Medplum server resolves it); the identifier is what matches
    expect(dr.subject).toEqual({ reference: `Patient?identifier=${RESIDENT_SYSTEM}|res-1`, identifier: { system: RESIDENT_SYSTEM, value: 'res-1' } })
    expect(dr.result.every((r: any) => /^Observation\/[0-9a-f-]+$/.test(r.reference))).toBe(true)
    const [mean] = await fhir.search<any>('Observation', { identifier: 'urn:vitalmesh:report|county-a/res-1/report/run-home-1/home-bp-mean' })
    // what the mean was derived from: reading Observations the server holds, found by identifier
    for (const ref of [mean.derivedFrom[0], mean.derivedFrom.at(-1)]) expect(await fhir.search('Observation', { identifier: `${ref.identifier.system}|${ref.identifier.value}` })).toHaveLength(1)

    const again = await post(reportBundles(homeReport(1, 132), { node: 'county-a', readings: true }))
    expect(again.status).toBe(200)
    expect(again.body.entry.every((x: any) => x.response.status.startsWith('200'))).toBe(true)
    expect(await counts()).toEqual({ reports: 1, observations: 26 })
    expect(await fhir.history('DiagnosticReport', dr.id)).toHaveLength(1)

    const amended = await post(reportBundles(homeReport(2, 140), { node: 'county-a', readings: true }))
    expect(amended.status, JSON.stringify(amended.body).slice(0, 2000)).toBe(200)
    const [dr2] = await fhir.search<any>('DiagnosticReport', { identifier: 'urn:vitalmesh:report|county-a/res-1/report/run-home-1' })
    expect(dr2.id).toBe(dr.id)
    expect(dr2.status).toBe('amended')
    expect(dr2.conclusionCode[0].coding[0].code).toBe('hypertension')
    expect(await fhir.history('DiagnosticReport', dr.id)).toHaveLength(2)
    const [mean2] = await fhir.search<any>('Observation', { identifier: 'urn:vitalmesh:report|county-a/res-1/report/run-home-1/home-bp-mean' })
    expect(mean2.id).toBe(mean.id)
    expect(mean2.component[0].valueQuantity.value).toBe(140.5)
    // a reading is identified by its device and time: the amendment re-created none
    expect(await counts()).toEqual({ reports: 1, observations: 26 })
  })

  it('accepts a 24-hour profile, and refuses a Bundle that breaks the vital-signs profile', async () => {
    // without the readings: the in-memory repository searches linearly, each conditional create costs more as it fills
    const ok = await post(reportBundles(profileReport(), { node: 'county-a', readings: false }))
    expect(ok.status, JSON.stringify(ok.body).slice(0, 2000)).toBe(200)
    const b = reportBundles(profileReport(), { node: 'county-b', readings: false })[0] as any
    const panel = b.entry.find((x: any) => x.resource.code.coding[0].code === '85354-9')
    delete panel.resource.effectivePeriod
    const bad = await post1(b)
    expect(bad.status).toBe(400)
    expect(fhir.rejected).toHaveLength(1)
  })
})

describe('amendments', () => {
  it('send only the readings the amended version did not have', () => {
    const v1 = homeReport(1, 132)
    const v2 = { ...homeReport(2, 132), previous: v1.result }
    const { averaged } = v2.result as { averaged: { ts: number }[] }
    averaged.push({ ...averaged[0]!, ts: averaged[0]!.ts + 30_000 } as never)
    const bs = reportBundles(v2, { node: 'county-a', readings: true })
    expect(bs.map((b) => (b.entry as unknown[]).length)).toEqual([1, 3])
  })
})
