import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'
import { waitFor } from '../../test/helpers/proc.ts'

/**
 * The validated-device register over HTTP: operators register models with their validation
 * status, the fleet listing shows it per device and per model, bad input is refused with
 * stable codes, and clinical reports count a model's BP readings by what the register says.
 */
describe('validated-device register', () => {
  let t: TestApp
  let operator: string
  let base: string
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    operator = t.app.demo!.apiKeys.operator
  })
  afterAll(async () => { await t?.stop() })

  const call = async (method: string, path: string, key: string, body?: unknown) => {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
    return { status: res.status, body: await res.json() as any }
  }
  const models = async () => (await call('GET', '/v1/device-models', operator)).body as { models: any[], unregistered: any[] }

  it('registers a validated cuff with its protocol, changes an entry, and keeps both in the audit trail', async () => {
    const put = await call('PUT', '/v1/device-models/omron-hem-7361t', operator, { status: 'validated', protocol: 'AAMI/ESH/ISO 81060-2:2018', source: 'STRIDE BP listing, checked 2026-01-10' })
    expect(put.status).toBe(201)
    expect(put.body).toMatchObject({ model: 'omron-hem-7361t', status: 'validated', protocol: 'AAMI/ESH/ISO 81060-2:2018', origin: 'register' })
    expect((await call('GET', '/v1/device-models/omron-hem-7361t', operator)).body.status).toBe('validated')
    // a model name in Chinese, a cuffless watch with a validation of its own kind (recorded, never admitting its readings)
    expect((await call('PUT', `/v1/device-models/${encodeURIComponent('华为 Watch D2')}`, operator, { status: 'cuffless', protocol: 'ISO 81060-3:2022', source: 'vendor' })).status).toBe(201)
    const again = await call('PUT', '/v1/device-models/omron-hem-7361t', operator, { status: 'unvalidated', source: 'withdrawn from the listing' })
    expect([again.status, again.body.status, again.body.protocol]).toEqual([200, 'unvalidated', null])
    expect(t.app.audit.list(0, 100_000).filter((e) => e.subject === 'omron-hem-7361t').map((e) => e.action)).toEqual(['device-model.registered', 'device-model.changed'])
    const list = await models()
    expect(list.models.map((m) => [m.model, m.status, m.origin])).toEqual(expect.arrayContaining([['omron-hem-7361t', 'unvalidated', 'register'], ['华为 Watch D2', 'cuffless', 'register'], ['demo-cuff', 'validated', 'built-in']]))
  })

  it('refuses bad entries with VM_BAD_REQUEST and names what is wrong; an unknown model is VM_NOT_FOUND', async () => {
    const bad: [unknown, RegExp][] = [
      [{ status: 'validated', source: 'x' }, /protocol: a validated cuff names the validation protocol/],
      [{ status: 'unvalidated', protocol: 'ESH-IP 2010', source: 'x' }, /protocol: an unvalidated model passed no protocol/],
      [{ status: 'probably', source: 'x' }, /status/],
      [{ status: 'cuffless' }, /source/],
      [{ status: 'cuffless', source: 'x', colour: 'red' }, /colour|unrecognized/i],
      [undefined, /body/],
    ]
    for (const [body, message] of bad) {
      const r = await call('PUT', '/v1/device-models/some-cuff', operator, body)
      expect([JSON.stringify(body), r.status, r.body.code]).toEqual([JSON.stringify(body), 400, 'VM_BAD_REQUEST'])
      expect(r.body.message).toMatch(message)
    }
    const name = await call('PUT', `/v1/device-models/${encodeURIComponent('<script>')}`, operator, { status: 'cuffless', source: 'x' })
    expect([name.status, name.body.code, name.body.message]).toEqual([400, 'VM_BAD_REQUEST', expect.stringMatching(/^path: model name|model/)])
    expect((await models()).models.map((m) => m.model)).not.toContain('some-cuff')
    const missing = await call('GET', '/v1/device-models/no-such-cuff', operator)
    expect([missing.status, missing.body.code]).toEqual([404, 'VM_NOT_FOUND'])
    const resident = await call('PUT', '/v1/device-models/some-cuff', t.app.demo!.apiKeys.resident, { status: 'validated', protocol: 'x', source: 'x' })
    expect([resident.status, resident.body.code]).toEqual([403, 'VM_FORBIDDEN'])
  })

  it('the fleet listing shows each device\'s model validation; models nobody registered are listed as unknown with their devices', async () => {
    const dev = await call('POST', '/v1/devices', operator, { id: 'cuff-clinic-1', residentId: 'demo-resident', model: 'clinic-cuff-1' })
    expect(dev.status).toBe(201)
    expect(dev.body.device.modelValidation).toEqual({ status: 'unknown', protocol: null })
    const before = await models()
    expect(before.unregistered).toEqual(expect.arrayContaining([{ model: 'clinic-cuff-1', status: 'unknown', devices: 1, residents: 1 }]))
    expect(before.models.find((m) => m.model === 'demo-watch')).toMatchObject({ status: 'cuffless', devices: 99 })
    const byModel = await call('GET', '/v1/devices?model=clinic-cuff-1', operator)
    expect(byModel.body.devices.map((d: any) => [d.id, d.modelValidation.status])).toEqual([['cuff-clinic-1', 'unknown']])
    expect((await call('PUT', '/v1/device-models/clinic-cuff-1', operator, { status: 'validated', protocol: 'ESH-IP 2010', source: 'validatebp.org' })).status).toBe(201)
    expect((await call('GET', '/v1/devices/cuff-clinic-1', operator)).body.modelValidation).toEqual({ status: 'validated', protocol: 'ESH-IP 2010' })
    const after = await models()
    expect(after.unregistered.map((m) => m.model)).not.toContain('clinic-cuff-1')
    expect(after.models.find((m) => m.model === 'clinic-cuff-1')).toMatchObject({ status: 'validated', devices: 1, residents: 1 })
  })

  it('a protocol started without a time zone takes the resident\'s own, else the region\'s', async () => {
    const resident = t.app.demo!.apiKeys.resident
    const regional = await call('POST', '/v1/residents/demo-resident/reports', resident, { protocol: 'abpm-24h', guideline: 'esh-2023' })
    expect([regional.status, regional.body.timeZone]).toEqual([201, 'Asia/Shanghai'])
    expect((await call('PUT', '/v1/residents/demo-resident/alert-preferences', resident, { timeZone: 'Europe/Berlin' })).status).toBe(200)
    const own = await call('POST', '/v1/residents/demo-resident/reports', resident, { protocol: 'abpm-24h', guideline: 'esh-2023' })
    expect([own.status, own.body.timeZone]).toEqual([201, 'Europe/Berlin'])
    for (const run of [regional, own]) expect((await call('DELETE', `/v1/residents/demo-resident/reports/${run.body.id}`, resident)).status).toBe(200)
    expect((await call('PUT', '/v1/residents/demo-resident/alert-preferences', resident, { timeZone: null })).status).toBe(200)
  })

  it('a protocol report counts a model\'s BP readings by the register: unknown, then validated, then cuffless', async () => {
    const dev = await call('POST', '/v1/devices', operator, { id: 'cuff-shop-1', residentId: 'demo-resident', model: 'shop-cuff' })
    expect(dev.status).toBe(201)
    const secret = dev.body.secret as string
    // the resident starts a home-BP week
    const run = await call('POST', '/v1/residents/demo-resident/reports', t.app.demo!.apiKeys.resident, { protocol: 'home-bp-7d', timeZone: 'Asia/Shanghai', guideline: 'esh-2023' })
    expect(run.status).toBe(201)
    const c = await connect(t.mqttPort, 'cuff-shop-1', secret)
    await c.publishAsync('vitals/cuff-shop-1', reading(1, { sys: 150, dia: 95, hr: 70 }), { qos: 1 })
    await c.publishAsync('vitals/cuff-shop-1', reading(2, { sys: 152, dia: 96, hr: 71 }), { qos: 1 })
    await c.endAsync()
    const excluded = async () => (await call('GET', `/v1/residents/demo-resident/reports/${run.body.id}`, operator)).body.result.counts.excluded as Record<string, number>
    await waitFor('the readings in the run', async () => (await excluded()).unknown === 2)
    expect((await call('PUT', '/v1/device-models/shop-cuff', operator, { status: 'validated', protocol: 'AAMI/ESH/ISO 81060-2:2018', source: 'STRIDE BP' })).status).toBe(201)
    expect(await excluded()).toMatchObject({ unknown: 0, unvalidated: 0, cuffless: 0 })
    expect((await call('PUT', '/v1/device-models/shop-cuff', operator, { status: 'cuffless', source: 'it is a wrist optical sensor after all' })).status).toBe(200)
    expect(await excluded()).toMatchObject({ unknown: 0, cuffless: 2 })
  })
})
