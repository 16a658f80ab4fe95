import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { cpus, loadavg } from 'node:os'
import { spawnSync } from 'node:child_process'
import { ruleEvaluation } from './rules.ts'
import { startMosquitto, startPlainAedes, startVitalmesh, load, settled, alertLatency, rssPerConnection, type Server, type LoadResult, type NodeRuntime } from './brokers.ts'
import { ROOT } from '../test/helpers/proc.ts'
import { influxThroughput } from './influx.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'

/**
 * `npm run bench`: every speed goal lives here, never in timed tests. The same load
 * generator runs against Debian's mosquitto, plain Aedes and vitalmesh, in one invocation.
 * Every figure is the median of ROUNDS rounds (5; `--rounds N`), shown with its min–max.
 */
const quick = process.argv.includes('--quick')
const only = process.argv.slice(2).find((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--rounds') // `npm run bench -- influx` runs only the InfluxDB drain benchmark
const roundsArg = process.argv.indexOf('--rounds')
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 5
const SECONDS = quick ? 2 : 4 // per round and load
if (!(ROUNDS >= 1)) throw new Error('--rounds needs a number ≥ 1')
if (only === 'cluster') {
  // `npm run bench -- cluster [--rounds N]`: cluster mode over NATS and PostgreSQL against one node (bench/cluster.ts)
  const { clusterBenchmark } = await import('./cluster.ts')
  await clusterBenchmark()
  process.exit(0)
}
if (only === 'log') {
  // `npm run bench -- log`: the reading log's cost to nats-server alone, by readings per message (bench/log.ts)
  const { logBenchmark } = await import('./log.ts')
  await logBenchmark()
  process.exit(0)
}
if (only === 'backtest') {
  // `npm run bench -- backtest [--influx]`: replaying 30 days of 10,000 residents through a draft rule set (bench/backtest.ts)
  const { backtestBenchmark } = await import('./backtest.ts')
  await backtestBenchmark()
  process.exit(0)
}

/** BENCH_NODE=/path/to/node: plain Aedes and vitalmesh (embedded) also run on that node, side by side (bench/README.md) */
function otherNode (): NodeRuntime | undefined {
  const bin = process.env.BENCH_NODE
  if (!bin) return undefined
  const probe = spawnSync(bin, ['-p', 'process.version + " " + process.versions.modules'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
  if (probe.status !== 0) throw new Error(`BENCH_NODE=${bin} does not run: ${probe.stderr}`)
  const [version, abi] = probe.stdout.trim().split(' ') as [string, string]
  const root = process.env.BENCH_NODE_ROOT ?? ROOT
  if (abi !== process.versions.modules && root === ROOT) {
    throw new Error(`BENCH_NODE is ${version} (ABI ${abi}), this checkout's node_modules are built for ${process.version} (ABI ${process.versions.modules}): set BENCH_NODE_ROOT to a copy built for it, e.g. VITALMESH_LTS_DIR=/tmp/vm-lts scripts/test-on-node-lts.sh true, then BENCH_NODE_ROOT=/tmp/vm-lts`)
  }
  return { bin, root, version }
}
const other = otherNode()

interface Stat { med: number, min: number, max: number }
function stat (xs: number[]): Stat {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (!s.length) return { med: NaN, min: NaN, max: NaN }
  const m = s.length >> 1
  return { med: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! }
}
interface Summary { rate: Stat, cpu: Stat, p50: Stat, p99: Stat, gen: Stat }
const summarize = (rs: LoadResult[]): Summary => ({
  rate: stat(rs.map((r) => r.readings / r.seconds)), cpu: stat(rs.map((r) => r.serverCpuUs)),
  p50: stat(rs.map((r) => r.p50)), p99: stat(rs.map((r) => r.p99)), gen: stat(rs.map((r) => r.generatorCpuUs)),
})
interface Row { server: string, config: string, single: Summary, batched: Summary, alert?: { p50: Stat, p99: Stat, n: number }, rss?: { n: number, kbPerConnection: number } }
const rows: Row[] = []
const num = (x: number, d = 1) => Number.isFinite(x) ? (d === 0 ? Math.round(x).toLocaleString('en-US') : x.toFixed(d)) : '–'
/** median (min–max) */
const f = (x: Stat, d = 1) => Number.isFinite(x.med) ? `${num(x.med, d)} (${num(x.min, d)}–${num(x.max, d)})` : '–'

// the per-device publish rate limit protects a real fleet; the benchmark floods on purpose
// and the alert-latency test opens and resolves one alert 50 times a second on purpose: no flap detection
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '1000000', VITALMESH_PUBLISH_BURST: '1000000', VITALMESH_ALERT_FLAP_COUNT: '0' }
const withInflux = async (): Promise<Server> => {
  const influxd = await startInfluxd()
  const s = await startVitalmesh({ ...UNLIMITED, VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influxd.url, VITALMESH_INFLUX_API: 'v1', VITALMESH_INFLUX_DB: 'vitalmesh', VITALMESH_INFLUX_CREATE_DATABASE: 'true' }, 'vitalmesh (InfluxDB 1.6)')
  return { ...s, config: `${s.config}; influxd 1.6 on this host`, stop: async () => { await s.stop(); await influxd.destroy() } }
}
const profiled: Record<string, string> = process.env.BENCH_CPU_PROF ? { BENCH_NODE_ARGS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF}` } : {}
// with BENCH_NODE, the CPU-goal pair once more on that node
const onOther: (() => Promise<Server>)[] = other ? [() => startPlainAedes(other), () => startVitalmesh({ ...UNLIMITED, ...profiled }, undefined, other)] : []
// `npm run bench -- core`: only plain Aedes and vitalmesh (embedded), the pair the CPU goal compares, and no files written;
// `npm run bench -- anchors`: only the brokers vitalmesh is compared with, no files; mosquitto also with set_tcp_nodelay
// (which made no difference beyond the noise on this machine, so the full run has one mosquitto row)
const starters: (() => Promise<Server>)[] =
  only === 'influx' ? []
    : only === 'core' ? [startPlainAedes, () => startVitalmesh({ ...UNLIMITED, ...profiled }), ...onOther]
      : only === 'anchors' ? [() => startMosquitto(), () => startMosquitto({ nodelay: true }), startPlainAedes, ...(other ? [() => startPlainAedes(other)] : [])]
        : [() => startMosquitto(), startPlainAedes, () => startVitalmesh(UNLIMITED), withInflux, ...onOther]
for (const start of starters) {
  const s = await start()
  try {
    const singles: LoadResult[] = []; const batches: LoadResult[] = []; const alerts: { p50: number, p99: number, n: number }[] = []
    // rounds alternate the loads on one running server; the first round (a cold JIT) counts like the others, the median drops it when it is the slowest
    for (let round = 0; round < ROUNDS; round++) {
      // every round starts with nothing left over from the one before (settled)
      await settled(s)
      singles.push(await load(s, { devices: 20, inflight: 10, seconds: SECONDS, batch: 1 }))
      await settled(s)
      batches.push(await load(s, { devices: 20, inflight: 4, seconds: SECONDS, batch: 30 }))
      await settled(s)
      if (s.resident) alerts.push(await alertLatency(s, { backgroundRate: 5000, alertsPerS: 50, seconds: SECONDS }))
    }
    const row: Row = { server: s.name, config: s.config, single: summarize(singles), batched: summarize(batches) }
    if (alerts.length) row.alert = { p50: stat(alerts.map((a) => a.p50)), p99: stat(alerts.map((a) => a.p99)), n: alerts.reduce((n, a) => n + a.n, 0) }
    // vitalmesh has only the 100 demo devices here; its connection RSS comes from bench/connections.ts (below)
    if (s.devices.length >= 1000 && only !== 'anchors') row.rss = await rssPerConnection(s, 1000)
    rows.push(row)
    console.log(`${s.name}: single ${f(row.single.rate, 0)} readings/s at ${f(row.single.cpu)} µs CPU each (PUBACK p50 ${f(row.single.p50)} ms, p99 ${f(row.single.p99)} ms); batched ${f(row.batched.rate, 0)} readings/s at ${f(row.batched.cpu)} µs${row.alert ? `; publish→alert p50 ${f(row.alert.p50)} ms p99 ${f(row.alert.p99)} ms (${row.alert.n} alerts)` : ''}${row.rss ? `; RSS ${row.rss.kbPerConnection.toFixed(1)} KB per connection (${row.rss.n})` : ''}; load generator ${num(row.single.gen.med)} / ${num(row.batched.gen.med)} µs per reading`)
    console.log(`  how it ran: ${s.config.replace(/\n/g, '\n  ')}`)
  } finally { await s.stop() }
}
console.log(`(median (min–max) of ${ROUNDS} rounds of ${SECONDS} s per load)`)
if (only === 'core' || only === 'anchors') {
  for (const [a, v] of only === 'core' ? [[rows[0], rows[1]], [rows[2], rows[3]]] : []) {
    if (a && v) console.log(`${v.server}: single ${(v.single.cpu.med / a.single.cpu.med).toFixed(2)}× ${a.server} CPU (medians); batched: ${num(v.batched.rate.med, 0)} readings/s`)
  }
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
const vm = rows.find((r) => r.server === 'vitalmesh (embedded)')!
const mosq = rows.find((r) => r.server.startsWith('mosquitto'))
// the targets of issue 18 (this round), each marked met or not with its figure
const goals = [
  ['server CPU per single-reading message ≤ 1.5× plain Aedes', `${(vm.single.cpu.med / aedes.single.cpu.med).toFixed(2)}× (medians)`, vm.single.cpu.med <= 1.5 * aedes.single.cpu.med],
  ...(mosq ? [['the same ≤ 2.5× mosquitto as its users run it', `${(vm.single.cpu.med / mosq.single.cpu.med).toFixed(2)}× (medians)`, vm.single.cpu.med <= 2.5 * mosq.single.cpu.med] as const] : []),
  ['≥ 250,000 readings/s batched on the embedded store', f(vm.batched.rate, 0), vm.batched.rate.med >= 250_000],
  ['p99 publish → alert ≤ 10 ms at 5,000 readings/s', `${f(vm.alert!.p99)} ms`, vm.alert!.p99.med <= 10],
  ['rule evaluation < 2 µs per reading per rule', `${(rules.nsPerReadingPerRule / 1000).toFixed(3)} µs`, rules.nsPerReadingPerRule < 2000],
  ...(drainVsDirect === undefined ? [] : [['InfluxDB 1.6: drain (defaults) ≥ 70% of a direct write (influx.md)', `${Math.round(100 * drainVsDirect)}%`, drainVsDirect >= 0.7] as const]),
] as const
const md = [
  '# vitalmesh benchmarks',
  '',
  `Measured ${new Date().toISOString()} with \`npm run bench\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}. Load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (the machine is shared). One load generator (a small MQTT 3.1.1 client, firmware-sim/lite-client.ts) drives every server the same way: 20 connections, QoS 1, 10 messages in flight each (single readings) or 4 (batches of 30 readings). Each figure is the **median of ${ROUNDS} rounds** of ${SECONDS} s per load, with the min–max in brackets; the rounds alternate single, batched and alert loads on one running server. Server CPU is utime+stime from /proc of the server process.`,
  '',
  '| server | single: readings/s | single: server CPU µs/reading | PUBACK p50 / p99 ms | batched ×30: readings/s | batched: CPU µs/reading | publish→alert p50 / p99 ms (5,000 readings/s) | RSS KB per connection | load generator CPU µs/reading (single / batched, medians) |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.server} | ${f(r.single.rate, 0)} | ${f(r.single.cpu)} | ${num(r.single.p50.med)} / ${f(r.single.p99)} | ${f(r.batched.rate, 0)} | ${f(r.batched.cpu)} | ${r.alert ? `${num(r.alert.p50.med)} / ${f(r.alert.p99)}` : 'n/a'} | ${r.rss ? `${num(r.rss.kbPerConnection)} (${r.rss.n})` : 'see connections.md'} | ${num(r.single.gen.med)} / ${num(r.batched.gen.med)} |`),
  '',
  '## How each server ran',
  '',
  ...rows.flatMap((r) => [`- **${r.server}**: ${r.config}`, '']),
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
const max = Math.max(...rows.map((r) => r.single.cpu.med))
const bars = rows.map((r, i) => {
  const w = (r.single.cpu.med / max) * 460
  return `<text x="10" y="${40 + i * 40}" font-size="13">${r.server}</text><rect x="190" y="${26 + i * 40}" width="${w.toFixed(1)}" height="20" fill="${r.server.startsWith('vitalmesh') ? '#0f6cbd' : '#9ca3af'}"/><text x="${(196 + w).toFixed(1)}" y="${40 + i * 40}" font-size="12">${r.single.cpu.med.toFixed(1)} µs</text>`
}).join('')
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="${60 + rows.length * 40}" font-family="sans-serif"><text x="10" y="16" font-size="14" font-weight="bold">Server CPU per QoS 1 reading (single-reading messages, median of ${ROUNDS} rounds)</text>${bars}</svg>\n`
writeFileSync(join(dir, 'README.md'), md.join('\n'))
writeFileSync(join(dir, 'cpu-per-reading.svg'), svg)
console.log(`written to ${join(dir, 'README.md')} and cpu-per-reading.svg`)

// a quick run of the connection benchmark (2,000 devices); the full one is `npm run bench:connections`
const conn = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'connections.ts'), quick ? '1000' : '2000'], { stdio: 'inherit' })
process.exit(conn.status ?? 1)
