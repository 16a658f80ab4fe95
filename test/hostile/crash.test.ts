import { describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { startAppProcess, tempDir, waitFor, type AppProcess } from '../helpers/proc.ts'

const CYCLES = 10
// the devices flood on purpose; the per-device rate limit would refuse (and answer) the excess
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '100000', VITALMESH_PUBLISH_BURST: '100000' }
const DEVICES = 4

/**
 * The app killed with SIGKILL at random moments under load, ten times. The devices behave
 * like firmware: a reading is resent (same seq) until its PUBACK arrives. At the end the store
 * holds exactly the readings that were acknowledged — every one of them, none twice.
 */
describe('crash-restart cycles under load', () => {
  it(`keeps every acknowledged reading exactly once across ${CYCLES} SIGKILLs`, async () => {
    const dataDir = tempDir()
    let app: AppProcess = await startAppProcess(dataDir, UNLIMITED)
    const devices = app.creds.fleet.slice(70, 70 + DEVICES)
    const t0 = Date.now() - 3600_000
    const pending = devices.map(() => new Map<number, string>()) // seq -> payload, until acked
    const acked = devices.map(() => new Set<number>())
    const nextSeq = devices.map(() => 0)
    let clients: MqttClient[] = []
    let running = false

    const startLoad = (port: number): void => {
      running = true
      clients = devices.map((d, i) => {
        const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: d.deviceId, username: d.deviceId, password: d.secret, reconnectPeriod: 0, protocolVersion: 4 })
        const send = (seq: number, payload: string): void => {
          c.publish(`vitals/${d.deviceId}`, payload, { qos: 1 }, (err) => {
            if (err) return
            pending[i]!.delete(seq)
            acked[i]!.add(seq)
            if (running && c.connected) next()
          })
        }
        const next = (): void => {
          const seq = nextSeq[i]!++
          // 1 ms apart: a device here sends tens of thousands in a run, and readings must stay in the past (the server refuses future ones)
          const payload = JSON.stringify({ v: 1, seq, ts: t0 + seq, hr: 60 + (seq % 50), sys: 110 + (seq % 30), dia: 70 + (seq % 15) })
          pending[i]!.set(seq, payload)
          send(seq, payload)
        }
        c.on('connect', () => {
          for (const [seq, payload] of pending[i]!) send(seq, payload) // resend what was not acknowledged
          for (let k = 0; k < 5; k++) next()
        })
        c.on('error', () => {})
        return c
      })
    }
    const stopLoad = (): void => { running = false; for (const c of clients) c.end(true) }

    for (let cycle = 0; cycle < CYCLES; cycle++) {
      startLoad(app.mqttPort)
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 700))
      await app.kill('SIGKILL')
      stopLoad()
      app = await startAppProcess(dataDir, UNLIMITED)
    }
    // a last, gentle run: the devices send what is still unacknowledged
    running = false
    clients = devices.map((d, i) => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${app.mqttPort}`, { clientId: d.deviceId, username: d.deviceId, password: d.secret, reconnectPeriod: 0, protocolVersion: 4 })
      c.on('connect', () => {
        for (const [seq, payload] of pending[i]!) c.publish(`vitals/${d.deviceId}`, payload, { qos: 1 }, (err) => { if (!err) { pending[i]!.delete(seq); acked[i]!.add(seq) } })
      })
      return c
    })
    await waitFor('every reading acknowledged', () => pending.every((p) => p.size === 0), 20_000)
    for (const c of clients) await c.endAsync()
    await waitFor('the spool drained', async () => (await fetch(`http://127.0.0.1:${app.httpPort}/readyz`)).status === 200)
    await new Promise((r) => setTimeout(r, 500))
    await app.kill('SIGTERM')

    const db = new Database(join(dataDir, 'telemetry.db'), { readonly: true })
    const spool = new Database(join(dataDir, 'vitalmesh.db'), { readonly: true })
    try {
      expect((spool.prepare('SELECT count(*) AS n FROM spool_records').get() as { n: number }).n).toBe(0)
      let total = 0
      for (const [i, d] of devices.entries()) {
        const seqs = (db.prepare('SELECT seq FROM readings WHERE device_id = ? ORDER BY seq').all(d.deviceId) as { seq: number }[]).map((r) => r.seq)
        expect(new Set(seqs).size).toBe(seqs.length) // no duplicate
        expect(seqs).toEqual([...acked[i]!].sort((a, b) => a - b)) // exactly the acknowledged ones
        total += seqs.length
      }
      expect(total).toBeGreaterThan(CYCLES * DEVICES * 5)
    } finally { db.close(); spool.close() }
  }, 180_000)
})
