import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { availableParallelism, cpus, loadavg } from 'node:os'
import type { StoredReading } from '../core/index.ts'
import { EmbeddedStore, InfluxStore, type TelemetryStore } from '../ingest/index.ts'
import { BUILTIN_RULE_SETS, RuleSetDocSchema, backtest, backtestInWorkers, replayFields, residentsFromStore, type BacktestReport, type BacktestOptions, type ResidentProfile } from '../alerting/index.ts'
import { makePerson, measure, prng, type Scenario } from '../firmware-sim/model.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'
import { tempDir } from '../test/helpers/proc.ts'

/**
 * `npm run bench -- backtest [--residents 10000] [--days 30] [--workers N] [--influx [--influx-residents M]]`:
 * 30 days of readings of 10,000 residents at one reading per 15 minutes (28.8 M) written
 * straight into an embedded store through its bulk write (not through MQTT), then a backtest
 * of a draft of acc-aha-2017 against the active 1.0.0, timed: in one thread, and in N worker
 * threads (default: one per core). BENCH_BACKTEST_DIR keeps the store for the next run (the
 * write takes minutes). `--influx` writes the first M residents (default all) into a Debian
 * influxd and times the same backtest through InfluxStore.queryRange.
 */
const arg = (name: string, dflt: number): number => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : dflt }
const RESIDENTS = arg('residents', 10_000)
const DAYS = arg('days', 30)
const WORKERS = arg('workers', availableParallelism())
const INFLUX_RESIDENTS = Math.min(RESIDENTS, arg('influx-residents', RESIDENTS))
const EVERY_MIN = 15
const DAY = 86_400_000
const TO = Math.floor(Date.UTC(2026, 5, 1) / DAY) * DAY
const FROM = TO - DAYS * DAY
const PER_RESIDENT = DAYS * 1440 / EVERY_MIN
const SCENARIOS: Scenario[] = ['healthy', 'healthy', 'healthy', 'healthy', 'hypertensive', 'hypertensive', 'crisis-episodes', 'tachycardia-episodes']

const profiles: ResidentProfile[] = Array.from({ length: RESIDENTS }, (_, i) => ({ id: `res-${String(i).padStart(5, '0')}`, birthYear: 1940 + (i % 60), conditions: [], region: `county-${i % 4}` }))

/** one resident's readings: the firmware simulator's physiology (circadian swing, activity, noise, scenario), seeded */
function readingsOf (i: number): StoredReading[] {
  const rand = prng(1000 + i)
  const person = makePerson(rand, SCENARIOS[i % SCENARIOS.length]!)
  const id = profiles[i]!.id
  const out: StoredReading[] = new Array(PER_RESIDENT)
  for (let n = 0; n < PER_RESIDENT; n++) {
    const ts = FROM + n * EVERY_MIN * 60_000 + Math.floor(rand() * 30_000)
    const m = measure(person, ts, rand, n)
    out[n] = { deviceId: `dev-${id.slice(4)}`, residentId: id, seq: n, ts, hr: m.hr, sys: m.sys, dia: m.dia, activity: m.activity, motion: m.motion }
  }
  return out
}

async function fill (store: TelemetryStore, label: string, batchResidents: number, concurrency = 1, residents = RESIDENTS): Promise<number> {
  const t0 = performance.now()
  let next = 0
  let written = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < residents) {
      const from = next; next += batchResidents
      const rows: StoredReading[] = []
      for (let i = from; i < Math.min(from + batchResidents, residents); i++) for (const r of readingsOf(i)) rows.push(r)
      await store.write(rows)
      written += rows.length
      if ((from / batchResidents) % 20 === 0) process.stderr.write(`\r${label}: ${written.toLocaleString('en')} readings written (${Math.round(written / ((performance.now() - t0) / 1000)).toLocaleString('en')}/s)   `)
    }
  }))
  process.stderr.write('\n')
  return (performance.now() - t0) / 1000
}

const draft = RuleSetDocSchema.parse({ ...BUILTIN_RULE_SETS.find((d) => d.id === 'acc-aha-2017')!, version: '1.1.0-draft' })
draft.rules = draft.rules.map((r) => r.kind === 'classification' ? { ...r, alertOn: { stage1: 'info', ...r.alertOn }, clear: { ...r.clear, holdDownS: 900 } } : r)
const active = BUILTIN_RULE_SETS.find((d) => d.id === 'acc-aha-2017')!

/** waits until a process has used less than 5 % of a core for 5 s in a row (at most 10 min); returns the seconds waited */
async function settle (pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0
  const t0 = performance.now()
  const cpu = (): number => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) / 100 }
  let quiet = 0
  let last = cpu()
  while (quiet < 5 && performance.now() - t0 < 600_000) {
    await new Promise((res) => setTimeout(res, 1000))
    const now = cpu()
    quiet = now - last < 0.05 ? quiet + 1 : 0
    last = now
  }
  return (performance.now() - t0) / 1000
}

interface Timed { seconds: number, cpuS: number, rssMb: number, report?: BacktestReport, readings: number, load: string }

const load = (): string => loadavg().map((l) => l.toFixed(1)).join(' ')
const strip = (r: BacktestReport): string => JSON.stringify({ ...r, elapsedMs: 0 })

/**
 * One timed run: `read` the readings only (replayRange where the store has it, else
 * queryRange), a backtest in this `thread`, or one in `workers` threads reading the file.
 * CPU is the whole process's (process.cpuUsage counts every thread).
 */
async function timed (store: TelemetryStore, how: 'read' | 'thread' | 'workers', lookahead: number, residents = profiles): Promise<Timed> {
  const c0 = process.cpuUsage(); const t0 = performance.now()
  let readings = 0
  let report: BacktestReport | undefined
  const o: BacktestOptions = { from: FROM, to: TO, k: 5, progress: (p) => { if (p.residents % 1000 === 0) process.stderr.write(`\r  ${p.residents} residents, ${p.readings.toLocaleString('en')} readings `) } }
  if (how === 'workers') {
    report = await backtestInWorkers(draft, active, (store as EmbeddedStore).file, residents, o, WORKERS)
    readings = report.population.readings ?? 0
  } else {
    const src = residentsFromStore(store, residents, FROM, TO, { lookahead, fields: replayFields([draft, active]) })
    if (how === 'thread') {
      report = await backtest(draft, active, src, o)
      readings = report.population.readings ?? 0
    } else {
      for await (const r of src) for await (const pg of r.pages) readings += pg.length
    }
  }
  process.stderr.write('\n')
  const c = process.cpuUsage(c0)
  return { seconds: (performance.now() - t0) / 1000, cpuS: (c.user + c.system) / 1e6, rssMb: Math.round(process.memoryUsage().rss / 1048576), readings, load: load(), ...(report ? { report } : {}) }
}

export async function backtestBenchmark (): Promise<void> {
  const keep = process.env.BENCH_BACKTEST_DIR
  const dir = keep ?? tempDir('vm-backtest-')
  mkdirSync(dir, { recursive: true })
  const meta = JSON.stringify({ RESIDENTS, DAYS, EVERY_MIN, TO, v: 1 })
  const metaFile = join(dir, 'meta.json')
  const fresh = !(existsSync(metaFile) && readFileSync(metaFile, 'utf8') === meta)
  // a kept store of other dimensions (--residents, --days) took minutes to write: not deleted here
  if (fresh && keep && existsSync(join(dir, 'telemetry.db'))) throw new Error(`${dir} holds a store written with other dimensions (${existsSync(metaFile) ? readFileSync(metaFile, 'utf8') : 'no meta.json'}); use another BENCH_BACKTEST_DIR, or delete it yourself`)
  if (fresh) { rmSync(join(dir, 'telemetry.db'), { force: true }); rmSync(join(dir, 'telemetry.db-wal'), { force: true }) }
  const store = new EmbeddedStore(join(dir, 'telemetry.db'))
  let writeS: number | undefined
  if (fresh) {
    writeS = await fill(store, 'embedded', 10)
    writeFileSync(metaFile, meta)
  }
  if (process.argv.includes('--prepare')) { await store.close(); console.log(`store prepared in ${dir}`); return } // write the data only (with BENCH_BACKTEST_DIR)
  console.log(`embedded store: ${RESIDENTS} residents × ${DAYS} days × 1 reading / ${EVERY_MIN} min = ${(RESIDENTS * PER_RESIDENT).toLocaleString('en')} readings${writeS ? `, written in ${writeS.toFixed(0)} s` : ' (kept from an earlier run)'}`)
  const loadBefore = load()
  const read = await timed(store, 'read', 1)
  console.log(`embedded, reading only (replayRange per resident, one thread): ${read.seconds.toFixed(1)} s, ${read.cpuS.toFixed(1)} s CPU, ${read.readings.toLocaleString('en')} readings; load average ${read.load}`)
  const thread = await timed(store, 'thread', 1)
  console.log(`embedded, backtest (draft and active) in one thread: ${thread.seconds.toFixed(1)} s, ${thread.cpuS.toFixed(1)} s CPU; load average ${thread.load}`)
  const full = await timed(store, 'workers', 1)
  console.log(`embedded, backtest in ${WORKERS} worker threads: ${full.seconds.toFixed(1)} s, ${full.cpuS.toFixed(1)} s CPU, RSS ${full.rssMb} MB; load average ${full.load}`)
  if (strip(full.report!) !== strip(thread.report!)) throw new Error('the backtest in worker threads gave another report than the one in one thread')
  await store.close()

  let influx: { write: number, settled: number, read: Timed, full: Timed, residents: number, sameAsEmbedded: boolean } | undefined
  if (process.argv.includes('--influx')) {
    const influxd = await startInfluxd()
    try {
      const s = new InfluxStore({ api: 'v1', url: influxd.url, db: 'bench', timeoutMs: 120_000, createDatabase: true }, () => ({ region: 'county-1', model: 'watch' }))
      await s.write([])
      const some = profiles.slice(0, INFLUX_RESIDENTS)
      const write = await fill(s, 'influx', 2, 4, INFLUX_RESIDENTS)
      const settled = await settle(influxd.pid())
      console.log(`influx: idle ${settled.toFixed(0)} s after the write (compactions), then timed`)
      const r = await timed(s, 'read', 4, some)
      console.log(`influx (${INFLUX_RESIDENTS} residents), reading only: ${r.seconds.toFixed(1)} s, ${r.cpuS.toFixed(1)} s CPU of vitalmesh`)
      const f = await timed(s, 'thread', 4, some)
      console.log(`influx (${INFLUX_RESIDENTS} residents), backtest: ${f.seconds.toFixed(1)} s, ${f.cpuS.toFixed(1)} s CPU of vitalmesh`)
      // the same residents from the embedded store, for the same report
      const e = new EmbeddedStore(join(dir, 'telemetry.db'))
      const ref = INFLUX_RESIDENTS === RESIDENTS ? full.report! : (await timed(e, 'thread', 1, some)).report!
      await e.close()
      influx = { write, settled, read: r, full: f, residents: INFLUX_RESIDENTS, sameAsEmbedded: strip(ref) === strip(f.report!) }
      if (!influx.sameAsEmbedded) console.log('influx: the report differs from the embedded store\'s for the same residents')
      await s.close()
    } finally { await influxd.destroy() }
  }
  if (!keep) rmSync(dir, { recursive: true, force: true })

  const rep = full.report!
  const cell = (c: { alerts: number | null, per1000ResidentDays: number | null }): string => c.alerts === null ? 'suppressed' : `${c.alerts} (${c.per1000ResidentDays})`
  const rate = (t: Timed): string => Math.round(t.readings / t.seconds).toLocaleString('en')
  const scale = RESIDENTS / (influx?.residents ?? RESIDENTS)
  const cmd = `npm run bench -- backtest${process.argv.slice(2).filter((a) => a !== 'backtest').map((a) => ` ${a}`).join('')}`
  const md = [
    '# Backtest of a draft rule set',
    '',
    `Measured ${new Date().toISOString()} with \`${keep ? `BENCH_BACKTEST_DIR=${keep} ` : ''}${cmd}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average (1, 5, 15 min) before ${loadBefore}, after each run in the table, at the end ${load()} (the machine is shared with other developers: wall time depends on what else runs, CPU seconds much less).`,
    '',
    `Data: ${RESIDENTS.toLocaleString('en')} residents × ${DAYS} days × one reading per ${EVERY_MIN} minutes = ${(RESIDENTS * PER_RESIDENT).toLocaleString('en')} readings, from the firmware simulator's physiology (firmware-sim/model.ts: healthy, hypertensive, crisis and tachycardia episodes), seeded, written straight into the store through its bulk write API (\`TelemetryStore.write\`), not through MQTT.${writeS ? ` Written in ${writeS.toFixed(0)} s by this run.` : ' The store was written by an earlier invocation (BENCH_BACKTEST_DIR, `--prepare`); its file is in the page cache.'}`,
    '',
    `Backtest: \`${draft.id}\` ${draft.version} (stage 1 raises an info alert, hold-down 900 s) against the active ${active.version}, both computed in the same pass over the readings, k = 5, timer grid 1 s. On the embedded store readings come through \`EmbeddedStore.replayRange\` (ts and the columns these rule sets read: ${replayFields([draft, active]).join(', ')}), one query per resident (pages of 50,000); "one thread" is \`backtest\` in this process, "${WORKERS} worker threads" is \`backtestInWorkers\` (each its own read-only connection, residents in chunks of 32, counts merged before k-suppression; its report was checked equal to the one thread's). CPU seconds are the whole process's, all threads.`,
    '',
    '| store | what | wall s | CPU s (vitalmesh) | readings/s | load average after |',
    '|---|---|---|---|---|---|',
    `| embedded | reading only (replayRange of every resident, one thread) | ${read.seconds.toFixed(1)} | ${read.cpuS.toFixed(1)} | ${rate(read)} | ${read.load} |`,
    `| embedded | backtest, draft + active, one thread | ${thread.seconds.toFixed(1)} | ${thread.cpuS.toFixed(1)} | ${rate(thread)} | ${thread.load} |`,
    `| embedded | backtest, draft + active, ${WORKERS} worker threads | ${full.seconds.toFixed(1)} | ${full.cpuS.toFixed(1)} | ${rate(full)} | ${full.load} |`,
    ...(influx ? [
      `| InfluxDB 1.6.7 (v1), ${influx.residents.toLocaleString('en')} residents | reading only, 4 residents asked ahead | ${influx.read.seconds.toFixed(1)} | ${influx.read.cpuS.toFixed(1)} | ${rate(influx.read)} | ${influx.read.load} |`,
      `| InfluxDB 1.6.7 (v1), ${influx.residents.toLocaleString('en')} residents | backtest, draft + active, one thread | ${influx.full.seconds.toFixed(1)} | ${influx.full.cpuS.toFixed(1)} | ${rate(influx.full)} | ${influx.full.load} |`,
    ] : []),
    '',
    `Goal: ≤ 60 s on the embedded store for ${(RESIDENTS * PER_RESIDENT).toLocaleString('en')} readings: **${full.seconds <= 60 ? 'met' : 'not met'}** (${full.seconds.toFixed(1)} s in ${WORKERS} worker threads, ${full.cpuS.toFixed(1)} s CPU; one thread ${thread.seconds.toFixed(1)} s). RSS at the end ${full.rssMb} MB.`,
    ...(influx ? ['', `InfluxDB: ${influx.residents.toLocaleString('en')} residents' readings (${influx.full.readings.toLocaleString('en')}) written in ${influx.write.toFixed(0)} s (4 writes of 2 residents' readings in flight); the backtest was timed once influxd had been idle for 5 s in a row, which took ${influx.settled.toFixed(0)} s after the write (its compactions of what was written would otherwise share the cores with the queries); the report ${influx.sameAsEmbedded ? 'is the same as' : '**differs from**'} the embedded store's for the same residents. ${scale > 1 ? `Scaled linearly to ${RESIDENTS.toLocaleString('en')} residents (×${scale.toFixed(1)}; the readings per resident are the same): backtest ≈ ${(influx.full.seconds * scale).toFixed(0)} s wall, ${(influx.full.cpuS * scale).toFixed(0)} s CPU of vitalmesh; goal of ≤ 60 s **${influx.full.seconds * scale <= 60 ? 'met by extrapolation' : 'not met'}**. ` : `Goal of ≤ 60 s: **${influx.full.seconds <= 60 ? 'met' : 'not met'}**. `}What bounds it is the query: influxd answers each resident's InfluxQL range query as JSON, which vitalmesh parses; compare vitalmesh's CPU column with the wall time.`] : []),
    '',
    '## Report (per 1,000 resident-days; alerts and rate)',
    '',
    `Population: ${rep.population.residents} residents, ${rep.population.residentDays} resident-days, ${rep.population.readings} readings.`,
    '',
    '| cell | draft | active | difference |',
    '|---|---|---|---|',
    `| total | ${cell(rep.draft.total)} | ${cell(rep.active!.total)} | ${cell(rep.difference!.total)} |`,
    ...(['info', 'warning', 'critical'] as const).map((s) => `| ${s} | ${cell(rep.draft.bySeverity[s])} | ${cell(rep.active!.bySeverity[s])} | ${cell(rep.difference!.bySeverity[s])} |`),
    `| flapping | ${cell(rep.draft.flapping.total)} | ${cell(rep.active!.flapping.total)} | ${cell(rep.difference!.flapping.total)} |`,
    '',
  ].join('\n')
  const out = join(import.meta.dirname, 'results')
  mkdirSync(out, { recursive: true })
  if (RESIDENTS === 10_000 && DAYS === 30) { writeFileSync(join(out, 'backtest.md'), md); console.log(`written to ${join(out, 'backtest.md')}`) } else console.log(md)
}
