import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect as tcp, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { startTestApp, type TestApp } from '../helpers/app.ts'
import { connect, reading } from '../helpers/mqtt.ts'
import { waitFor } from '../helpers/proc.ts'

/** A raw MQTT 3.1.1 client, so the test can send what a well-behaved library refuses to. */
async function raw (port: number, username: string, password: string): Promise<{ sock: Socket, packets: unknown[], closed: Promise<void>, send(p: object): void }> {
  const sock = tcp(port, '127.0.0.1')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const packets: unknown[] = []
  parser.on('packet', (p) => packets.push(p))
  sock.on('data', (d) => parser.parse(d))
  const closed = new Promise<void>((res) => sock.once('close', () => res()))
  await new Promise<void>((res) => sock.once('connect', () => res()))
  const send = (p: object): void => { sock.write(mqttPacket.generate(p as never)) }
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: username, keepalive: 30, username, password: Buffer.from(password) })
  await waitFor('CONNACK', () => packets.some((p) => (p as { cmd: string }).cmd === 'connack'))
  return { sock, packets, closed, send }
}

describe('hostile MQTT input', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp() })
  afterAll(async () => { await t?.stop() })

  const stillServing = async () => {
    const d = t.app.demo!.fleet[60]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    await c.publishAsync(`vitals/${d.deviceId}`, reading(Date.now()), { qos: 1 })
    await c.endAsync()
  }

  it('disconnects a publish to a topic with 1,000 levels, and keeps serving', async () => {
    const d = t.app.demo!.fleet[61]!
    const c = await raw(t.mqttPort, d.deviceId, d.secret)
    c.send({ cmd: 'publish', topic: 'vitals/' + Array.from({ length: 1000 }, () => 'a').join('/'), payload: Buffer.from('{}'), qos: 1, messageId: 1, retain: false, dup: false })
    await c.closed
    expect(c.packets.some((p) => (p as { cmd: string }).cmd === 'puback')).toBe(false)
    await stillServing()
  })

  it('disconnects a publish with wildcards in its topic', async () => {
    for (const topic of ['vitals/+', 'vitals/#', 'vitals/demo-dev-062/#']) {
      const d = t.app.demo!.fleet[62]!
      const c = await raw(t.mqttPort, d.deviceId, d.secret)
      c.send({ cmd: 'publish', topic, payload: Buffer.from(reading(1)), qos: 1, messageId: 1, retain: false, dup: false })
      await c.closed
    }
    await t.app.drain.idle()
    expect(await t.app.store.queryRange(t.app.demo!.fleet[62]!.residentId, 0, Date.now() + 1e6, 10)).toEqual([])
    await stillServing()
  })

  it('survives garbage bytes instead of MQTT, and a header that announces a huge packet', async () => {
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0xf0, 0x00]), Buffer.alloc(4096, 0xff)]) {
      const sock = tcp(t.mqttPort, '127.0.0.1')
      await new Promise<void>((res) => sock.once('connect', () => res()))
      sock.write(bytes)
      await new Promise<void>((res) => { sock.once('close', () => res()); setTimeout(() => { sock.destroy(); res() }, 2000) })
    }
    await stillServing()
  })
})
