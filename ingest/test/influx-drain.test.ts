import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDatabase, silentLogger } from '../../core/index.ts'
import { Drain, InfluxHttp, InfluxStore, Spool, type InfluxSettings } from '../index.ts'
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
