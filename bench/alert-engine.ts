/**
 * `npx tsx bench/alert-engine.ts [readings per transaction] [--late]`: CPU per reading of the
 * alert engine alone (AlertBook on an in-memory database, the default rule sets, 20 residents,
 * a reading a second each), in order or with every tenth reading arriving late. The A/B against
 * an older checkout in bench/README.md ran the same loop there.
 */
import { openDatabase, ManualClock, silentLogger } from '../core/index.ts'
import { AlertBook, BUILTIN_RULE_SETS, DEFAULT_ACTIVE } from '../alerting/index.ts'

const B = Number(process.argv[2] ?? 600)
const late = process.argv.includes('--late')
const ids = process.env.SETS ? process.env.SETS.split(',') : DEFAULT_ACTIVE
const sets = BUILTIN_RULE_SETS.filter((d) => ids.includes(d.id))
const db = openDatabase(':memory:')
const clock = new ManualClock(Date.now())
const book = new AlertBook({
  db, clock, logger: silentLogger(), activeRuleSets: () => sets,
  resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: 'en', hospitalId: null }), overrides: () => new Map(),
  hospitalEndpoint: () => undefined, enqueueWebhook: () => {}, options: { tickMs: 1000, escalateAfterS: 900, renotifyS: { critical: 300, warning: 3600, info: 0 } },
})
book.setNotifier({ alert: (_a, d) => d(), status: () => {} })
const R = 20
const N = Math.ceil(300_000 / B)
let seq = 0
const t0 = clock.now() - 3000_000
const batch = (i: number) => Array.from({ length: B }, (_, k) => {
  const s = seq++
  // every tenth reading was taken 5 minutes earlier (a phone syncing its history)
  const ts = t0 + (i * B + k) * 50 - (late && s % 10 === 0 ? 300_000 : 0)
  return { deviceId: `d${k % R}`, residentId: `r${k % R}`, seq: s, ts, hr: 70 + (k % 5), sys: 120 + (k % 7), dia: 78, activity: 'rest' as const }
})
for (let i = 0; i < 20; i++) book.feed(batch(i))
const c0 = process.cpuUsage()
let n = 0
for (let i = 20; i < N; i++) { const rows = batch(i); book.feed(rows); n += rows.length }
const c = process.cpuUsage(c0)
console.log(`alert engine: ${((c.user + c.system) / n).toFixed(2)} µs CPU per reading (${n} readings, ${B} per transaction, ${sets.length} rule sets: ${ids.join(', ')}${late ? ', every tenth reading late' : ''})`)
