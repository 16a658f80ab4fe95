import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase, silentLogger, systemClock } from '../../core/index.ts'
import { Drain, InfluxHttp, InfluxStore, Rollups, Spool, type InfluxSettings } from '../index.ts'
import { startInfluxd, type ServerProcess } from '../../test/helpers/influxd.ts'
import { tempDir } from '../../test/helpers/proc.ts'

let influxd: ServerProcess
beforeAll(async () => { influxd = await startInfluxd() })
afterAll(async () => { await influxd?.destroy() })

const settings = (url: string, db: string): InfluxSettings => ({ api: 'v1', url, db, timeoutMs: 5000, createDatabase: true })
const newSpool = () => new Spool(openDatabase(join(tempDir(), 's.db')), silentLogger(), { deadLetterMax: 10 })

describe('drain into InfluxDB 1.6 (v1 /write)', () => {
  it('quarantines a line InfluxDB refuses (400) and stores the rest of the batch', async () => {
    const http = new InfluxHttp(influxd.url, { kind: 'none' }, 5000)
    await http.query('CREATE DATABASE q1', {}, 'POST')
    const now = Date.now()
    const poisoned = now - 20 * 86_400_000 // its own shard, where `hr` is already a string: a field type conflict
    await http.write({ db: 'q1', precision: 'ms' }, `vitals,device=other hr="not a number" ${poisoned - 1000}`)
    const spool = newSpool()
    const store = new InfluxStore(settings(influxd.url, 'q1'))
    const drain = new Drain(spool, store, silentLogger(), { batch: 50, intervalMs: 5, maxBackoffMs: 50 })
    const readings = Array.from({ length: 40 }, (_, i) => ({ seq: i + 1, ts: i === 17 ? poisoned : now - 60_000 + i, hr: 70 + i }))
    await spool.appendAsync({ deviceKey: 1, deviceId: 'dev-q', residentId: 'res-q', readings })
    drain.start()
    await drain.idle()
    drain.stop()
    expect(spool.size()).toBe(0)
    expect(drain.stats.quarantined).toBe(1)
    expect(spool.quarantined().map((q) => [q.deviceId, q.seq])).toEqual([['dev-q', 18]])
    expect(spool.quarantined()[0]!.reason).toMatch(/field type conflict/)
    const [s] = await http.query(`SELECT count(seq) FROM vitals WHERE device = 'dev-q'`, { db: 'q1' })
    expect(s!.values[0]![1]).toBe(39)
    await store.close(); await http.close()
  })

  it('waits for Retry-After (seconds) on 503 and 429 instead of its own back-off', async () => {
    const hits: { at: number, status: number }[] = []
    const replies = [503, 429, 204]
    const server: Server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        if (req.url === '/ping') { res.writeHead(204, { 'x-influxdb-version': '1.6.7' }).end(); return }
        const status = replies.shift() ?? 204
        hits.push({ at: Date.now(), status })
        res.writeHead(status, status === 204 ? {} : { 'retry-after': '1', 'content-type': 'application/json' }).end(status === 204 ? undefined : '{"error":"busy"}')
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const spool = newSpool()
    const store = new InfluxStore({ ...settings(url, 'x'), createDatabase: false })
    const drain = new Drain(spool, store, silentLogger(), { batch: 10, intervalMs: 5, maxBackoffMs: 20 })
    await spool.appendAsync({ deviceKey: 1, deviceId: 'd', residentId: 'r', readings: [{ seq: 1, ts: Date.now(), hr: 70 }] })
    drain.start()
    await drain.idle()
    drain.stop()
    expect(hits.map((h) => h.status)).toEqual([503, 429, 204])
    expect(hits[1]!.at - hits[0]!.at).toBeGreaterThanOrEqual(950) // our back-off alone would be <= 20 ms
    expect(hits[2]!.at - hits[1]!.at).toBeGreaterThanOrEqual(950)
    expect(drain.stats.retryAfterHonoured).toBe(2)
    expect(spool.size()).toBe(0)
    await store.close()
    server.close()
  })
})

describe('roll-ups written by vitalmesh', () => {
  it('recomputes the hourly and daily windows that drained readings touched, idempotently, and again after a late reading', async () => {
    const store = new InfluxStore(settings(influxd.url, 'rollups'), () => ({ region: 'county-7', model: 'cuff' }))
    const db = openDatabase(':memory:')
    const rollups = new Rollups(db, store, systemClock, silentLogger())
    const h0 = Math.floor((Date.now() - 2 * 86_400_000) / 3600_000) * 3600_000
    const rows = Array.from({ length: 120 }, (_, i) => ({ deviceId: 'dev-r', residentId: 'res-r', seq: i, ts: h0 + i * 60_000, hr: 60 + (i % 60), sys: 120 + (i % 10), dia: 80 }))
    await store.write(rows)
    rollups.touch(rows)
    expect(rollups.stale()).toBeGreaterThanOrEqual(3) // two hours and at least one day
    await rollups.run()
    await rollups.run() // nothing stale: no-op
    expect(rollups.stale()).toBe(0)
    const hourly = await store.query(`SELECT n, hr_mean, hr_max, sys_max, region, resident FROM vitals_1h WHERE time >= ${h0}ms ORDER BY time`)
    expect(hourly[0]!.values.map((v) => [v[0], v[1], v[3], v[4], v[5]])).toEqual([[h0, 60, 119, 129, 'county-7'], [h0 + 3600_000, 60, 119, 129, 'county-7']])
    // a late reading (store-and-forward) marks its hour stale again; the roll-up is overwritten, not duplicated
    const late = { deviceId: 'dev-r', residentId: 'res-r', seq: 1000, ts: h0 + 30_000, hr: 200, sys: 150, dia: 90 }
    await store.write([late])
    rollups.touch([late])
    await rollups.run()
    const again = await store.query(`SELECT n, hr_max FROM vitals_1h WHERE time >= ${h0}ms AND time < ${h0 + 3600_000}ms`)
    expect(again[0]!.values).toEqual([[h0, 61, 200]])
    const daily = await store.query(`SELECT sum(n) FROM vitals_1d WHERE time >= ${h0 - 86_400_000}ms`)
    expect(daily[0]!.values[0]![1]).toBe(121)
    await store.close()
  })
})
