import { afterAll, describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { nodeStats, startAppProcess, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'
import { connect } from './helpers/mqtt.ts'

const N = 2000

interface StoredRow { seq: number, ts: number, hr: number, sys: number, dia: number }
function storedRows (dataDir: string, deviceId: string): StoredRow[] {
  // read the store file directly, as an operator would, while the app is down
  const db = new Database(join(dataDir, 'telemetry.db'), { readonly: true })
  try {
    return db.prepare<[string], StoredRow>('SELECT seq, ts, hr, sys, dia FROM readings WHERE device_id = ? ORDER BY seq, ts').all(deviceId)
  } finally { db.close() }
}

// one identity publishing as fast as it can (like a gateway): lift the per-device rate limit
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '100000', VITALMESH_PUBLISH_BURST: '100000' }

describe('a PUBACK means the reading is durable', () => {
  let app: AppProcess | undefined
  afterAll(async () => { await app?.kill('SIGKILL') })

  it('keeps every acknowledged reading exactly once across a SIGKILL, and stores nothing for resent seqs even when their values changed', async () => {
    const dataDir = tempDir()
    app = await startAppProcess(dataDir, UNLIMITED)
    const { device } = app.creds
    const c = await connect(app.mqttPort, device.deviceId, device.secret)
    const t0 = Date.now() - N * 1000
    const original = (seq: number): StoredRow => ({ seq, ts: t0 + seq * 1000, hr: 60 + (seq % 40), sys: 110 + (seq % 20), dia: 70 + (seq % 10) })
    const payload = (seq: number) => JSON.stringify({ v: 1, ...original(seq) })

    // 20 messages in flight, as a busy device or gateway would have
    let next = 0
    let acked = 0
    await new Promise<void>((resolve, reject) => {
      const send = (): void => {
        if (next >= N) return
        const seq = next++
        c.publish(`vitals/${device.deviceId}`, payload(seq), { qos: 1 }, (err) => {
          if (err) return reject(err)
          acked++
          if (acked === N) resolve()
          else send()
        })
      }
      for (let i = 0; i < 20; i++) send()
    })
    // killed right after the last PUBACK: no graceful shutdown, no chance to flush anything
    await app.kill('SIGKILL')
    c.end(true)

    app = await startAppProcess(dataDir, UNLIMITED)
    // the spool is empty only once every consumer (store drain, forwarder) is past its last record
    await waitFor('the spool to drain after the restart', async () => (await nodeStats(app!)).spoolRows === 0, 20_000)
    const c2 = await connect(app.mqttPort, device.deviceId, device.secret)
    await waitFor(`${N} readings in the store`, async () => {
      const res = await fetch(`http://127.0.0.1:${app!.httpPort}/v1/residents/${device.residentId}/readings?from=0&limit=10000`, {
        headers: { authorization: `Bearer ${app!.creds.apiKeys.operator}` },
      })
      return ((await res.json()) as { count: number }).count >= N
    }, 20_000)

    // the forwarder's window summaries hold every reading too: what was not checkpointed before the kill was replayed from the spool
    const summaryCount = async (): Promise<number> => {
      const summaries = await (await fetch(`http://127.0.0.1:${app!.httpPort}/v1/residents/${device.residentId}/summaries?window=1h&from=0`, {
        headers: { authorization: `Bearer ${app!.creds.apiKeys.operator}` },
      })).json() as { summaries: { hr: { count: number } }[] }
      return summaries.summaries.reduce((n, x) => n + x.hr.count, 0)
    }
    expect(await summaryCount()).toBe(N)

    // the device did not see some PUBACKs (as after a lost connection) and resends them, but with other values and
    // other timestamps (a firmware that re-measured, or re-stamped from a resynchronised clock): the seq decides, so
    // nothing new is stored, the first value stays, and the forwarder counts each reading once. A changed ts matters:
    // the store's primary key (resident, ts, device, seq) would not catch these, only the spool's de-duplication does.
    const RESENT = 50
    const changed = (seq: number) => JSON.stringify({ v: 1, seq, ts: t0 + seq * 1000 + 500, hr: 150, sys: 150, dia: 95 })
    const before = await nodeStats(app)
    for (let seq = N - RESENT; seq < N; seq++) await c2.publishAsync(`vitals/${device.deviceId}`, changed(seq), { qos: 1 })
    const after = await nodeStats(app)
    expect(after.duplicates - before.duplicates).toBe(RESENT)
    expect(after.readingsAccepted).toBe(before.readingsAccepted)
    // had any been accepted, the spool would hold them until the store and the forwarder consumed them: wait for that
    await waitFor('the spool to drain after the resends', async () => (await nodeStats(app!)).spoolRows === 0)
    expect(await summaryCount()).toBe(N)
    await c2.endAsync()
    await app.kill('SIGTERM')
    app = undefined

    const rows = storedRows(dataDir, device.deviceId)
    expect(rows.length).toBe(N)
    expect(new Set(rows.map((r) => r.seq)).size).toBe(N)
    expect(rows.slice(N - RESENT)).toEqual(Array.from({ length: RESENT }, (_, i) => original(N - RESENT + i)))
    expect(rows[0]).toEqual(original(0))
  })
})
