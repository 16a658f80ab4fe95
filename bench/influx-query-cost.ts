/**
 * `npx tsx bench/influx-query-cost.ts [residents=200]`: what one reading costs influxd (CPU of
 * its process, from /proc) when a backtest reads it back, for the query shapes one could use:
 * the one `InfluxQLStore.replayRange` sends (seq, device and the fields the rule sets read, one
 * resident per query, 4 in flight), CSV instead of JSON, 8 in flight, fewer columns, no ORDER
 * BY/LIMIT, GROUP BY device, one field, and count() (reading without returning points). Each
 * shape twice. It answers whether the InfluxDB backtest of bench/backtest.ts can reach 60 s on
 * this host: see bench/results/backtest.md.
 */
import { request } from 'undici'
import type { StoredReading } from '../core/index.ts'
import { InfluxStore } from '../ingest/index.ts'
import { makePerson, measure, prng } from '../firmware-sim/model.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'

const N = Number(process.argv[2] ?? 200)
const DAY = 86_400_000
const TO = Math.floor(Date.UTC(2026, 5, 1) / DAY) * DAY
const FROM = TO - 30 * DAY
const PER = 30 * 96
const id = (i: number): string => `res-${String(i).padStart(5, '0')}`
function readingsOf (i: number): StoredReading[] {
  const rand = prng(1000 + i); const person = makePerson(rand, 'hypertensive')
  const out: StoredReading[] = []
  for (let n = 0; n < PER; n++) { const ts = FROM + n * 900_000 + Math.floor(rand() * 30_000); const m = measure(person, ts, rand, n); out.push({ deviceId: `dev-${i}`, residentId: id(i), seq: n, ts, hr: m.hr, sys: m.sys, dia: m.dia, activity: m.activity, motion: m.motion }) }
  return out
}
const influxd = await startInfluxd()
try {
  const s = new InfluxStore({ api: 'v1', url: influxd.url, db: 'bench', timeoutMs: 120_000, createDatabase: true }, () => ({ region: 'county-1', model: 'watch' }))
  await s.write([])
  for (let i = 0; i < N; i += 2) await s.write([...readingsOf(i), ...(i + 1 < N ? readingsOf(i + 1) : [])])
  await new Promise((r) => setTimeout(r, 15000)) // influxd compacts what was just written; timed after, as bench/backtest.ts does
  const q = async (query: string, accept?: string): Promise<{ bytes: number, text: string }> => {
    const u = new URL('/query', influxd.url); u.searchParams.set('db', 'bench'); u.searchParams.set('epoch', 'ms'); u.searchParams.set('q', query)
    const res = await request(u, { headers: accept ? { accept } : {} })
    const text = await res.body.text(); return { bytes: text.length, text }
  }
  const sel = `SELECT "seq", "device", "sys", "dia" FROM "vitals"`
  const one = (r: string): string => `${sel} WHERE resident = '${r}' AND time >= ${FROM}ms AND time < ${TO}ms ORDER BY time ASC LIMIT 50000`
  const { readFileSync } = await import('node:fs')
  const icpu = (): number => { const f = readFileSync(`/proc/${influxd.pid()}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) / 100 }
  const run = async (label: string, queries: string[], accept: string | undefined, conc: number): Promise<void> => {
    const c0 = icpu(); const t0 = performance.now(); let next = 0; let bytes = 0; let parse = 0
    await Promise.all(Array.from({ length: conc }, async () => { while (next < queries.length) { const r = await q(queries[next++]!, accept); bytes += r.bytes; const p0 = performance.now(); if (!accept) JSON.parse(r.text); else r.text.split('\n'); parse += performance.now() - p0 } }))
    const s = (performance.now() - t0) / 1000
    console.log(`${label}: ${s.toFixed(2)} s, influxd ${(icpu() - c0).toFixed(2)} s CPU, ${(N * PER / s / 1000).toFixed(0)}k readings/s, ${(bytes / 1e6).toFixed(1)} MB, parse ${(parse / 1000).toFixed(2)} s`)
  }
  const ids = Array.from({ length: N }, (_, i) => id(i))
  const v = (fields: string, extra = ''): ((r: string) => string) => (r) => `SELECT ${fields} FROM "vitals" WHERE resident = '${r}' AND time >= ${FROM}ms AND time < ${TO}ms ${extra}`
  for (const rep of [1, 2]) {
    await run(`json current c4 #${rep}`, ids.map(one), undefined, 4)
    await run(`csv current c4 #${rep}`, ids.map(one), 'application/csv', 4)
    await run(`json current c8 #${rep}`, ids.map(one), undefined, 8)
    await run(`json no device #${rep}`, ids.map(v('"seq", "sys", "dia"', 'ORDER BY time ASC LIMIT 50000')), undefined, 4)
    await run(`json no device no order/limit #${rep}`, ids.map(v('"seq", "sys", "dia"')), undefined, 4)
    await run(`json group by device #${rep}`, ids.map(v('"seq", "sys", "dia"', 'GROUP BY device')), undefined, 4)
    await run(`json sys only #${rep}`, ids.map(v('"sys"')), undefined, 4)
    await run(`json count(sys) #${rep}`, ids.map(v('count("sys")')), undefined, 4)
  }
  await s.close()
} finally { await influxd.destroy() }
