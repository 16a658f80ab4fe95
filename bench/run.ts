import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { cpus, loadavg } from 'node:os'
import { spawnSync } from 'node:child_process'
import { ruleEvaluation } from './rules.ts'
import { startMosquitto, startPlainAedes, startVitalmesh, load, alertLatency, rssPerConnection, type Server, type LoadResult } from './brokers.ts'
import { influxThroughput } from './influx.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'

/**
 * `npm run bench`: every speed goal lives here, never in timed tests. The same load
 * generator runs against Debian's mosquitto, plain Aedes and vitalmesh, in one invocation.
 */
const quick = process.argv.includes('--quick')
const only = process.argv.slice(2).find((a) => !a.startsWith('--')) // `npm run bench -- influx` runs only the InfluxDB drain benchmark
const SECONDS = quick ? 3 : 8
if (only === 'backtest') {
  // `npm run bench -- backtest [--influx]`: replaying 30 days of 10,000 residents through a draft rule set (bench/backtest.ts)
  const { backtestBenchmark } = await import('./backtest.ts')
  await backtestBenchmark()
  process.exit(0)
}
interface Row { server: string, single: LoadResult, batched: LoadResult, alert?: { p50: number, p99: number, n: number }, rss?: { n: number, kbPerConnection: number } }
const rows: Row[] = []
// the per-device publish rate limit protects a real fleet; the benchmark floods on purpose
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '1000000', VITALMESH_PUBLISH_BURST: '1000000' }
const withInflux = async (): Promise<Server> => {
  const influxd = await startInfluxd()
  const s = await startVitalmesh({ ...UNLIMITED, VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influxd.url, VITALMESH_INFLUX_API: 'v1', VITALMESH_INFLUX_DB: 'vitalmesh', VITALMESH_INFLUX_CREATE_DATABASE: 'true' }, 'vitalmesh (InfluxDB 1.6)')
  return { ...s, stop: async () => { await s.stop(); await influxd.destroy() } }
}
// `npm run bench -- core`: only plain Aedes and vitalmesh (embedded), the pair the CPU goal compares, and no files written
const starters: (() => Promise<Server>)[] = only === 'influx' ? [] : only === 'core' ? [startPlainAedes, () => startVitalmesh({ ...UNLIMITED, ...(process.env.BENCH_CPU_PROF ? { BENCH_NODE_ARGS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF}` } : {}) })] : [startMosquitto, startPlainAedes, () => startVitalmesh(UNLIMITED), withInflux]
for (const start of starters) {
  const s = await start()
  try {
    const single = await load(s, { devices: 20, inflight: 10, seconds: SECONDS, batch: 1 })
    const batched = await load(s, { devices: 20, inflight: 4, seconds: SECONDS, batch: 30 })
    const row: Row = { server: s.name, single, batched }
    if (s.resident) row.alert = await alertLatency(s, { backgroundRate: 5000, alertsPerS: 50, seconds: SECONDS })
    // vitalmesh has only the 100 demo devices here; its connection RSS comes from bench/connections.ts (below)
    if (s.devices.length >= 1000) row.rss = await rssPerConnection(s, 1000)
    rows.push(row)
    console.log(`${s.name}: single ${Math.round(single.readings / single.seconds)} readings/s at ${single.serverCpuUs.toFixed(1)} µs CPU each (PUBACK p50 ${single.p50.toFixed(1)} ms, p99 ${single.p99.toFixed(1)} ms); batched ${Math.round(batched.readings / batched.seconds)} readings/s at ${batched.serverCpuUs.toFixed(1)} µs${row.alert ? `; publish→alert p50 ${row.alert.p50.toFixed(1)} ms p99 ${row.alert.p99.toFixed(1)} ms (${row.alert.n} alerts)` : ''}${row.rss ? `; RSS ${row.rss.kbPerConnection.toFixed(1)} KB per connection (${row.rss.n})` : ''}`)
  } finally { await s.stop() }
}
if (only === 'core') {
  const [a, v] = rows as [Row, Row]
  console.log(`single: ${(v.single.serverCpuUs / a.single.serverCpuUs).toFixed(2)}× plain Aedes CPU; batched: ${Math.round(v.batched.readings / v.batched.seconds)} readings/s`)
  process.exit(0)
}
const rules = ruleEvaluation()
console.log(`rule engine: ${rules.ruleSets} active rule sets, ${rules.rules} rules per resident: ${(rules.nsPerReadingPerRule / 1000).toFixed(3)} µs per reading per rule (goal < 2 µs)`)

// InfluxDB 1.6: drain versus a direct line-protocol write of the same points
const dir = join(import.meta.dirname, 'results')
mkdirSync(dir, { recursive: true })
// the drain at the defaults (ingest.drainBatch 5000, ingest.drainConcurrency 4) against the direct write, for the goals table
let drainVsDirect: number | undefined
if (only === undefined || only === 'influx') {
  const influx = await influxThroughput([{ batch: 5000, concurrency: 1 }, { batch: 5000, concurrency: 2 }, { batch: 5000, concurrency: 4 }, { batch: 10_000, concurrency: 2 }], 5)
  const direct = influx[0]!
  const atDefaults = influx.find((r) => r.label === 'drain, batch 5000, 4 in flight')
  if (atDefaults) drainVsDirect = atDefaults.pointsPerS / direct.pointsPerS
  for (const r of influx) console.log(`influx, ${r.label}: ${Math.round(r.pointsPerS)} points/s (${Math.round((100 * r.pointsPerS) / direct.pointsPerS)}% of direct), CPU µs/point vitalmesh ${r.clientCpuUs.toFixed(2)}, influxd ${r.serverCpuUs.toFixed(2)}`)
  writeFileSync(join(dir, 'influx.md'), [
    '# Drain into InfluxDB 1.6.7 versus a direct line-protocol write (200,000 points, 1,000 devices)',
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, with \`npm run bench -- influx\`. Median of 5 alternating rounds, each into a fresh database. Load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (the machine is shared: compare CPU per point when it is high).`,
    '',
    '| write | seconds | points/s | % of direct | vitalmesh CPU µs/point | influxd CPU µs/point |',
    '|---|---|---|---|---|---|',
    ...influx.map((r) => `| ${r.label} | ${r.seconds.toFixed(2)} | ${Math.round(r.pointsPerS)} | ${Math.round((100 * r.pointsPerS) / direct.pointsPerS)}% | ${r.clientCpuUs.toFixed(2)} | ${r.serverCpuUs.toFixed(2)} |`),
    '',
  ].join('\n'))
  console.log(`written to ${join(dir, 'influx.md')}`)
  if (only === 'influx') process.exit(0)
}

const aedes = rows.find((r) => r.server === 'plain Aedes')!
const vm = rows.find((r) => r.server.startsWith('vitalmesh'))!
const goals = [
  ['full pipeline CPU per single-reading message ≤ 2× plain Aedes', `${(vm.single.serverCpuUs / aedes.single.serverCpuUs).toFixed(2)}×`, vm.single.serverCpuUs <= 2 * aedes.single.serverCpuUs],
  ['≥ 150,000 readings/s batched on the embedded store', `${Math.round(vm.batched.readings / vm.batched.seconds)}`, vm.batched.readings / vm.batched.seconds >= 150_000],
  ['p99 publish → alert ≤ 25 ms at 5,000 readings/s', `${vm.alert!.p99.toFixed(1)} ms`, vm.alert!.p99 <= 25],
  ['rule evaluation < 2 µs per reading per rule', `${(rules.nsPerReadingPerRule / 1000).toFixed(3)} µs`, rules.nsPerReadingPerRule < 2000],
  ...(drainVsDirect === undefined ? [] : [['InfluxDB 1.6: drain (defaults) ≥ 70% of a direct write (influx.md)', `${Math.round(100 * drainVsDirect)}%`, drainVsDirect >= 0.7] as const]),
] as const
const f = (x: number, d = 1) => Number.isFinite(x) ? x.toFixed(d) : '–'
const md = [
  '# vitalmesh benchmarks',
  '',
  `Measured ${new Date().toISOString()} with \`npm run bench\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. One load generator (a small MQTT 3.1.1 client, firmware-sim/lite-client.ts) drives every server the same way: 20 connections, QoS 1, 10 messages in flight each (single readings) or 4 (batches of 30 readings), ${SECONDS} s each. Server CPU is utime+stime from /proc of the server process.`,
  '',
  '| server | single: readings/s | single: server CPU µs/reading | PUBACK p50 / p99 ms | batched ×30: readings/s | batched: CPU µs/reading | publish→alert p50 / p99 ms (5,000 readings/s) | RSS KB per connection | load generator CPU µs/reading (single / batched) |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.server} | ${Math.round(r.single.readings / r.single.seconds)} | ${f(r.single.serverCpuUs)} | ${f(r.single.p50)} / ${f(r.single.p99)} | ${Math.round(r.batched.readings / r.batched.seconds)} | ${f(r.batched.serverCpuUs)} | ${r.alert ? `${f(r.alert.p50)} / ${f(r.alert.p99)}` : 'n/a'} | ${r.rss ? `${f(r.rss.kbPerConnection)} (${r.rss.n})` : 'see connections.md'} | ${f(r.single.generatorCpuUs)} / ${f(r.batched.generatorCpuUs)} |`),
  '',
  '## Goals',
  '',
  '| goal | measured | met |',
  '|---|---|---|',
  ...goals.map(([g, m, ok]) => `| ${g} | ${m} | ${ok ? 'yes' : '**no**'} |`),
  '',
  `Rule engine: ${rules.ruleSets} active rule sets, ${rules.rules} rules per resident, ${(rules.nsPerReading / 1000).toFixed(2)} µs per reading.`,
  '',
]
// an SVG bar chart of server CPU per reading (single readings), the comparison the goals are about
const max = Math.max(...rows.map((r) => r.single.serverCpuUs))
const bars = rows.map((r, i) => {
  const w = (r.single.serverCpuUs / max) * 460
  return `<text x="10" y="${40 + i * 40}" font-size="13">${r.server}</text><rect x="190" y="${26 + i * 40}" width="${w.toFixed(1)}" height="20" fill="${r.server.startsWith('vitalmesh') ? '#0f6cbd' : '#9ca3af'}"/><text x="${(196 + w).toFixed(1)}" y="${40 + i * 40}" font-size="12">${r.single.serverCpuUs.toFixed(1)} µs</text>`
}).join('')
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="${60 + rows.length * 40}" font-family="sans-serif"><text x="10" y="16" font-size="14" font-weight="bold">Server CPU per QoS 1 reading (single-reading messages)</text>${bars}</svg>\n`
writeFileSync(join(dir, 'README.md'), md.join('\n'))
writeFileSync(join(dir, 'cpu-per-reading.svg'), svg)
console.log(`written to ${join(dir, 'README.md')} and cpu-per-reading.svg`)

// a quick run of the connection benchmark (2,000 devices); the full one is `npm run bench:connections`
const conn = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'connections.ts'), quick ? '1000' : '2000'], { stdio: 'inherit' })
process.exit(conn.status ?? 1)
