import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, collect, reading, subackCodes } from './helpers/mqtt.ts'
import { run, waitFor } from './helpers/proc.ts'
import { rawConnect, connectPacket } from './helpers/raw-mqtt.ts'

/** Each protection of the broker, provoked by a real client (mqtt.js, mosquitto tools, or a bare socket). */
describe('broker protections', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await startTestApp({
      'mqtt.publishRatePerS': 2, 'mqtt.publishBurst': 3, 'mqtt.abuseRefusalsPerMinute': 5,
      'mqtt.keepaliveLimitS': 120, 'mqtt.connectTimeoutMs': 300, 'mqtt.drainTimeoutMs': 500,
      'mqtt.maxTopicLevels': 4, 'mqtt.maxConnectionsPerAddress': 5,
    })
  })
  afterAll(async () => { await t?.stop() })

  const stored = async (residentId: string) => {
    await t.app.drain.idle()
    return t.app.store.queryRange(residentId, 0, Date.now() + 1e9, 10_000)
  }

  it('rate limit: a burst passes, the excess is acknowledged with VM_RATE_LIMITED and not stored, persistent abuse disconnects', async () => {
    const d = t.app.demo!.fleet[10]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const errors = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    for (let seq = 1; seq <= 4; seq++) await c.publishAsync(`vitals/${d.deviceId}`, reading(seq), { qos: 1 })
    // the error names the refused reading's seq, so the firmware knows what to resend
    expect(await errors.next(`devices/${d.deviceId}/errors`)).toMatchObject({ code: 'VM_RATE_LIMITED', seq: 4, seqs: [4] })
    expect((await stored(d.residentId)).map((r) => r.seq)).toEqual([1, 2, 3])
    // keeps hammering: after 5 refusals in a minute, the broker disconnects it
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    for (let seq = 5; seq <= 12; seq++) c.publish(`vitals/${d.deviceId}`, reading(seq), { qos: 1 })
    await closed
    c.end(true)
    // reconnecting does not refill the bucket (the budget belongs to the device, not the
    // connection): still within the abusive minute, its next publish disconnects it again
    const again = await connect(t.mqttPort, d.deviceId, d.secret)
    const closedAgain = new Promise<void>((res) => again.once('close', () => res()))
    again.publish(`vitals/${d.deviceId}`, reading(13), { qos: 1 })
    await closedAgain
    again.end(true)
    expect((await stored(d.residentId)).map((r) => r.seq)).toEqual([1, 2, 3])
    // a well-behaved device is unaffected
    const ok = t.app.demo!.fleet[11]!
    const c2 = await connect(t.mqttPort, ok.deviceId, ok.secret)
    await c2.publishAsync(`vitals/${ok.deviceId}`, reading(1), { qos: 1 })
    await c2.endAsync()
  })

  it('a rate-limited batch is answered with every seq it carried', async () => {
    const d = t.app.demo!.fleet[12]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const errors = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    const batch = (seqs: number[]) => JSON.stringify({ v: 1, readings: seqs.map((seq) => ({ seq, ts: Date.now() - 1000 + seq, hr: 70 })) })
    for (let i = 0; i < 3; i++) await c.publishAsync(`vitals/${d.deviceId}`, batch([i]), { qos: 1 })
    await c.publishAsync(`vitals/${d.deviceId}`, batch([10, 11, 12]), { qos: 1 })
    expect(await errors.next(`devices/${d.deviceId}/errors`)).toMatchObject({ code: 'VM_RATE_LIMITED', seqs: [10, 11, 12] })
    expect((await stored(d.residentId)).map((r) => r.seq)).toEqual([0, 1, 2])
    await c.endAsync()
  })

  it('keepalive limit: a client asking for more than 120 s, or for none, is refused (mosquitto_pub -k)', async () => {
    const d = t.app.demo!.fleet[12]!
    const long = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', d.deviceId, '-u', d.deviceId, '-P', d.secret, '-k', '600', '-q', '1', '-t', `vitals/${d.deviceId}`, '-m', reading(1)])
    expect(long.code).not.toBe(0)
    await expect(connect(t.mqttPort, d.deviceId, d.secret, { keepalive: 0 })).rejects.toThrow()
    const fine = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', d.deviceId, '-u', d.deviceId, '-P', d.secret, '-k', '60', '-q', '1', '-t', `vitals/${d.deviceId}`, '-m', reading(2)])
    expect(fine.code, fine.stderr).toBe(0)
  })

  it('connect timeout: a socket that never sends CONNECT is closed', async () => {
    const raw = await rawConnect(t.mqttPort)
    const t0 = Date.now()
    await raw.closed
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('drainTimeout: a subscriber that stops reading is disconnected, and delivery to others goes on', async () => {
    const r = t.app.demo!.resident
    const raw = await rawConnect(t.mqttPort)
    raw.send({ ...connectPacket(r.id, r.password), clientId: `${r.id}:stuck` })
    await raw.next('connack')
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `alerts/${r.id}`, qos: 0 }] })
    await raw.next('suback')
    raw.socket.pause() // stops reading: the kernel buffers fill, then the broker's writes block
    const other = await connect(t.mqttPort, r.id, r.password, { clientId: `${r.id}:ok` })
    const got = collect(other)
    await other.subscribeAsync(`alerts/${r.id}`, { qos: 0 })
    const big = Buffer.alloc(512 * 1024, 0x61)
    const t0 = Date.now()
    for (let i = 0; i < 200 && (t.app.broker.aedes as any).clients[`${r.id}:stuck`]; i++) await t.app.broker.publish(`alerts/${r.id}`, big, 0)
    expect((t.app.broker.aedes as any).clients[`${r.id}:stuck`]).toBeUndefined()
    expect(Date.now() - t0).toBeLessThan(10_000)
    await t.app.broker.publish(`alerts/${r.id}`, Buffer.from('{"after":true}'), 0)
    await got.next(`alerts/${r.id}`, (b) => b.after === true)
    await other.endAsync()
    raw.socket.destroy()
  })

  it('maxTopicLevels: a publish with too many levels closes the connection; a subscription gets no grant', async () => {
    const r = t.app.demo!.resident
    const c = await connect(t.mqttPort, r.id, r.password, { clientId: `${r.id}:levels` })
    const codes = await subackCodes(c, [`alerts/${r.id}/a/b/c/d/e`]).catch(() => 'closed')
    expect(codes === 'closed' || (codes as Record<string, number>)[`alerts/${r.id}/a/b/c/d/e`] === 128).toBe(true)
    c.end(true)
    const d = t.app.demo!.fleet[13]!
    const c2 = await connect(t.mqttPort, d.deviceId, d.secret)
    const closed = new Promise<void>((res) => c2.once('close', () => res()))
    c2.publish(`vitals/${d.deviceId}/a/b/c/d/e`, reading(1), { qos: 1 })
    await closed
    c2.end(true)
  })

  it('connection cap per source address: the 6th connection from 127.0.0.9 is refused, other addresses are not', async () => {
    const d = t.app.demo!.fleet[14]!
    const held = []
    for (let i = 0; i < 5; i++) {
      const raw = await rawConnect(t.mqttPort, { localAddress: '127.0.0.9' })
      raw.send({ ...connectPacket(d.deviceId, d.secret), clientId: `${d.deviceId}:${i}` })
      expect(await raw.next('connack')).toMatchObject({ returnCode: 0 })
      held.push(raw)
    }
    const sixth = await rawConnect(t.mqttPort, { localAddress: '127.0.0.9' })
    sixth.send({ ...connectPacket(d.deviceId, d.secret), clientId: `${d.deviceId}:6` })
    await sixth.closed
    expect(sixth.packets.filter((p) => p.cmd === 'connack')).toEqual([])
    const elsewhere = await rawConnect(t.mqttPort, { localAddress: '127.0.0.10' })
    elsewhere.send({ ...connectPacket(d.deviceId, d.secret), clientId: `${d.deviceId}:7` })
    expect(await elsewhere.next('connack')).toMatchObject({ returnCode: 0 })
    for (const h of [...held, elsewhere]) h.socket.destroy()
    expect(t.app.broker.stats.refusedConnections).toBeGreaterThanOrEqual(1)
  })

  it('no session takeover by another identity: the clientId of a connected device is refused to anyone else', async () => {
    const d = t.app.demo!.fleet[15]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const r = t.app.demo!.resident
    await expect(connect(t.mqttPort, r.id, r.password, { clientId: d.deviceId })).rejects.toThrow(/Identifier rejected/i)
    const other = t.app.demo!.fleet[16]!
    await expect(connect(t.mqttPort, other.deviceId, other.secret, { clientId: d.deviceId })).rejects.toThrow(/Identifier rejected/i)
    // the original session is untouched
    expect(c.connected).toBe(true)
    await c.publishAsync(`vitals/${d.deviceId}`, reading(1), { qos: 1 })
    await c.endAsync()
  })

  it('/metrics: Prometheus text with connected devices, connects, auth failures, publishes, bytes and errors by code', async () => {
    const d = t.app.demo!.fleet[17]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    await expect(connect(t.mqttPort, d.deviceId, 'wrong')).rejects.toThrow()
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/text\/plain/)
    const text = await res.text()
    const value = (name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, (x) => '\\' + x)} (\\S+)$`, 'm').exec(text)?.[1])
    expect(value('vitalmesh_connected_devices')).toBeGreaterThanOrEqual(1)
    expect(value('vitalmesh_mqtt_connects_total')).toBeGreaterThanOrEqual(5)
    expect(value('vitalmesh_mqtt_auth_failures_total')).toBeGreaterThanOrEqual(1)
    expect(value('vitalmesh_mqtt_publishes_total')).toBeGreaterThanOrEqual(5)
    expect(value('vitalmesh_mqtt_received_bytes_total')).toBeGreaterThan(1000)
    expect(value('vitalmesh_mqtt_sent_bytes_total')).toBeGreaterThan(1_000_000) // the drain test's alerts
    expect(value('vitalmesh_errors_total{code="VM_RATE_LIMITED"}')).toBeGreaterThanOrEqual(1)
    expect(value('vitalmesh_errors_total{code="VM_AUTH_FAILED"}')).toBeGreaterThanOrEqual(1)
    await c.endAsync()
  })
})

describe('/metrics behind an operator key (metrics.requireApiKey)', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp({ 'metrics.requireApiKey': true }) })
  afterAll(async () => { await t?.stop() })

  it('answers 401 without a key, 403 to a resident key, and the metrics to an operator key', async () => {
    const get = (key?: string) => fetch(`http://127.0.0.1:${t.httpPort}/metrics`, { headers: key ? { authorization: `Bearer ${key}` } : {} })
    expect((await get()).status).toBe(401)
    expect((await get(t.app.demo!.apiKeys.resident)).status).toBe(403)
    const ok = await get(t.app.demo!.apiKeys.operator)
    expect(ok.status).toBe(200)
    expect(await ok.text()).toMatch(/^vitalmesh_connected_devices 0$/m)
  })
})
