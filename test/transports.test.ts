import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { makePki, type Pki } from './helpers/certs.ts'
import { reading } from './helpers/mqtt.ts'
import { run, waitFor } from './helpers/proc.ts'

/**
 * MQTT over TCP, TLS, WebSocket and secure WebSocket, each with a real client: Debian's
 * mosquitto_pub/_sub for TCP and TLS (--cafile, --cert), mqtt.js for ws:// and wss://.
 * Mutual TLS: a CA-signed certificate whose CN is the device id replaces the password.
 */
describe('transports and mutual TLS', () => {
  let t: TestApp
  let pki: Pki
  beforeAll(async () => {
    pki = makePki()
    t = await startTestApp({ 'tls.port': 0, 'tls.wssPort': 0, 'tls.cert': pki.serverCert, 'tls.key': pki.serverKey, 'tls.ca': pki.ca })
  })
  afterAll(async () => { await t?.stop() })

  const ports = () => t.app.listening!
  const storedSeqs = async (residentId: string, deviceId: string) => {
    await t.app.drain.idle()
    return (await t.app.store.queryRange(residentId, 0, Date.now() + 1e9, 10_000)).filter((r) => r.deviceId === deviceId).map((r) => r.seq)
  }
  const pub = (port: number, id: string, seq: number, extra: string[]) =>
    run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-i', id, '-q', '1', '-t', `vitals/${id}`, '-m', reading(seq), ...extra])

  it('MQTT over TCP with a password (mosquitto_pub)', async () => {
    const d = t.app.demo!.fleet[20]!
    const r = await pub(ports().mqttPort, d.deviceId, 1, ['-u', d.deviceId, '-P', d.secret])
    expect(r.code, r.stderr).toBe(0)
    expect(await storedSeqs(d.residentId, d.deviceId)).toEqual([1])
  })

  it('MQTT over TLS with a password (mosquitto_pub --cafile); a client that does not trust the CA fails the handshake', async () => {
    const d = t.app.demo!.fleet[21]!
    const ok = await pub(ports().tlsPort!, d.deviceId, 1, ['--cafile', pki.ca, '-u', d.deviceId, '-P', d.secret])
    expect(ok.code, ok.stderr).toBe(0)
    const untrusted = await pub(ports().tlsPort!, d.deviceId, 2, ['--cafile', `${pki.dir}/rogue.crt`, '-u', d.deviceId, '-P', d.secret])
    expect(untrusted.code).not.toBe(0)
    expect(await storedSeqs(d.residentId, d.deviceId)).toEqual([1])
  })

  it('mutual TLS: a device certificate (CN = device id) authenticates without a password; wrong CN, unknown device or a foreign CA do not', async () => {
    const d = t.app.demo!.fleet[22]!
    const cert = pki.client(d.deviceId)
    const ok = await pub(ports().tlsPort!, d.deviceId, 7, ['--cafile', pki.ca, '--cert', cert.cert, '--key', cert.key])
    expect(ok.code, ok.stderr).toBe(0)
    expect(await storedSeqs(d.residentId, d.deviceId)).toEqual([7])

    // the certificate of one device cannot act as another (clientId must be the CN)
    const other = t.app.demo!.fleet[23]!
    const asOther = await pub(ports().tlsPort!, other.deviceId, 8, ['--cafile', pki.ca, '--cert', cert.cert, '--key', cert.key])
    expect(asOther.code).not.toBe(0)
    // a CA-signed certificate for a device that is not registered
    const ghost = pki.client('ghost-device')
    expect((await pub(ports().tlsPort!, 'ghost-device', 1, ['--cafile', pki.ca, '--cert', ghost.cert, '--key', ghost.key])).code).not.toBe(0)
    // a certificate with the right CN from another CA is not trusted: with no password, refused
    const forged = pki.client(other.deviceId, 'rogue')
    expect((await pub(ports().tlsPort!, other.deviceId, 9, ['--cafile', pki.ca, '--cert', forged.cert, '--key', forged.key])).code).not.toBe(0)
    expect(await storedSeqs(other.residentId, other.deviceId)).toEqual([])
    // a revoked device's certificate stops working
    t.app.fleet.revoke(d.deviceId)
    expect((await pub(ports().tlsPort!, d.deviceId, 10, ['--cafile', pki.ca, '--cert', cert.cert, '--key', cert.key])).code).not.toBe(0)
  })

  it('MQTT over WebSocket (ws://…/mqtt) and secure WebSocket (wss://…/mqtt, with a client certificate) with mqtt.js', async () => {
    const viaWs = t.app.demo!.fleet[24]!
    const c = mqtt.connect(`ws://127.0.0.1:${ports().httpPort}/mqtt`, { clientId: viaWs.deviceId, username: viaWs.deviceId, password: viaWs.secret, reconnectPeriod: 0, protocolVersion: 4 })
    await new Promise<void>((res, rej) => { c.once('connect', () => res()); c.once('error', rej) })
    await c.publishAsync(`vitals/${viaWs.deviceId}`, reading(3), { qos: 1 })
    await c.endAsync()
    expect(await storedSeqs(viaWs.residentId, viaWs.deviceId)).toEqual([3])

    const viaWss = t.app.demo!.fleet[25]!
    const s = mqtt.connect(`wss://localhost:${ports().wssPort}/mqtt`, { clientId: viaWss.deviceId, username: viaWss.deviceId, password: viaWss.secret, reconnectPeriod: 0, protocolVersion: 4, ca: readFileSync(pki.ca) })
    await new Promise<void>((res, rej) => { s.once('connect', () => res()); s.once('error', rej) })
    await s.publishAsync(`vitals/${viaWss.deviceId}`, reading(4), { qos: 1 })
    await s.endAsync()
    expect(await storedSeqs(viaWss.residentId, viaWss.deviceId)).toEqual([4])

    const mtls = t.app.demo!.fleet[26]!
    const cert = pki.client(mtls.deviceId)
    const m = mqtt.connect(`wss://localhost:${ports().wssPort}/mqtt`, { clientId: mtls.deviceId, reconnectPeriod: 0, protocolVersion: 4, ca: readFileSync(pki.ca), cert: readFileSync(cert.cert), key: readFileSync(cert.key) })
    await new Promise<void>((res, rej) => { m.once('connect', () => res()); m.once('error', rej) })
    await m.publishAsync(`vitals/${mtls.deviceId}`, reading(5), { qos: 1 })
    await m.endAsync()
    await waitFor('the mTLS reading', async () => (await storedSeqs(mtls.residentId, mtls.deviceId)).length === 1)
  })

  it('a resident receives alerts over TLS with mosquitto_sub --cafile', async () => {
    const r = t.app.demo!.resident
    // the message must not be published before the subscription exists: the broker says when it does
    const subscribed = new Promise<void>((res) => {
      const on = (subs: { topic: string }[], client: { id: string } | null): void => {
        if (client?.id === r.id && subs.some((x) => x.topic === `alerts/${r.id}`)) { t.app.broker.aedes.off('subscribe', on); res() }
      }
      t.app.broker.aedes.on('subscribe', on)
    })
    const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(ports().tlsPort), '--cafile', pki.ca, '-i', r.id, '-u', r.id, '-P', r.password, '-q', '1', '-t', `alerts/${r.id}`, '-C', '1', '-W', '10'])
    await subscribed
    await t.app.broker.publish(`alerts/${r.id}`, Buffer.from('{"hello":"tls"}'), 1)
    const out = await sub
    expect(out.stdout.trim()).toBe('{"hello":"tls"}')
  })
})
