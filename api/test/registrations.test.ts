import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'
import { waitFor } from '../../test/helpers/proc.ts'

/** Registrations and keys are all or nothing and name only what exists; reads of another person's data are audited. */
describe('registrations, key scopes and audited reads', () => {
  let t: TestApp
  let base: string
  let operator: string
  const R = 'demo-resident'
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    operator = t.app.demo!.apiKeys.operator
    t.app.registry.addHospital({ id: 'h1', name: 'H1' })
    t.app.registry.updateResident(R, { hospitalId: 'h1' })
  })
  afterAll(async () => { await t?.stop() })

  const call = async (method: string, path: string, key: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  const audited = (subject: string) => t.app.audit.list(0, 100_000).filter((e) => e.subject === subject)

  it('registers no resident when its hospital is unknown, and the id stays free', async () => {
    const r = await call('POST', '/v1/residents', operator, { id: 'res-orphan', hospitalId: 'no-such-hospital' })
    expect([r.status, r.body.code]).toEqual([404, 'VM_NOT_FOUND'])
    expect(t.app.registry.resident('res-orphan')).toBeUndefined()
    expect(audited('res-orphan')).toEqual([])
    const ok = await call('POST', '/v1/residents', operator, { id: 'res-orphan', hospitalId: 'h1', birthYear: 1950 })
    expect(ok.status).toBe(201)
    expect(t.app.registry.resident('res-orphan')).toMatchObject({ hospitalId: 'h1', birthYear: 1950 })
    expect(audited('res-orphan').map((e) => e.action)).toEqual(['resident.registered'])
  })

  it('registers no device of an unknown resident', async () => {
    const r = await call('POST', '/v1/devices', operator, { id: 'dev-orphan', residentId: 'no-such-resident' })
    expect([r.status, r.body.code]).toEqual([404, 'VM_NOT_FOUND'])
    expect(t.app.registry.device('dev-orphan')).toBeUndefined()
    expect(audited('dev-orphan')).toEqual([])
  })

  it('creates no API key whose scope names nothing registered', async () => {
    for (const [role, scope] of [['resident', 'nobody'], ['hospital', 'no-hospital'], ['research', 'no-institution']] as const) {
      const r = await call('POST', '/v1/api-keys', operator, { role, scope })
      expect([role, r.status, r.body.code]).toEqual([role, 404, 'VM_NOT_FOUND'])
    }
    for (const body of [{ role: 'operator', scope: R }, { role: 'hospital', scope: null }, { role: 'region', scope: 'bad/region' }]) {
      const r = await call('POST', '/v1/api-keys', operator, body)
      expect([JSON.stringify(body), r.status, r.body.code]).toEqual([JSON.stringify(body), 400, 'VM_BAD_REQUEST'])
    }
    expect(t.app.audit.list(0, 100_000).filter((e) => e.action === 'api-key.created')).toEqual([])
    const ok = await call('POST', '/v1/api-keys', operator, { role: 'hospital', scope: 'h1' })
    expect(ok.status).toBe(201)
  })

  it('refuses rule sets from a research key of no registered institution', async () => {
    const key = t.app.registry.addApiKey('research', 'inst-unregistered')
    const r = await call('POST', '/v1/rulesets', key, { id: 'x', version: '1.0.0' })
    expect([r.status, r.body.code]).toEqual([403, 'VM_FORBIDDEN'])
  })

  it('audits a hospital reading a patient\'s alerts, an alert\'s history, the profile and overrides, but not the resident reading its own', async () => {
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    await c.publishAsync(`vitals/${d.deviceId}`, reading(1, { sys: 200, dia: 125 }), { qos: 1 })
    await c.endAsync()
    const alert = (await waitFor('an alert', () => t.app.alerts.forResident(R)[0]))!
    const hospital = t.app.registry.addApiKey('hospital', 'h1')
    const hospitalId = hospital.split('_')[1]!
    for (const path of [`/v1/residents/${R}/alerts`, `/v1/alerts/${alert.id}/history`, `/v1/residents/${R}`, `/v1/residents/${R}/overrides`]) {
      expect((await call('GET', path, hospital)).status, path).toBe(200)
    }
    const mine = audited(R).filter((e) => e.actor === `hospital:h1:${hospitalId}`).map((e) => e.action)
    expect(mine).toEqual(['pull.alerts', 'pull.alert-history', 'pull.profile', 'pull.overrides'])
    const before = audited(R).length
    const resident = t.app.demo!.apiKeys.resident
    for (const path of [`/v1/residents/${R}/alerts`, `/v1/alerts/${alert.id}/history`, `/v1/residents/${R}`]) expect((await call('GET', path, resident)).status, path).toBe(200)
    expect(audited(R).length).toBe(before)
  })
})
