import { afterAll, describe, expect, it } from 'vitest'
import type { Flag, Observation } from '@medplum/fhirtypes'
import { ALERT_SYSTEM, READING_SYSTEM, RESIDENT_SYSTEM, SUMMARY_SYSTEM, measurementEntries, transactionBundle, type MeasuredReading } from '../forwarder/index.ts'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { medplumServer, type MedplumServer } from './helpers/medplum.ts'
import { connect } from './helpers/mqtt.ts'
import { waitFor } from './helpers/proc.ts'
import type { DemoDevice } from '../registry/index.ts'

const WINDOW_MS = 2000

async function api (port: number, method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined })
  return { status: res.status, body: await res.json() as any }
}

const code = (o: Observation): string | undefined => o.code.coding?.[0]?.code
const idOf = (r: { identifier?: { system?: string, value?: string }[] }): string => r.identifier?.[0]?.value ?? ''

/**
 * Three hospitals, each with a real FHIR server (Medplum), each with its own feeds: the
 * default (reports, alerts), measurements only, summaries only.
 */
describe('hospital feeds, chosen per hospital', () => {
  let t: TestApp | undefined
  const fhir: Record<string, MedplumServer> = {}
  afterAll(async () => { await t?.stop(); for (const s of Object.values(fhir)) await s.stop() })

  it('default feeds get no summary but a Flag per critical alert; measurements get one Observation per reading (a re-send creates nothing); summaries split the BP statistics and are accepted', async () => {
    t = await startTestApp({
      // the node's default of 100 entries per Bundle: each hospital says what its (Medplum) server takes
      'forwarder.windows': '2s', 'forwarder.latenessS': 1, 'forwarder.tickMs': 100,
      'outbox.pollMs': 50, 'outbox.maxBackoffMs': 300, 'alerting.tickMs': 100, 'alerting.escalateAfterS': 1,
    })
    const ops = t.app.demo!.apiKeys.operator
    const [dA, dB, dC] = t.app.demo!.fleet.slice(60, 63) as [DemoDevice, DemoDevice, DemoDevice]
    const setup: [string, DemoDevice, string[] | undefined][] = [['hA', dA, undefined], ['hB', dB, ['measurements']], ['hC', dC, ['summaries']]]
    for (const [h, d, feeds] of setup) {
      const s = fhir[h] = await medplumServer()
      await s.repo.createResource({ resourceType: 'Patient', identifier: [{ system: RESIDENT_SYSTEM, value: d.residentId }] })
      // Medplum refuses a transaction with conditional entries beyond 8: hA and hB say so at registration, hC below
      const res = await api(t.httpPort, 'POST', '/v1/hospitals', ops, { id: h, name: h, fhirUrl: s.url, ...(feeds ? { feeds } : {}), ...(h === 'hC' ? {} : { fhirMaxEntries: 8 }) })
      expect(res.status).toBe(201)
      expect(res.body.feeds).toEqual(feeds ?? ['reports', 'alerts']) // the default: a few resources per patient per day
      expect(res.body.fhirMaxEntries).toBe(h === 'hC' ? null : 8)
      expect((await api(t.httpPort, 'PATCH', `/v1/residents/${d.residentId}`, ops, { hospitalId: h })).status).toBe(200)
    }
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/hA', ops, { feeds: ['reports', 'bogus'] })).status).toBe(400)
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/nowhere', ops, { feeds: ['reports'] })).status).toBe(404)
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/hA', ops, { feeds: ['alerts', 'reports', 'alerts'] })).body).toEqual({ id: 'hA', name: 'hA', feeds: ['reports', 'alerts'], fhirMaxEntries: 8 })
    // the operator learns hC's server takes 8 (its refusals are in the outbox's dead letters otherwise) and says so
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/hC', ops, { fhirMaxEntries: 0 })).status).toBe(400)
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/hC', ops, {})).status).toBe(400)
    expect((await api(t.httpPort, 'PATCH', '/v1/hospitals/hC', ops, { fhirMaxEntries: 8 })).body).toEqual({ id: 'hC', name: 'hC', feeds: ['summaries'], fhirMaxEntries: 8 })

    const clients = await Promise.all([dA, dB, dC].map((d) => connect(t!.mqttPort, d.deviceId, d.secret)))
    const sent: MeasuredReading[] = []
    let lastTs = 0
    // six rounds 400 ms apart in reading time, ending now: they span several 2 s windows without the test waiting
    const base = Date.now() - 5 * 400
    for (let seq = 1; seq <= 6; seq++) {
      await Promise.all([dA, dB, dC].map((d, i) => {
        const ts = lastTs = base + (seq - 1) * 400
        // hA's patient: a hypertensive crisis (critical) in the first reading
        const r = { seq, ts, hr: 60 + seq + i, sys: d === dA && seq === 1 ? 200 : 118 + seq * 3, dia: d === dA && seq === 1 ? 125 : 70 + seq }
        if (d === dB) sent.push({ deviceId: d.deviceId, residentId: d.residentId, ...r })
        return clients[i]!.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, ...r }), { qos: 1 })
      }))
    }
    await Promise.all(clients.map((c) => c.endAsync()))
    const lastWindow = new Date(lastTs - (lastTs % WINDOW_MS)).toISOString()

    // summaries: the last window reached hC, and nothing is left to deliver
    await waitFor('hC to receive the last window', async () => (await fhir.hC!.search('Observation', { identifier: `${SUMMARY_SYSTEM}|local/${dC.residentId}/2s/${lastWindow}/hr/mean` })).length === 1 && t!.app.outbox.pending() === 0, 20_000)
    const summaries = await fhir.hC!.search<Observation>('Observation')
    expect(summaries.every((o) => o.identifier?.[0]?.system === SUMMARY_SYSTEM)).toBe(true)
    const split = summaries.filter((o) => ['8480-6', '8462-4'].includes(code(o)!))
    expect(split.length).toBeGreaterThanOrEqual(8) // min, max, p50, p95 of SBP and of DBP, per window
    for (const o of split) {
      expect(o.component).toBeUndefined()
      expect(o.valueQuantity).toMatchObject({ code: 'mm[Hg]' })
      expect(idOf(o)).toMatch(/\/(sys|dia)\/(min|max|p50|p95)$/)
    }
    const panels = summaries.filter((o) => code(o) === '85354-9')
    expect(panels.length).toBeGreaterThanOrEqual(1)
    expect(panels.every((o) => idOf(o).endsWith('/bp/mean') && o.component?.length === 2)).toBe(true)

    // measurements: one Observation per reading, with its Device; no summary
    await waitFor('hB to hold every reading', async () => (await fhir.hB!.search('Observation')).length >= sent.length, 10_000)
    const readings = await fhir.hB!.search<Observation>('Observation')
    expect(readings.map(idOf).sort()).toEqual(sent.map((r) => `${r.deviceId}/${r.seq}`).sort())
    expect(readings.every((o) => o.identifier?.[0]?.system === READING_SYSTEM && o.device?.reference?.startsWith('Device/') && o.effectiveDateTime)).toBe(true)
    const first = readings.find((o) => idOf(o) === `${dB.deviceId}/1`)!
    expect(first.component?.map((c) => c.code.coding?.[0]?.code)).toEqual(['8480-6', '8462-4', '8867-4'])
    expect((await fhir.hB!.search('Device')).length).toBe(1)
    // a re-send (the outbox delivers at least once) creates nothing new
    const again = await fetch(fhir.hB!.url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(transactionBundle(measurementEntries(sent.slice(0, 3)), 'resend', Date.now())) })
    expect(again.status).toBe(200)
    expect((await fhir.hB!.search('Observation')).length).toBe(sent.length)
    expect((await fhir.hB!.search('Device')).length).toBe(1)

    // the default feeds: no summary and no reading, but the critical alert as a Flag, escalated a second later
    await waitFor('hA to hold an escalated Flag', async () => (await fhir.hA!.search<Flag>('Flag')).some((f) => f.meta?.tag?.some((x) => x.code === 'escalated')), 10_000)
    const flags = await fhir.hA!.search<Flag>('Flag')
    expect(flags).toHaveLength(1)
    expect(flags[0]).toMatchObject({ status: 'active', identifier: [{ system: ALERT_SYSTEM }], category: [{ coding: [{ code: 'clinical' }] }] })
    expect(await fhir.hA!.search('Observation')).toEqual([])
    for (const s of Object.values(fhir)) expect(s.rejected.map((r) => r.outcome)).toEqual([])
  })
})
