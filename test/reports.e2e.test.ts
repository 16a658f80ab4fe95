import { afterAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../core/index.ts'
import { RESIDENT_SYSTEM } from '../forwarder/index.ts'
import { localMinuteOfDay, localDate, addDays, zonedTime } from '../reports/index.ts'
import { prng } from '../firmware-sim/model.ts'
import { homeBpWeek } from '../firmware-sim/home-bp.ts'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { medplumServer, type MedplumServer } from './helpers/medplum.ts'
import { connect } from './helpers/mqtt.ts'
import { waitFor } from './helpers/proc.ts'

const TZ = 'Asia/Shanghai'

async function api (port: number, method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined })
  return { status: res.status, body: await res.json() as any }
}

/**
 * The whole way: a hospital starts a 24-hour profile through the API, the resident's cuff
 * publishes over MQTT, the spool feeds the run, the run finishes on the (manual) clock and
 * the report reaches a real FHIR server (Medplum) through the outbox; a late reading amends it.
 */
describe('clinical reports end to end', () => {
  let t: TestApp | undefined
  let fhir: MedplumServer | undefined
  afterAll(async () => { await t?.stop(); await fhir?.stop() })

  it('a 24-hour profile started by the hospital arrives as a DiagnosticReport, and is amended by a late reading', async () => {
    fhir = await medplumServer()
    await fhir.repo.createResource({ resourceType: 'Patient', identifier: [{ system: RESIDENT_SYSTEM, value: 'demo-resident' }] })
    // local 10:00 three days ago: readings are in the past for the wall clock, the app's clock walks with them
    const day = 86400_000
    const start = Math.floor((Date.now() - 3 * day) / day) * day + 2 * 3600_000
    const clock = new ManualClock(start)
    // summaries go to the same FHIR server: daily windows, and Bundles within Medplum's limit of 8 conditional entries
    t = await startTestApp({ 'forwarder.windows': '1d', 'forwarder.tickMs': 100, 'outbox.pollMs': 50, 'outbox.maxBackoffMs': 300, 'forwarder.fhirMaxEntries': 8 }, clock)
    const reg = t.app.registry
    const ops = t.app.demo!.apiKeys.operator
    expect((await api(t.httpPort, 'POST', '/v1/hospitals', ops, { id: 'h1', name: 'County Hospital', fhirUrl: fhir.url })).status).toBe(201)
    reg.updateResident('demo-resident', { hospitalId: 'h1' })
    const hospital = reg.addApiKey('hospital', 'h1')
    const other = reg.addApiKey('hospital', 'h2')

    expect((await api(t.httpPort, 'POST', '/v1/residents/demo-resident/reports', other, { protocol: 'abpm-24h', timeZone: TZ, guideline: 'esh-2023' })).status).toBe(403)
    expect((await api(t.httpPort, 'POST', '/v1/residents/demo-resident/reports', hospital, { protocol: 'abpm-24h', timeZone: 'Moon/Base', guideline: 'esh-2023' })).body.message).toMatch(/IANA/)
    const started = await api(t.httpPort, 'POST', '/v1/residents/demo-resident/reports', hospital, { protocol: 'abpm-24h', timeZone: TZ, guideline: 'esh-2023' })
    expect(started.status).toBe(201)
    const runId = started.body.id as string

    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const late: { seq: number, ts: number }[] = []
    for (let batch = 0; batch < 4; batch++) {
      const readings = []
      for (let k = batch * 12; k < batch * 12 + 12; k++) {
        const ts = start + k * 30 * 60_000
        const m = localMinuteOfDay(ts, TZ)
        const asleep = m >= 23 * 60 || m < 7 * 60
        const r = { seq: k + 1, ts, sys: asleep ? 112 : 132, dia: asleep ? 68 : 82, hr: 64, activity: asleep ? 'sleep' : 'rest' }
        if (k === 20) { late.push(r); continue } // this one the cuff sends only after the report
        readings.push(r)
      }
      clock.set(readings.at(-1)!.ts + 60_000)
      await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, readings }), { qos: 1 })
    }
    const running = await api(t.httpPort, 'GET', `/v1/residents/demo-resident/reports/${runId}`, t.app.demo!.apiKeys.resident)
    expect(running.body).toMatchObject({ state: 'active', result: { outcome: { status: 'in-progress' } } })

    clock.set(start + 26 * 3600_000) // past the end and the grace period
    const dr = await waitFor('the DiagnosticReport at the hospital', async () => (await fhir!.search<any>('DiagnosticReport'))[0], 90_000)
    expect(dr.status).toBe('final')
    expect(dr.code.coding[0].code).toBe('abpm-24h-profile')
    expect(dr.conclusion).toContain('demo-cuff (validated)')
    const results = await Promise.all(dr.result.map((r: { reference: string }) => fhir!.repo.readReference(r)))
    const byCode = Object.fromEntries(results.map((o: any) => [o.code.coding.at(-1).code, o]))
    expect(byCode['abpm-night-mean'].component.map((x: any) => x.valueQuantity.value)).toEqual([112, 68])
    expect(byCode['abpm-day-mean'].component.map((x: any) => x.valueQuantity.value)).toEqual([132, 82])
    expect(byCode['sbp-nocturnal-dip'].valueQuantity.value).toBe(15.2)

    const listed = await api(t.httpPort, 'GET', '/v1/residents/demo-resident/reports', t.app.demo!.apiKeys.resident)
    expect(listed.body.reports.map((r: any) => [r.id, r.state, r.version])).toEqual([[runId, 'finished', 1]])
    expect((await api(t.httpPort, 'GET', '/v1/residents/demo-resident/reports', other)).status).toBe(403)

    // the late reading: a daytime one, so the day mean (and the dip) change; the report is amended in place
    clock.advance(60_000)
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, readings: late.map((r) => ({ ...r, sys: 162 })) }), { qos: 1 })
    const amended = await waitFor('the amended report', async () => (await fhir!.search<any>('DiagnosticReport')).find((x) => x.status === 'amended'), 90_000)
    expect(amended.id).toBe(dr.id)
    expect(await fhir.search('DiagnosticReport')).toHaveLength(1)
    expect((await fhir.history('DiagnosticReport', dr.id)).length).toBe(2)
    expect((await api(t.httpPort, 'GET', `/v1/residents/demo-resident/reports/${runId}`, hospital)).body.version).toBe(2)
    expect(fhir.rejected.map((r) => r.outcome.issue?.[0]?.details?.text)).toEqual([])
    await c.endAsync()
  })
})

describe('a simulated resident through a home-BP week', () => {
  let t: TestApp | undefined
  let fhir: MedplumServer | undefined
  afterAll(async () => { await t?.stop(); await fhir?.stop() })

  it('the resident starts the protocol; cuff and smartwatch publish; the hospital gets the report with the watch readings left out', async () => {
    fhir = await medplumServer()
    await fhir.repo.createResource({ resourceType: 'Patient', identifier: [{ system: RESIDENT_SYSTEM, value: 'demo-resident' }] })
    const first = addDays(localDate(Date.now(), TZ), -9)
    const start = zonedTime(first, 5 * 60, TZ)
    const clock = new ManualClock(start)
    // 30-day windows: at most one closes during the test, so the hospital's server sees little but the report
    t = await startTestApp({ 'forwarder.windows': '30d', 'forwarder.tickMs': 100, 'outbox.pollMs': 50, 'outbox.maxBackoffMs': 300, 'forwarder.fhirMaxEntries': 8 }, clock)
    const reg = t.app.registry
    reg.addHospital({ id: 'h1', name: 'County Hospital', fhirUrl: fhir.url })
    reg.updateResident('demo-resident', { hospitalId: 'h1' })
    const watchSecret = await reg.addDevice({ id: 'demo-resident-watch', residentId: 'demo-resident', model: 'demo-watch' })
    const resident = t.app.demo!.apiKeys.resident
    const started = await api(t.httpPort, 'POST', '/v1/residents/demo-resident/reports', resident, { protocol: 'home-bp-7d', timeZone: TZ, guideline: 'china-2018' })
    expect(started.status).toBe(201)

    const rand = prng(11)
    const dates = Array.from({ length: 7 }, (_, i) => addDays(first, i))
    const week = homeBpWeek({ restHr: 72, restSys: 146, restDia: 91, scenario: 'hypertensive' }, { timeZone: TZ, dates, morning: 7 * 60, evening: 20 * 60, perSitting: 2, missRate: 0.1, watchRate: 0.2 }, rand, (d, m) => zonedTime(d, m, TZ))
    const cuff = await connect(t.mqttPort, t.app.demo!.device.deviceId, t.app.demo!.device.secret)
    const watch = await connect(t.mqttPort, 'demo-resident-watch', watchSecret)
    let seq = 0
    for (const date of dates) {
      const today = week.filter((r) => localDate(r.ts, TZ) === date)
      if (!today.length) continue
      clock.set(today.at(-1)!.ts + 60_000)
      for (const [client, id, kind] of [[cuff, t.app.demo!.device.deviceId, 'cuff'], [watch, 'demo-resident-watch', 'watch']] as const) {
        const readings = today.filter((r) => r.device === kind).map((r) => ({ seq: ++seq, ts: r.ts, sys: r.sys, dia: r.dia, hr: r.hr, activity: 'rest' }))
        if (readings.length) await client.publishAsync(`vitals/${id}`, JSON.stringify({ v: 1, readings }), { qos: 1 })
      }
    }
    clock.set(zonedTime(addDays(first, 7), 0, TZ) + 2 * 3600_000)
    const dr = await waitFor('the home-BP DiagnosticReport', async () => (await fhir!.search<any>('DiagnosticReport'))[0], 90_000)
    const run = (await api(t.httpPort, 'GET', `/v1/residents/demo-resident/reports/${started.body.id}`, resident)).body
    expect(run.state).toBe('finished')
    expect(run.result.outcome).toMatchObject({ status: 'complete', classification: 'hypertension' })
    expect(run.result.counts.excluded.cuffless).toBe(week.filter((r) => r.device === 'watch').length)
    expect(dr.code.coding[0].code).toBe('home-bp-protocol')
    expect(dr.conclusionCode[0].coding[0].code).toBe('hypertension')
    expect(dr.conclusion).toMatch(/demo-watch \(cuffless, not used\)/)
    const readings = (await fhir.search<any>('Observation')).filter((o) => o.identifier[0].system === 'urn:vitalmesh:reading')
    expect(readings).toHaveLength(run.result.counts.averaged)
    expect(readings.every((o) => o.device.display.startsWith('demo-cuff (validated cuff)'))).toBe(true)
    expect(fhir.rejected).toEqual([])
    await cuff.endAsync(); await watch.endAsync()
  })
})
