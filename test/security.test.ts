import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import mqtt from 'mqtt'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, collect, reading, subackCodes } from './helpers/mqtt.ts'
import { run, waitFor } from './helpers/proc.ts'

describe('broker security', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp() })
  afterAll(async () => { await t?.stop() })

  const stored = async (residentId: string) => {
    await t.app.drain.idle()
    return t.app.store.queryRange(residentId, 0, Date.now() + 1e9, 10_000)
  }

  it('refuses a wrong password with CONNACK "bad username or password" (mosquitto_pub)', async () => {
    const d = t.app.demo!.device
    const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', d.deviceId, '-u', d.deviceId, '-P', 'wrong', '-q', '1', '-t', `vitals/${d.deviceId}`, '-m', reading(1)])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/bad user name or password|not authori[sz]ed/i)
    await expect(connect(t.mqttPort, d.deviceId, 'wrong')).rejects.toThrow(/Bad username or password/i)
    await expect(connect(t.mqttPort, 'nobody', 'x')).rejects.toThrow(/Bad username or password/i)
  })

  it('refuses a clientId that is not the authenticated identity', async () => {
    const d = t.app.demo!.device
    await expect(connect(t.mqttPort, d.deviceId, d.secret, { clientId: 'demo-dev-001' })).rejects.toThrow(/Identifier rejected/i)
  })

  it('disconnects a device that publishes to another device\'s topic, and stores nothing', async () => {
    const d = t.app.demo!.device
    const other = t.app.demo!.fleet[0]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    c.publish(`vitals/${other.deviceId}`, reading(777, { sys: 200, dia: 130 }), { qos: 1 })
    await closed
    c.end(true)
    expect((await stored(other.residentId)).filter((r) => r.seq === 777)).toEqual([])
    expect(t.app.alerts.forResident(other.residentId)).toEqual([])
  })

  it('refuses $SYS publishes and publishes by residents', async () => {
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    c.publish('$SYS/x', 'y', { qos: 1 })
    await closed
    c.end(true)
    const r = t.app.demo!.resident
    const rc = await connect(t.mqttPort, r.id, r.password)
    const closed2 = new Promise<void>((res) => rc.once('close', () => res()))
    rc.publish(`vitals/${d.deviceId}`, reading(778), { qos: 1 })
    await closed2
    rc.end(true)
    expect((await stored(r.id)).filter((x) => x.seq === 778)).toEqual([])
  })

  it('answers SUBACK 128 to a resident subscribing to another resident\'s alerts, and grants its own', async () => {
    const r = t.app.demo!.resident
    const c = await connect(t.mqttPort, r.id, r.password)
    const byTopic = await subackCodes(c, [`alerts/${r.id}`, 'alerts/demo-res-001', 'alerts/+', 'alerts/#', 'vitals/#'])
    expect(byTopic).toEqual({ [`alerts/${r.id}`]: 1, 'alerts/demo-res-001': 128, 'alerts/+': 128, 'alerts/#': 128, 'vitals/#': 128 })
    await c.endAsync()
  })

  it('lets a device subscribe only to its own devices/{id}/# and standards/#', async () => {
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    expect(await subackCodes(c, [`devices/${d.deviceId}/#`, 'standards/#', 'devices/demo-dev-001/#', 'devices/+/errors', 'alerts/demo-resident'])).toEqual({
      [`devices/${d.deviceId}/#`]: 1, 'standards/#': 1, 'devices/demo-dev-001/#': 128, 'devices/+/errors': 128, 'alerts/demo-resident': 128,
    })
    await c.endAsync()
  })

  it('refuses a payload over the 64 KiB limit without storing it, and keeps serving others', async () => {
    const d = t.app.demo!.fleet[1]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const errors = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    // just over the limit: acknowledged and answered with its code
    const big = JSON.stringify({ v: 1, seq: 5, ts: Date.now(), hr: 70, pad: 'x'.repeat(64 * 1024) })
    await c.publishAsync(`vitals/${d.deviceId}`, big, { qos: 1 })
    expect(await errors.next(`devices/${d.deviceId}/errors`)).toMatchObject({ code: 'VM_PAYLOAD_TOO_LARGE', seq: 5, seqs: [5] })
    // far over the limit: refused as soon as the header is read, connection closed
    const closed = new Promise<void>((res) => c.once('close', () => res()))
    c.publish(`vitals/${d.deviceId}`, Buffer.alloc(2 * 1024 * 1024, 0x20), { qos: 1 })
    await closed
    c.end(true)
    expect(await stored(d.residentId)).toEqual([])
    expect(t.app.broker.stats.oversized).toBeGreaterThanOrEqual(2)
    // the broker still serves another device
    const other = t.app.demo!.fleet[2]!
    const c2 = await connect(t.mqttPort, other.deviceId, other.secret)
    await c2.publishAsync(`vitals/${other.deviceId}`, reading(1), { qos: 1 })
    await c2.endAsync()
    await waitFor('the other device\'s reading', async () => (await stored(other.residentId)).length === 1)
  })

  it('carries MQTT over WebSocket at /mqtt on the HTTP port', async () => {
    const d = t.app.demo!.fleet[3]!
    const c = mqtt.connect(`ws://127.0.0.1:${t.httpPort}/mqtt`, { clientId: d.deviceId, username: d.deviceId, password: d.secret, reconnectPeriod: 0, protocolVersion: 4 })
    await new Promise<void>((res, rej) => { c.once('connect', () => res()); c.once('error', rej) })
    await c.publishAsync(`vitals/${d.deviceId}`, reading(9, { hr: 64 }), { qos: 1 })
    await c.endAsync()
    expect((await stored(d.residentId)).map((r) => [r.seq, r.hr])).toEqual([[9, 64]])
  })
})
