import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { InfluxHttp } from '../ingest/index.ts'
import { startInfluxd, type ServerProcess } from './helpers/influxd.ts'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { startAppProcess, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'
import { connect } from './helpers/mqtt.ts'

interface Sums { count: number, seq: number, hr: number }

/** count and checksums per device, as InfluxDB has them */
async function influxSums (url: string, db: string): Promise<Record<string, Sums>> {
  const http = new InfluxHttp(url, { kind: 'none' }, 5000)
  try {
    const series = await http.query('SELECT count(seq), sum(seq), sum(hr) FROM vitals GROUP BY device', { db })
    return Object.fromEntries(series.map((s) => [s.tags!.device!, { count: s.values[0]![1] as number, seq: s.values[0]![2] as number, hr: s.values[0]![3] as number }]))
  } finally { await http.close() }
}

function addSum (sums: Record<string, Sums>, device: string, seq: number, hr: number): void {
  const s = sums[device] ??= { count: 0, seq: 0, hr: 0 }
  s.count++; s.seq += seq; s.hr += hr
}

const publish = (c: MqttClient, deviceId: string, payload: string): Promise<unknown> => c.publishAsync(`vitals/${deviceId}`, payload, { qos: 1 })

let influxd: ServerProcess
beforeAll(async () => { influxd = await startInfluxd() })
afterAll(async () => { await influxd?.destroy() })

describe('InfluxDB outages lose nothing', () => {
  let t: TestApp | undefined
  let proc: AppProcess | undefined
  afterAll(async () => { await t?.stop(); await proc?.kill('SIGKILL') })

  it('InfluxDB SIGKILLed mid-stream, down a while, restarted: every acknowledged reading arrives exactly once', async () => {
    t = await startTestApp({
      'store.kind': 'influx', 'store.influx.api': 'v1', 'store.influx.url': influxd.url, 'store.influx.db': 'outage',
      'store.influx.createDatabase': true, 'ingest.drainIntervalMs': 20, 'ingest.drainBatch': 200,
    })
    const fleet = t.app.demo!.fleet.slice(0, 5)
    const clients = await Promise.all(fleet.map((d) => connect(t!.mqttPort, d.deviceId, d.secret)))
    const acked: Record<string, Sums> = {}
    const t0 = Date.now() - 3600_000
    let seq = 0
    let restarting: Promise<void> | undefined
    for (let round = 0; round < 60; round++) {
      if (round === 15) await influxd.kill('SIGKILL')
      if (round === 45) restarting = influxd.restart()
      const first = seq
      seq += 5
      await Promise.all(fleet.map(async (d, k) => {
        const rs = Array.from({ length: 5 }, (_, j) => ({ seq: first + j, ts: t0 + (first + j) * 10, hr: 50 + ((first + j + k) % 90) }))
        await publish(clients[k]!, d.deviceId, JSON.stringify({ v: 1, readings: rs }))
        for (const r of rs) addSum(acked, d.deviceId, r.seq, r.hr)
      }))
      await new Promise((r) => setTimeout(r, 40)) // real elapsed time: the rounds are spread over InfluxDB's outage and restart
    }
    await restarting
    expect(t.app.drain.stats.failures).toBeGreaterThan(0) // the outage was real
    await waitFor('every acknowledged reading in InfluxDB', async () => {
      const got = await influxSums(influxd.url, 'outage')
      return Object.values(got).reduce((n, s) => n + s.count, 0) >= 60 * 5 * 5 && t!.app.spool.size() === 0
    }, 45_000, 200)
    expect(await influxSums(influxd.url, 'outage')).toEqual(acked)
    await Promise.all(clients.map((c) => c.endAsync()))
  })

  it('vitalmesh restarted (SIGKILL) while InfluxDB is down: nothing is lost', async () => {
    await influxd.kill('SIGKILL')
    const dataDir = tempDir()
    const env = {
      VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influxd.url, VITALMESH_INFLUX_DB: 'restart',
      VITALMESH_INFLUX_CREATE_DATABASE: 'true', VITALMESH_INFLUX_API: 'auto', VITALMESH_DRAIN_INTERVAL_MS: '20',
    }
    const acked: Record<string, Sums> = {}
    const send = async (p: AppProcess, from: number, n: number): Promise<void> => {
      const d = p.creds.device
      const c = await connect(p.mqttPort, d.deviceId, d.secret)
      for (let s = from; s < from + n; s += 10) {
        const rs = Array.from({ length: 10 }, (_, j) => ({ seq: s + j, ts: Date.now() - 600_000 + s + j, hr: 40 + ((s + j) % 100) }))
        await publish(c, d.deviceId, JSON.stringify({ v: 1, readings: rs }))
        for (const r of rs) addSum(acked, d.deviceId, r.seq, r.hr)
      }
      await c.endAsync()
    }
    proc = await startAppProcess(dataDir, env)
    await send(proc, 0, 300)
    await proc.kill('SIGKILL')
    proc = await startAppProcess(dataDir, env)
    await send(proc, 300, 200)
    await influxd.restart()
    await waitFor('every acknowledged reading in InfluxDB', async () => {
      const got = await influxSums(influxd.url, 'restart')
      return Object.values(got).reduce((n, s) => n + s.count, 0) >= 500
    }, 45_000, 200)
    expect(await influxSums(influxd.url, 'restart')).toEqual(acked)
    expect(proc.output()).toMatch(/InfluxDB write API detected from \/ping/)
  })

  it('a full spool holds PUBACKs (back-pressure) until InfluxDB is back, and drops nothing', async () => {
    await influxd.kill('SIGKILL')
    await t?.stop()
    t = await startTestApp({
      'store.kind': 'influx', 'store.influx.api': 'v1', 'store.influx.url': influxd.url, 'store.influx.db': 'pressure',
      'store.influx.createDatabase': true, 'ingest.drainIntervalMs': 20, 'ingest.spoolMaxRows': 100,
    })
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const batch = (from: number) => JSON.stringify({ v: 1, readings: Array.from({ length: 50 }, (_, j) => ({ seq: from + j, ts: Date.now() - 60_000 + from + j, hr: 70 })) })
    await publish(c, d.deviceId, batch(0))
    await publish(c, d.deviceId, batch(50)) // the spool now holds its 100 rows
    let acked = false
    const held = publish(c, d.deviceId, batch(100)).then(() => { acked = true })
    await waitFor('the third batch to be held', () => t!.app.spool.pressure().full && t!.app.spool.pressure().held === 1)
    const heldSince = Date.now()
    // still held after the drain tried twice more (and failed): each attempt was a point where space could have been freed
    const failures = t.app.drain.stats.failures
    await waitFor('two more failed drain attempts', () => t!.app.drain.stats.failures >= failures + 2, 5000)
    expect(acked).toBe(false)
    expect(t.app.spool.pressure()).toMatchObject({ full: true, held: 1 })
    expect(t.app.spool.stats.backpressureEpisodes).toBe(1)
    const heldForMs = Date.now() - heldSince
    await influxd.restart()
    await held
    await waitFor('150 readings in InfluxDB', async () => (await influxSums(influxd.url, 'pressure'))[d.deviceId]?.count === 150, 45_000, 200)
    expect(t.app.spool.stats.backpressureMs).toBeGreaterThanOrEqual(heldForMs)
    await c.endAsync()
  })
})
