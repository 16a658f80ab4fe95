import { describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { nodeStats, startAppProcess, tempDir, waitFor, type AppProcess } from '../helpers/proc.ts'

const CYCLES = 10
// the devices flood on purpose; the per-device rate limit would refuse (and answer) the excess
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '100000', VITALMESH_PUBLISH_BURST: '100000' }
const DEVICES = 4
// a resend's changes: later timestamps (still in the past) and values no first send has
const RESEND = { dts: 1_000_000, hr: 140 }
const LATE_RESEND = { dts: 2_000_000, hr: 160 }

/**
 * The app killed with SIGKILL at random moments under load, ten times. The devices behave
 * like firmware: a reading is resent (same seq) until its PUBACK arrives. At the end the store
 * holds exactly the readings that were acknowledged — every one of them, none twice.
 *
 * A resend carries other values and another timestamp than the first send (a firmware that
 * re-stamps after resynchronising its clock): were a reading committed before the kill but
 * not acknowledged, a resend with the same payload would be absorbed by the store's primary
 * key (resident, ts, device, seq) alone; with a new ts only the spool's de-duplication keeps
 * the seq from being stored, and counted by the forwarder, twice.
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
    const variant = (seq: number, change: { dts: number, hr: number }): string => JSON.stringify({ v: 1, seq, ts: t0 + seq + change.dts, hr: change.hr, sys: 150, dia: 95 })
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
          // resend what was not acknowledged, changed (see above); a second resend repeats the first
          for (const [seq] of pending[i]!) { const p = variant(seq, RESEND); pending[i]!.set(seq, p); send(seq, p) }
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
        for (const [seq] of pending[i]!) c.publish(`vitals/${d.deviceId}`, variant(seq, RESEND), { qos: 1 }, (err) => { if (!err) { pending[i]!.delete(seq); acked[i]!.add(seq) } })
      })
      return c
    })
    await waitFor('every reading acknowledged', () => pending.every((p) => p.size === 0), 20_000)
    // and each device resends its last 20 acknowledged readings once more, changed again: all of them are duplicates
    const LATE = 20
    const before = await nodeStats(app)
    await Promise.all(clients.map(async (c, i) => {
      const d = devices[i]!
      const last = [...acked[i]!].sort((a, b) => a - b).slice(-LATE)
      for (const seq of last) await c.publishAsync(`vitals/${d.deviceId}`, variant(seq, LATE_RESEND), { qos: 1 })
    }))
    const after = await nodeStats(app)
    expect(after.duplicates - before.duplicates).toBe(LATE * DEVICES)
    expect(after.readingsAccepted).toBe(before.readingsAccepted)
    for (const c of clients) await c.endAsync()
    // the spool is empty once every consumer (store drain, forwarder) is past its last record; /readyz does not look at it
    await waitFor('the spool drained', async () => (await nodeStats(app)).spoolRows === 0, 20_000)
    // the forwarder counted each acknowledged reading once
    for (const [i, d] of devices.entries()) {
      const res = await fetch(`http://127.0.0.1:${app.httpPort}/v1/residents/${d.residentId}/summaries?window=1h&from=0`, { headers: { authorization: `Bearer ${app.creds.apiKeys.operator}` } })
      const { summaries } = await res.json() as { summaries: { hr: { count: number } }[] }
      expect(summaries.reduce((n, x) => n + x.hr.count, 0), d.residentId).toBe(acked[i]!.size)
    }
    await app.kill('SIGTERM')

    const db = new Database(join(dataDir, 'telemetry.db'), { readonly: true })
    const spool = new Database(join(dataDir, 'vitalmesh.db'), { readonly: true })
    try {
      expect((spool.prepare('SELECT count(*) AS n FROM spool_records').get() as { n: number }).n).toBe(0)
      let total = 0
      for (const [i, d] of devices.entries()) {
        const rows = db.prepare('SELECT seq, ts, hr FROM readings WHERE device_id = ? ORDER BY seq, ts').all(d.deviceId) as { seq: number, ts: number, hr: number }[]
        const seqs = rows.map((r) => r.seq)
        expect(new Set(seqs).size).toBe(seqs.length) // no seq twice, although its resends had other timestamps
        expect(seqs).toEqual([...acked[i]!].sort((a, b) => a - b)) // exactly the acknowledged ones
        // each as first stored: the original or (when the first send never got in) the first resend, never the late resend
        expect(rows.filter((r) => r.hr === LATE_RESEND.hr || r.ts === t0 + r.seq + LATE_RESEND.dts)).toEqual([])
        total += seqs.length
      }
      expect(total).toBeGreaterThan(CYCLES * DEVICES * 5)
    } finally { db.close(); spool.close() }
  }, 180_000)
})
