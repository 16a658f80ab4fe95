import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StoredReading } from '../../core/index.ts'
import { InfluxStore, InfluxV2Store, type InfluxSettings } from '../index.ts'
import { startVictoriaMetrics, type ServerProcess } from '../../test/helpers/influxd.ts'
import { storeContract } from './store-contract.ts'

/**
 * The v2 write path (`@influxdata/influxdb-client`, `/api/v2/write`) against a real server
 * this machine has: Debian's VictoriaMetrics, which accepts InfluxDB line protocol there.
 * It does not answer InfluxQL, so reads go through its export API; it keeps milliseconds.
 */
let vm: ServerProcess
let n = 0
beforeAll(async () => { vm = await startVictoriaMetrics() })
afterAll(async () => { await vm?.destroy() })

const settings = (url: string, bucket: string): InfluxSettings => ({ api: 'v2', url, db: bucket, org: 'vitalmesh', bucket, token: 'test-token', timeoutMs: 5000, createDatabase: false })

async function exportSeries (match: string): Promise<{ metric: Record<string, string>, values: number[], timestamps: number[] }[]> {
  await fetch(`${vm.url}/internal/force_flush`)
  const res = await fetch(`${vm.url}/api/v1/export`, { method: 'POST', body: new URLSearchParams({ 'match[]': match }) })
  return (await res.text()).split('\n').filter(Boolean).map((line) => JSON.parse(line))
}

/**
 * VictoriaMetrics makes new samples searchable only after a flush of its in-memory buffers, and
 * the store's write has already been acknowledged when this runs. A marker written *after* it
 * becomes searchable in the same or a later flush, so once the marker is found, everything the
 * store wrote before it is too, and what is still missing (a rejected row) is really absent.
 */
async function exportSeq (residentId: string): Promise<StoredReading[]> {
  const token = `m${Date.now()}${Math.random().toString(36).slice(2)}`
  const w = await fetch(`${vm.url}/write`, { method: 'POST', body: `readback_marker,token=${token} v=1` })
  expect(w.status).toBe(204)
  while ((await exportSeries(`readback_marker_v{token="${token}"}`)).length === 0) await new Promise((r) => setImmediate(r))
  const out: StoredReading[] = []
  for (const s of await exportSeries(`vitals_seq{resident="${residentId}"}`)) {
    s.values.forEach((v, i) => out.push({ deviceId: s.metric.device!, residentId: s.metric.resident!, seq: v, ts: s.timestamps[i]! }))
  }
  return out.sort((a, b) => a.ts - b.ts)
}

// each test writes to its own residents, so a shared server is fine
storeContract('InfluxDB v2 write API (VictoriaMetrics /api/v2/write)', async () => new InfluxStore(settings(vm.url, `b${++n}`)),
  { readable: false, nanoseconds: false, readBack: (_s, r) => exportSeq(r) })

describe('v2 write API errors', () => {
  it('maps a refused write to a retryable StoreUnavailableError when the server is gone', async () => {
    const store = new InfluxV2Store({ ...settings('http://127.0.0.1:1', 'x'), timeoutMs: 500 })
    await expect(store.write([{ deviceId: 'd', residentId: 'r', seq: 1, ts: Date.now(), hr: 70 }])).rejects.toMatchObject({ name: 'StoreUnavailableError' })
    await store.close()
  })
})

describe('v2 write API: Retry-After and bad lines', () => {
  it('reads Retry-After (seconds) from a 503, and splits a batch on 400 so only the bad line is rejected', async () => {
    const { createServer } = await import('node:http')
    const bodies: string[] = []
    let status503 = true
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => { body += d.toString() })
      req.on('end', () => {
        if (status503) { status503 = false; res.writeHead(503, { 'retry-after': '3', 'content-type': 'application/json' }).end('{"code":"unavailable","message":"busy"}'); return }
        bodies.push(body)
        if (body.includes('seq=2i')) { res.writeHead(400, { 'content-type': 'application/json' }).end('{"code":"invalid","message":"unable to parse"}'); return }
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const store = new InfluxV2Store({ ...settings(url, 'x'), timeoutMs: 2000 })
    // a body under 1 KB: the client would gzip larger ones
    const rows = [1, 2, 3, 4].map((seq) => ({ deviceId: 'd', residentId: 'r', seq, ts: 1_700_000_000_000 + seq, hr: 70 }))
    await expect(store.write(rows)).rejects.toMatchObject({ name: 'StoreUnavailableError', retryAfterMs: 3000 })
    const out = await store.write(rows)
    expect(out.rejected.map((r) => r.row.seq)).toEqual([2])
    expect(out.rejected[0]!.reason).toMatch(/400/)
    await store.close()
    server.close()
  })
})
