import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, collect, reading } from './helpers/mqtt.ts'
import { waitFor } from './helpers/proc.ts'

describe('bad input from a device', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp() })
  afterAll(async () => { await t?.stop() })

  const cases: [string, string, string, number | undefined][] = [
    ['malformed JSON', '{"v":1,"seq":1,', 'VM_MALFORMED_PAYLOAD', undefined],
    ['not JSON at all', '\u0000\u00ff binary', 'VM_MALFORMED_PAYLOAD', undefined],
    ['wrong types', JSON.stringify({ v: 1, seq: 2, ts: Date.now(), hr: 'seventy' }), 'VM_INVALID_READING', 2],
    ['missing seq', JSON.stringify({ v: 1, ts: Date.now(), hr: 70 }), 'VM_INVALID_READING', undefined],
    ['no measurement', JSON.stringify({ v: 1, seq: 3, ts: Date.now() }), 'VM_INVALID_READING', 3],
    ['sys without dia', JSON.stringify({ v: 1, seq: 4, ts: Date.now(), sys: 120 }), 'VM_INVALID_READING', 4],
    ['unknown version', JSON.stringify({ v: 2, seq: 5, ts: Date.now(), hr: 70 }), 'VM_INVALID_READING', 5],
    ['diastolic >= systolic', JSON.stringify({ v: 1, seq: 6, ts: Date.now(), sys: 80, dia: 90 }), 'VM_IMPLAUSIBLE_READING', 6],
    ['implausible heart rate', JSON.stringify({ v: 1, seq: 7, ts: Date.now(), hr: 900 }), 'VM_IMPLAUSIBLE_READING', 7],
    ['implausible systolic', JSON.stringify({ v: 1, seq: 8, ts: Date.now(), sys: 20, dia: 10 }), 'VM_IMPLAUSIBLE_READING', 8],
    ['timestamp in the future', JSON.stringify({ v: 1, seq: 9, ts: Date.now() + 3600_000, hr: 70 }), 'VM_IMPLAUSIBLE_READING', 9],
  ]

  it('answers each bad payload on devices/{id}/errors with its code, stores nothing, and keeps serving other clients', async () => {
    const d = t.app.demo!.fleet[10]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const inbox = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    const other = t.app.demo!.fleet[11]!
    const o = await connect(t.mqttPort, other.deviceId, other.secret)
    let otherSeq = 0

    for (const [name, payload, code, seq] of cases) {
      await c.publishAsync(`vitals/${d.deviceId}`, payload, { qos: 1 }) // acknowledged: MQTT 3.1.1 has no negative PUBACK
      const err = await inbox.next(`devices/${d.deviceId}/errors`, (b) => b.code === code && b.seq === seq)
      expect(err.message, name).toEqual(expect.any(String))
      expect(err.message.length, name).toBeGreaterThan(10)
      inbox.messages.length = 0
      // another device is served between every bad message
      await o.publishAsync(`vitals/${other.deviceId}`, reading(++otherSeq), { qos: 1 })
    }
    expect(c.connected).toBe(true)
    await t.app.drain.idle()
    expect(await t.app.store.queryRange(d.residentId, 0, Date.now() + 1e9, 100)).toEqual([])
    expect((await t.app.store.queryRange(other.residentId, 0, Date.now() + 1e9, 100)).length).toBe(cases.length)

    // operators find the raw payloads in the bounded dead-letter table
    const db = new Database(join(t.dataDir, 'vitalmesh.db'), { readonly: true })
    const dead = db.prepare('SELECT code FROM dead_letters WHERE device_id = ? ORDER BY id').all(d.deviceId) as { code: string }[]
    db.close()
    expect(dead.map((x) => x.code)).toEqual(cases.map((x) => x[2]))
    await c.endAsync(); await o.endAsync()
  })

  it('stores the good readings of a batch and reports the bad one', async () => {
    const d = t.app.demo!.fleet[12]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const inbox = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    const now = Date.now()
    const batch = { v: 1, readings: [
      { seq: 100, ts: now - 3000, hr: 70, sys: 120, dia: 80 },
      { seq: 101, ts: now - 2000, sys: 90, dia: 95 },
      { seq: 102, ts: new Date(now - 1000).toISOString(), hr: 75 },
    ] }
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify(batch), { qos: 1 })
    expect(await inbox.next(`devices/${d.deviceId}/errors`)).toMatchObject({ code: 'VM_IMPLAUSIBLE_READING', seq: 101 })
    await waitFor('the good readings', async () => {
      await t.app.drain.idle()
      return (await t.app.store.queryRange(d.residentId, 0, now + 1e6, 100)).length === 2
    })
    const rows = await t.app.store.queryRange(d.residentId, 0, now + 1e6, 100)
    expect(rows.map((r) => r.seq)).toEqual([100, 102])
    expect(rows[1]!.ts).toBe(now - 1000)
    expect(inbox.messages.length).toBe(1)
    await c.endAsync()
  })

  it('answers a batch refused as a whole with every seq it carried', async () => {
    const d = t.app.demo!.fleet[13]!
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const inbox = collect(c)
    await c.subscribeAsync(`devices/${d.deviceId}/errors`, { qos: 1 })
    const now = Date.now()
    const readings = Array.from({ length: 501 }, (_, i) => ({ seq: i, ts: now - 10_000 + i, hr: 70 }))
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, readings }), { qos: 1 })
    const err = await inbox.next(`devices/${d.deviceId}/errors`)
    expect(err.code).toBe('VM_INVALID_READING')
    expect(err.seqs).toEqual(readings.map((r) => r.seq))
    await c.endAsync()
  })
})
