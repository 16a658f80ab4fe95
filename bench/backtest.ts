import { existsSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { cpus, loadavg } from 'node:os'
import type { StoredReading } from '../core/index.ts'
import { EmbeddedStore, InfluxStore, type TelemetryStore } from '../ingest/index.ts'
import { BUILTIN_RULE_SETS, RuleSetDocSchema, backtest, residentsFromStore, type BacktestReport, type ResidentProfile } from '../alerting/index.ts'
import { makePerson, measure, prng, type Scenario } from '../firmware-sim/model.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'
import { tempDir } from '../test/helpers/proc.ts'

/**
 * `npm run bench -- backtest [--residents 10000] [--days 30] [--influx]`: 30 days of readings
 * of 10,000 residents at one reading per 15 minutes (28.8 M) written straight into an
 * embedded store through its bulk write (not through MQTT), then a backtest of a draft of
 * acc-aha-2017 against the active 1.0.0, timed. BENCH_BACKTEST_DIR keeps the store for the
 * next run (the write takes minutes).
 */
const arg = (name: string, dflt: number): number => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : dflt }
const RESIDENTS = arg('residents', 10_000)
const DAYS = arg('days', 30)
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

async function fill (store: TelemetryStore, label: string, batchResidents: number, concurrency = 1): Promise<number> {
  const t0 = performance.now()
  let next = 0
  let written = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < RESIDENTS) {
      const from = next; next += batchResidents
      const rows: StoredReading[] = []
      for (let i = from; i < Math.min(from + batchResidents, RESIDENTS); i++) for (const r of readingsOf(i)) rows.push(r)
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

interface Timed { seconds: number, cpuS: number, rssMb: number, report?: BacktestReport, readings: number }

async function timed (store: TelemetryStore, engine: boolean, lookahead: number): Promise<Timed> {
  const c0 = process.cpuUsage(); const t0 = performance.now()
  let readings = 0
  let report: BacktestReport | undefined
  const src = residentsFromStore(store, profiles, FROM, TO, { lookahead })
  if (engine) {
    report = await backtest(draft, active, src, { from: FROM, to: TO, k: 5, progress: (p) => { if (p.residents % 1000 === 0) process.stderr.write(`\r  ${p.residents} residents, ${p.readings.toLocaleString('en')} readings `) } })
    readings = report.population.readings ?? 0
  } else {
    for await (const r of src) for await (const pg of r.pages) readings += pg.length
  }
  process.stderr.write('\n')
  const c = process.cpuUsage(c0)
  return { seconds: (performance.now() - t0) / 1000, cpuS: (c.user + c.system) / 1e6, rssMb: Math.round(process.memoryUsage().rss / 1048576), readings, ...(report ? { report } : {}) }
}

export async function backtestBenchmark (): Promise<void> {
  const keep = process.env.BENCH_BACKTEST_DIR
  const dir = keep ?? tempDir('vm-backtest-')
  mkdirSync(dir, { recursive: true })
  const meta = JSON.stringify({ RESIDENTS, DAYS, EVERY_MIN, TO, v: 1 })
  const metaFile = join(dir, 'meta.json')
  const fresh = !(existsSync(metaFile) && readFileSync(metaFile, 'utf8') === meta)
  if (fresh) { rmSync(join(dir, 'telemetry.db'), { force: true }); rmSync(join(dir, 'telemetry.db-wal'), { force: true }) }
  const store = new EmbeddedStore(join(dir, 'telemetry.db'))
  let writeS: number | undefined
  if (fresh) {
    writeS = await fill(store, 'embedded', 10)
    writeFileSync(metaFile, meta)
  }
  if (process.argv.includes('--prepare')) { await store.close(); console.log(`store prepared in ${dir}`); return } // write the data only (with BENCH_BACKTEST_DIR)
  console.log(`embedded store: ${RESIDENTS} residents × ${DAYS} days × 1 reading / ${EVERY_MIN} min = ${(RESIDENTS * PER_RESIDENT).toLocaleString('en')} readings${writeS ? `, written in ${writeS.toFixed(0)} s` : ' (kept from an earlier run)'}`)
  const read = await timed(store, false, 1)
  console.log(`embedded, reading only (queryRange per resident): ${read.seconds.toFixed(1)} s, ${read.cpuS.toFixed(1)} s CPU, ${read.readings.toLocaleString('en')} readings`)
  const full = await timed(store, true, 1)
  console.log(`embedded, backtest (draft and active): ${full.seconds.toFixed(1)} s, ${full.cpuS.toFixed(1)} s CPU, RSS ${full.rssMb} MB`)
  await store.close()

  let influx: { write: number, read: Timed, full: Timed } | undefined
  if (process.argv.includes('--influx')) {
    const influxd = await startInfluxd()
    try {
      const s = new InfluxStore({ api: 'v1', url: influxd.url, db: 'bench', timeoutMs: 120_000, createDatabase: true }, () => ({ region: 'county-1', model: 'watch' }))
      await s.write([])
      const write = await fill(s, 'influx', 2, 4)
      const r = await timed(s, false, 4)
      console.log(`influx, reading only: ${r.seconds.toFixed(1)} s, ${r.cpuS.toFixed(1)} s CPU of vitalmesh`)
      const f = await timed(s, true, 4)
      console.log(`influx, backtest: ${f.seconds.toFixed(1)} s, ${f.cpuS.toFixed(1)} s CPU of vitalmesh`)
      influx = { write, read: r, full: f }
      await s.close()
    } finally { await influxd.destroy() }
  }
  if (!keep) rmSync(dir, { recursive: true, force: true })

  const rep = full.report!
  const cell = (c: { alerts: number | null, per1000ResidentDays: number | null }): string => c.alerts === null ? 'suppressed' : `${c.alerts} (${c.per1000ResidentDays})`
  const md = [
    '# Backtest of a draft rule set',
    '',
    `Measured ${new Date().toISOString()} with \`npm run bench -- backtest${process.argv.includes('--influx') ? ' --influx' : ''}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')} (the machine is shared with other developers).`,
    '',
    `Data: ${RESIDENTS.toLocaleString('en')} residents × ${DAYS} days × one reading per ${EVERY_MIN} minutes = ${(RESIDENTS * PER_RESIDENT).toLocaleString('en')} readings, from the firmware simulator's physiology (firmware-sim/model.ts: healthy, hypertensive, crisis and tachycardia episodes), seeded, written straight into the store through its bulk write API (\`TelemetryStore.write\`), not through MQTT. The store's file is in the page cache when the backtest runs (it was just written).`,
    '',
    `Backtest: \`${draft.id}\` ${draft.version} (stage 1 raises an info alert, hold-down 900 s) against the active ${active.version}, both computed in the same pass over the readings, k = 5, timer grid 1 s. Readings come through \`TelemetryStore.queryRange\`, one resident at a time (pages of 50,000).`,
    '',
    '| store | what | wall s | CPU s (vitalmesh) | readings/s |',
    '|---|---|---|---|---|',
    `| embedded | reading only (queryRange of every resident) | ${read.seconds.toFixed(1)} | ${read.cpuS.toFixed(1)} | ${Math.round(read.readings / read.seconds).toLocaleString('en')} |`,
    `| embedded | backtest, draft + active | ${full.seconds.toFixed(1)} | ${full.cpuS.toFixed(1)} | ${Math.round(full.readings / full.seconds).toLocaleString('en')} |`,
    ...(influx ? [
      `| InfluxDB 1.6.7 (v1) | reading only, 4 residents asked ahead | ${influx.read.seconds.toFixed(1)} | ${influx.read.cpuS.toFixed(1)} | ${Math.round(influx.read.readings / influx.read.seconds).toLocaleString('en')} |`,
      `| InfluxDB 1.6.7 (v1) | backtest, draft + active | ${influx.full.seconds.toFixed(1)} | ${influx.full.cpuS.toFixed(1)} | ${Math.round(influx.full.readings / influx.full.seconds).toLocaleString('en')} |`,
    ] : []),
    '',
    `Goal: ≤ 60 s on the embedded store for 28.8 M readings: **${full.seconds <= 60 ? 'met' : 'not met'}** (${full.seconds.toFixed(1)} s; the engine's share is the backtest minus reading only, ${(full.seconds - read.seconds).toFixed(1)} s). RSS at the end ${full.rssMb} MB.`,
    ...(influx ? ['', `InfluxDB: written in ${influx.write.toFixed(0)} s (4 writes of 2 residents' readings in flight). What bounds the backtest there is the query: influxd answers each resident's InfluxQL range query as JSON, which vitalmesh parses; see the CPU column (vitalmesh's) against the wall time.`] : []),
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
