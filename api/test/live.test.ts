import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { openLive } from '../../test/helpers/live.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'
import { LiveClose } from '../live.ts'

/** The live stream follows the registry: revoked keys and lost scope end what a socket receives. */
describe('live stream and the registry', () => {
  let t: TestApp
  let base: string
  let operator: string
  const R = 'demo-resident'
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    operator = t.app.demo!.apiKeys.operator
    t.app.registry.addHospital({ id: 'h1', name: 'H1' })
    t.app.registry.addHospital({ id: 'h2', name: 'H2' })
    t.app.registry.updateResident(R, { hospitalId: 'h1' })
  })
  afterAll(async () => { await t?.stop() })

  const api = (method: string, path: string, key: string, body?: unknown) => fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined })
  let seq = 1000
  const publish = async (): Promise<number> => {
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const s = seq++
    await c.publishAsync(`vitals/${d.deviceId}`, reading(s), { qos: 1 })
    await c.endAsync()
    return s
  }

  it('closes the sockets of a revoked key within 1 s (4403), while HTTP answers 401', async () => {
    const key = t.app.registry.addApiKey('hospital', 'h1')
    const c = await openLive(t.httpPort, key)
    c.send(JSON.stringify({ type: 'watch', residentId: R }))
    await c.next((m) => m.type === 'watching')
    const at = Date.now()
    expect((await api('DELETE', `/v1/api-keys/${key.split('_')[1]}`, operator)).status).toBe(200)
    expect(await c.closedWithin(1000)).toBe(LiveClose.revoked)
    expect(Date.now() - at).toBeLessThan(1000)
    expect(c.messages.some((m) => m.type === 'error' && m.code === 'VM_UNAUTHORIZED')).toBe(true)
    expect((await api('GET', '/v1/whoami', key)).status).toBe(401)
  })

  it('closes the socket when the key is revoked through another connection to the database (the CLI)', async () => {
    const key = t.app.registry.addApiKey('operator', null)
    const c = await openLive(t.httpPort, key)
    const other = new Database(join(t.dataDir, 'vitalmesh.db'))
    try {
      const at = Date.now()
      other.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(Date.now(), key.split('_')[1])
      expect(await c.closedWithin(1000)).toBe(LiveClose.revoked)
      expect(Date.now() - at).toBeLessThan(1000)
    } finally { other.close() }
  })

  it('stops streaming a resident to the hospital it moved away from, and audits the watches', async () => {
    const h1 = await openLive(t.httpPort, t.app.registry.addApiKey('hospital', 'h1'))
    const control = await openLive(t.httpPort, operator)
    for (const c of [h1, control]) {
      c.send(JSON.stringify({ type: 'watch', residentId: R }))
      await c.next((m) => m.type === 'watching')
    }
    // before: both receive the reading
    const s1 = await publish()
    for (const c of [h1, control]) await c.next((m) => m.type === 'readings' && (m.readings as { seq: number }[]).some((r) => r.seq === s1))

    expect((await api('PATCH', `/v1/residents/${R}`, operator, { hospitalId: 'h2' })).status).toBe(200)
    expect(await h1.next((m) => m.type === 'unwatched')).toMatchObject({ residentId: R, code: 'VM_FORBIDDEN' })
    const s2 = await publish()
    // the positive control: the operator's socket got the reading, so h1 would have had it by now
    await control.next((m) => m.type === 'readings' && (m.readings as { seq: number }[]).some((r) => r.seq === s2))
    const mark = control.messages.length
    const s3 = await publish()
    await control.next((m) => m.type === 'readings' && (m.readings as { seq: number }[]).some((r) => r.seq === s3), 5000, mark)
    expect(h1.messages.filter((m) => m.type === 'readings' && (m.readings as { seq: number }[]).some((r) => r.seq >= s2))).toEqual([])
    // and h1 may not watch again
    const at = h1.messages.length
    h1.send(JSON.stringify({ type: 'watch', residentId: R }))
    expect(await h1.next(() => true, 5000, at)).toMatchObject({ type: 'error', code: 'VM_FORBIDDEN' })

    const watches = t.app.audit.list(0, 10_000).filter((e) => e.action === 'live.watch' && e.subject === R)
    expect(watches.map((e) => e.actor.split(':').slice(0, 2).join(':'))).toEqual(expect.arrayContaining(['hospital:h1', 'operator:']))
    await h1.close(); await control.close()
    t.app.registry.updateResident(R, { hospitalId: 'h1' })
  })
})
