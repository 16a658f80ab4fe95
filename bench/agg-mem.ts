// Memory of the forwarder's windows for many residents (not in npm run bench):
// `node --expose-gc --import tsx bench/agg-mem.ts [residents] [readings]`
import { openDatabase, silentLogger, type Clock } from '../core/index.ts'
import { Aggregator, parseWindow } from '../forwarder/index.ts'
const residents = Number(process.argv[2] ?? 20_000)
const readings = Number(process.argv[3] ?? 2_000_000)
const gc = (globalThis as { gc?: () => void }).gc!
const now = Date.now()
const clock: Clock = { now: () => now, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout) }
const db = openDatabase(':memory:')
// as in the app: windows stay in memory between checkpoints (a spool stand-in that never replays)
const spool = { addConsumer () {}, cursor: () => 0, read: () => [], commitCursor () {}, ack () {} }
const agg = new Aggregator({ db, spool, clock, logger: silentLogger(), windows: ['1h', '1d'].map((w) => parseWindow(w)), latenessMs: 300_000, retainMs: 7 * 86_400_000, region: { id: 'r', level: 'county' }, resident: () => undefined, alertsIn: () => 0, sinks: [] })
gc()
const m0 = process.memoryUsage()
for (let i = 0; i < readings; i += 1000) {
  const rows = Array.from({ length: 1000 }, (_, k) => ({ residentId: `res-${(i + k) % residents}`, seq: i + k, ts: now - 1000 + ((i + k) % 1000), hr: 55 + Math.random() * 70, sys: 100 + Math.random() * 60, dia: 60 + Math.random() * 35 }))
  agg.prepare(rows)
}
gc()
const m1 = process.memoryUsage()
const mb = (x: number) => (x / 2 ** 20).toFixed(0)
console.log(`${residents} residents, ${readings} readings: heap ${mb(m1.heapUsed - m0.heapUsed)} MB, external ${mb(m1.external + m1.arrayBuffers - m0.external - m0.arrayBuffers)} MB, RSS ${mb(m1.rss - m0.rss)} MB more`)
