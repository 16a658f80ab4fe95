import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, collect, reading } from './helpers/mqtt.ts'
import { ROOT, run, tempDir, waitFor } from './helpers/proc.ts'

/** Provisioning through the API and the operator CLI, with real MQTT clients connecting as the devices. */
describe('device registry and provisioning', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp({ 'fleet.credentialPollMs': 100, 'fleet.lastSeenFlushMs': 100 }) })
  afterAll(async () => { await t?.stop() })

  const api = async (method: string, path: string, body?: unknown, key = t.app.demo!.apiKeys.operator, type = 'application/json') => {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': type } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    })
    return { status: res.status, body: await res.json() as any }
  }
  /** the operator CLI as a separate process on the same data directory as the running node */
  const cli = (...args: string[]) => run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), ...args], 60_000, { VITALMESH_DATA_DIR: t.dataDir })

  it('registers a device over the API (operator key only) and lists it with online status and last seen', async () => {
    expect((await api('POST', '/v1/devices', { id: 'cuff-1', residentId: 'demo-resident' }, t.app.demo!.apiKeys.resident)).status).toBe(403)
    expect((await api('POST', '/v1/devices', { id: 'cuff-1', residentId: 'nobody' })).body.code).toBe('VM_NOT_FOUND')
    const created = await api('POST', '/v1/devices', { id: 'cuff-1', residentId: 'demo-resident', model: 'bp-cuff-7', region: 'county-042', firmware: '2.4.1' })
    expect(created.status).toBe(201)
    expect(created.body.device).toMatchObject({ id: 'cuff-1', residentId: 'demo-resident', model: 'bp-cuff-7', region: 'county-042', firmware: '2.4.1', online: false, lastSeenAt: null })

    // a second session of the same device watches the retained status topic
    const watcher = await connect(t.mqttPort, 'cuff-1', created.body.secret, { clientId: 'cuff-1:watch' })
    const seen = collect(watcher)
    await watcher.subscribeAsync('devices/cuff-1/status', { qos: 1 })
    const c = await connect(t.mqttPort, 'cuff-1', created.body.secret)
    await c.publishAsync('vitals/cuff-1', reading(1), { qos: 1 })
    const listed = await api('GET', '/v1/devices?region=county-042')
    expect(listed.body.devices).toEqual([expect.objectContaining({ id: 'cuff-1', online: true, lastSeenAt: expect.any(Number) })])
    await waitFor('status online', () => seen.messages.find((m) => m.body.online === true))

    // vanishing without DISCONNECT: the last will marks it offline (retained)
    seen.messages.length = 0
    c.stream.destroy()
    await waitFor('status offline from the will', () => seen.messages.find((m) => m.body.online === false))
    await watcher.endAsync()
    await waitFor('offline in the list', async () => (await api('GET', '/v1/devices/cuff-1')).body.online === false)
    // the batched write reached SQLite, which the CLI reads
    await waitFor('last seen in SQLite', () => t.app.fleet.get('cuff-1')!.lastSeenAt)

    // the broker keeps the last status retained for whoever subscribes later
    const retained: { payload: Buffer, retain: boolean }[] = []
    for await (const p of (t.app.broker.aedes as any).persistence.createRetainedStream('devices/cuff-1/status')) retained.push(p)
    expect(retained.map((p) => [JSON.parse(p.payload.toString()).online, p.retain])).toEqual([[false, true]])
  })

  it('revoking over the API disconnects the device at once; rotating makes the old secret fail', async () => {
    const { body } = await api('POST', '/v1/devices', { id: 'watch-9', residentId: 'demo-resident', firmware: '1.0' })
    const c = await connect(t.mqttPort, 'watch-9', body.secret, { reconnectPeriod: 0 })
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    const rotated = await api('POST', '/v1/devices/watch-9/rotate')
    expect(rotated.body.disconnected).toBe(1)
    await closed
    await expect(connect(t.mqttPort, 'watch-9', body.secret)).rejects.toThrow(/Bad username or password/i)
    const c2 = await connect(t.mqttPort, 'watch-9', rotated.body.secret)
    const closed2 = new Promise<number>((res) => { const t0 = Date.now(); c2.once('close', () => res(Date.now() - t0)) })
    const revoked = await api('POST', '/v1/devices/watch-9/revoke')
    expect(revoked.body).toMatchObject({ disconnected: 1, device: { revoked: true } })
    expect(await closed2).toBeLessThan(500)
    await expect(connect(t.mqttPort, 'watch-9', rotated.body.secret)).rejects.toThrow(/Bad username or password/i)
  })

  it('imports devices from CSV over the API and from a file with the CLI (with progress); a CLI revocation ends the live session', async () => {
    const csv = 'id,residentId,model,region,firmware\n' + Array.from({ length: 300 }, (_, i) => `imp-${i},imp-res-${i % 100},watch,county-7,1.${i % 3}`).join('\n')
    const viaApi = await api('POST', '/v1/devices/import?createResidents=true', csv, undefined, 'text/csv')
    expect(viaApi.status).toBe(200)
    expect(viaApi.body).toMatchObject({ created: 300, failed: [] })
    expect(viaApi.body.credentials).toHaveLength(300)

    const dir = tempDir()
    const file = join(dir, 'fleet.json')
    writeFileSync(file, JSON.stringify(Array.from({ length: 1200 }, (_, i) => ({ id: `cli-${i}`, residentId: 'demo-resident', model: 'cuff', firmware: '9' })).concat([{ id: 'imp-1', residentId: 'demo-resident', model: 'dup', firmware: '9' }])))
    const imported = await cli('devices', 'import', file, '--secrets-out', join(dir, 'secrets.csv'))
    expect(imported.stderr).toMatch(/imported 1000\/1201/)
    expect(imported.stderr).toMatch(/imported 1201\/1201 \(1200 created, 1 refused/)
    expect(imported.stderr).toMatch(/imp-1.*already registered/)
    expect(imported.code).toBe(1)
    const secrets = (await import('node:fs')).readFileSync(join(dir, 'secrets.csv'), 'utf8').trim().split('\n')
    expect(secrets).toHaveLength(1201)
    const [id, secret] = secrets[500]!.split(',') as [string, string]

    const c = await connect(t.mqttPort, id, secret)
    await c.publishAsync(`vitals/${id}`, reading(1), { qos: 1 })
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    const list = await cli('devices', 'list', '--resident', 'demo-resident', '--limit', '3')
    expect(list.stdout.split('\n')[0]).toBe('id\tresident\tregion\tmodel\tfirmware\tonline\tlast seen')
    const revoked = await cli('devices', 'revoke', id)
    expect(revoked.code, revoked.stderr).toBe(0)
    await closed // within the node's credential poll (100 ms here)
    await expect(connect(t.mqttPort, id, secret)).rejects.toThrow(/Bad username or password/i)
  })
})
