import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'

describe('HTTP API', () => {
  let t: TestApp
  let base: string
  const t0 = Date.now() - 60_000
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    for (let i = 1; i <= 3; i++) await c.publishAsync(`vitals/${d.deviceId}`, reading(i, { ts: t0 + i * 1000 }), { qos: 1 })
    await c.endAsync()
    await t.app.drain.idle()
  })
  afterAll(async () => { await t?.stop() })

  const get = async (path: string, key?: string) => {
    const res = await fetch(base + path, { headers: key ? { authorization: `Bearer ${key}` } : {} })
    return { status: res.status, body: await res.json() as any }
  }

  it('answers health and readiness', async () => {
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'ok' } })
    expect(await get('/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } })
  })

  it('serves a resident\'s readings to the resident and to operators', async () => {
    const { apiKeys } = t.app.demo!
    const own = await get('/v1/residents/demo-resident/readings', apiKeys.resident)
    expect(own.status).toBe(200)
    expect(own.body.readings.map((r: { seq: number }) => r.seq)).toEqual([1, 2, 3])
    const op = await get('/v1/residents/demo-resident/readings?limit=2', apiKeys.operator)
    expect(op.body.count).toBe(2)
    const window = await get(`/v1/residents/demo-resident/readings?from=0&to=${t0 + 1500}`, apiKeys.operator)
    expect(window.body.readings.map((r: { seq: number }) => r.seq)).toEqual([1])
  })

  it('downsamples a long range into windows, and registers residents for operators', async () => {
    const { apiKeys } = t.app.demo!
    const day = await get(`/v1/residents/demo-resident/readings?from=${t0 - 86400_000}&to=${t0 + 86400_000}&maxPoints=100`, apiKeys.resident)
    expect(day.body).toMatchObject({ downsampled: true, windowMs: 29 * 60_000, count: 1 })
    expect(day.body.windows[0]).toMatchObject({ count: 3, hrMean: 72 })
    const res = await fetch(base + '/v1/residents', { method: 'POST', headers: { authorization: `Bearer ${apiKeys.operator}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'res-new-1', region: 'county-a', birthYear: 1950 }) })
    const body = await res.json() as { id: string, mqttPassword: string }
    expect(res.status).toBe(201)
    expect(body.mqttPassword).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(t.app.registry.resident('res-new-1')).toMatchObject({ region: 'county-a', birthYear: 1950 })
    expect(await t.app.registry.authenticate('res-new-1', body.mqttPassword)).toMatchObject({ kind: 'resident' })
  })

  it('refuses callers without a key, with another resident\'s key, or with bad parameters', async () => {
    const { apiKeys } = t.app.demo!
    expect(await get('/v1/residents/demo-resident/readings')).toMatchObject({ status: 401, body: { code: 'VM_UNAUTHORIZED' } })
    expect(await get('/v1/residents/demo-resident/readings', 'vm_000000000000_' + 'x'.repeat(32))).toMatchObject({ status: 401 })
    const other = await get('/v1/residents/demo-res-001/readings', apiKeys.resident)
    expect(other).toMatchObject({ status: 403, body: { code: 'VM_FORBIDDEN' } })
    expect(other.body.readings).toBeUndefined()
    // the route's schema (validatorCompiler in api/zod.ts): exactly {code, message}, the message naming the field
    const bad = await get('/v1/residents/demo-resident/readings?from=abc&limit=0', apiKeys.resident)
    expect([bad.status, Object.keys(bad.body).sort(), bad.body.code]).toEqual([400, ['code', 'message'], 'VM_BAD_REQUEST'])
    expect(bad.body.message).toMatch(/^from: .*; limit: /)
    expect((await get('/v1/residents/bad%20id/readings', apiKeys.operator)).body).toMatchObject({ code: 'VM_BAD_REQUEST', message: expect.stringMatching(/^id: ids are/) })
    expect(await get('/v1/residents/nobody/readings', apiKeys.operator)).toMatchObject({ status: 404, body: { code: 'VM_NOT_FOUND' } })
    expect(await get('/nope')).toMatchObject({ status: 404, body: { code: 'VM_NOT_FOUND' } })
  })
})
