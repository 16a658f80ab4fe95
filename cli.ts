import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { availableParallelism } from 'node:os'
import { parse as parseYaml } from 'yaml'
import { loadConfig, openDatabase, systemClock, type Config } from './core/index.ts'
import { Registry, AuditLog, Fleet, ensureDemo, devicesCommand, DEVICES_HELP } from './registry/index.ts'
import { RuleSetStore, RuleSetDocSchema, backtestFromStore, type BacktestReport, type Cell, type DiffCell } from './alerting/index.ts'
import { EmbeddedStore, InfluxStore, type TelemetryStore } from './ingest/index.ts'

const HELP = `vitalmesh operator commands

  npm run vitalmesh -- demo          create (if needed) and print the demo credentials
  npm run vitalmesh -- audit verify  check the audit log's hash chain; exit 1 at the first broken entry
  npm run vitalmesh -- backtest <rule-set.yaml|json> [--days 30] [--data-dir ./data]
                                     replay the last days of consenting residents' readings through a draft
                                     rule set and the active version of the same id; a k-suppressed table
${DEVICES_HELP}

Settings come from the same environment variables as npm start (VITALMESH_DATA_DIR, ...).`

/** Operator commands. Like main.ts, this is an edge that may read the environment. */
async function main (argv: string[]): Promise<number> {
  const [cmd] = argv
  if (!cmd || cmd === 'help' || cmd === '--help') { console.log(HELP); return 0 }
  const config = loadConfig(process.env)
  const dataDirFlag = argv.indexOf('--data-dir')
  const dataDir = resolve(dataDirFlag > 0 && argv[dataDirFlag + 1] ? argv[dataDirFlag + 1]! : config.dataDir)
  if (cmd === 'backtest') return backtestCommand(config, dataDir, argv.slice(1))
  if (cmd === 'demo') {
    const db = openDatabase(join(dataDir, 'vitalmesh.db'))
    try {
      const file = join(dataDir, 'demo-credentials.json')
      const { credentials: c } = await ensureDemo(new Registry(db), file)
      console.log(`demo credentials (${file}):
  resident  ${c.resident.id}  MQTT password ${c.resident.password}
  device    ${c.device.deviceId}  secret ${c.device.secret}  (bound to ${c.device.residentId})
  API keys  operator ${c.apiKeys.operator}
            resident ${c.apiKeys.resident}
  fleet     ${c.fleet.length} more devices for npm run sim

try:
  mosquitto_sub -h localhost -p ${config.mqtt.port} -i ${c.resident.id} -u ${c.resident.id} -P '${c.resident.password}' -q 1 -t 'alerts/${c.resident.id}/#' -t 'alerts/${c.resident.id}' -v
  mosquitto_pub -h localhost -p ${config.mqtt.port} -i ${c.device.deviceId} -u ${c.device.deviceId} -P '${c.device.secret}' -q 1 -t vitals/${c.device.deviceId} -m "{\\"v\\":1,\\"seq\\":$(date +%s),\\"ts\\":$(date +%s%3N),\\"sys\\":190,\\"dia\\":115,\\"hr\\":88}"
  curl -H 'Authorization: Bearer ${c.apiKeys.resident}' http://localhost:${config.http.port}/v1/residents/${c.resident.id}/readings`)
    } finally { db.close() }
    return 0
  }
  if (cmd === 'audit' && argv[1] === 'verify') {
    const db = openDatabase(join(dataDir, 'vitalmesh.db'))
    try {
      const r = new AuditLog(db, systemClock).verify()
      if (r.ok) { console.log(`audit log intact: ${r.entries} entries`); return 0 }
      console.error(`audit log BROKEN at entry ${r.brokenAt}: ${r.reason} (${r.entries} entries before it verified)`)
      return 1
    } finally { db.close() }
  }
  if (cmd === 'devices') {
    const db = openDatabase(join(dataDir, 'vitalmesh.db'))
    try {
      return await devicesCommand(new Fleet(new Registry(db), systemClock), argv.slice(1), { log: (s) => console.log(s), error: (s) => console.error(s) })
    } finally { db.close() }
  }
  console.error(`unknown command "${cmd}"\n\n${HELP}`)
  return 2
}

/** `backtest <file> [--days N]`: what POST /v1/rulesets/backtest does, on this node's data directory, as a table. */
async function backtestCommand (config: Config, dataDir: string, args: string[]): Promise<number> {
  const flag = (name: string): string | undefined => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined }
  const file = args.find((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')))
  const days = Number(flag('days') ?? 30)
  if (!file) { console.error('usage: npm run vitalmesh -- backtest <rule-set.yaml|json> [--days 30] [--data-dir ./data]'); return 2 }
  if (!Number.isInteger(days) || days < 1 || days > 90) { console.error('--days is a whole number of days from 1 to 90'); return 2 }
  let input: unknown
  try { input = parseYaml(readFileSync(file, 'utf8')) } catch (e) { console.error(`${file}: ${(e as Error).message}`); return 1 } // YAML reads JSON too
  const parsed = RuleSetDocSchema.safeParse(input)
  if (!parsed.success) {
    console.error(`${file} does not match the rule-set schema (VM_INVALID_RULE_SET):`)
    for (const i of parsed.error.issues) console.error(`  ${i.path.join('.') || 'document'}: ${i.message}`)
    return 1
  }
  const draft = parsed.data
  const db = openDatabase(join(dataDir, 'vitalmesh.db'))
  const store: TelemetryStore = config.store.kind === 'influx' ? new InfluxStore(config.store.influx) : new EmbeddedStore(join(dataDir, 'telemetry.db'))
  try {
    const registry = new Registry(db)
    const active = new RuleSetStore(db).active().find((x) => x.id === draft.id)
    const residents = registry.researchConsenting().map((r) => ({ id: r.id, birthYear: r.birthYear, conditions: r.conditions, region: r.region }))
    console.error(`replaying ${days} days of ${residents.length} consenting residents through ${draft.id} ${draft.version}${active ? ` and the active ${active.version}` : ' (no version of it is active)'} (${store.kind} store)`)
    const t0 = Date.now()
    const report = await backtestFromStore({
      draft, active, store, residents, days, now: Date.now(), k: config.forwarder.k,
      alerting: { tickMs: config.alerting.tickMs, flapCount: config.alerting.flapCount, flapWindowS: config.alerting.flapWindowS, liveHorizonS: config.alerting.liveHorizonS },
      overrides: (id) => new Map(registry.overrides(id).map((o) => [o.ruleKey, o.params])),
      lookahead: config.store.kind === 'influx' ? 4 : 1,
      // the embedded store: residents split across a worker thread per core (InfluxDB is read here: influxd is what bounds it)
      workers: availableParallelism(),
      progress: ({ residents: n, readings }) => { if (n % 500 === 0 || n === residents.length) process.stderr.write(`\r  ${n}/${residents.length} residents, ${readings.toLocaleString('en')} readings, ${((Date.now() - t0) / 1000).toFixed(0)} s `) },
    })
    process.stderr.write('\n')
    new AuditLog(db, systemClock).append(`cli:${process.env.USER ?? 'operator'}`, 'rule-set.backtested', `${draft.id}@${draft.version}`, { days, comparedWith: report.comparedWith, residents: report.population.residents, k: report.k, elapsedMs: report.elapsedMs })
    console.log(backtestTable(report))
    return 0
  } finally { await store.close(); db.close() }
}

function backtestTable (r: BacktestReport): string {
  const c = (x: Cell | DiffCell | undefined): string => !x ? '' : x.alerts === null ? 'suppressed' : `${x.alerts} (${x.per1000ResidentDays})`
  const rows: string[][] = [['', `${r.ruleSet.id} ${r.ruleSet.version}`, ...(r.active ? [`active ${r.active.ruleSet.version}`, 'difference'] : [])]]
  const row = (label: string, get: (s: NonNullable<BacktestReport['active']>) => Cell | undefined, diff: (d: NonNullable<BacktestReport['difference']>) => DiffCell | undefined): void => {
    rows.push([label, c(get(r.draft)), ...(r.active ? [c(get(r.active)), c(diff(r.difference!))] : [])])
  }
  row('all alerts', (s) => s.total, (d) => d.total)
  for (const sev of ['critical', 'warning', 'info'] as const) row(`  ${sev}`, (s) => s.bySeverity[sev], (d) => d.bySeverity[sev])
  const rules = [...new Set([...Object.keys(r.draft.byRule), ...Object.keys(r.active?.byRule ?? {})])]
  for (const id of rules) row(`  rule ${id}`, (s) => s.byRule[id], (d) => d.byRule[id])
  row('flapping', (s) => s.flapping.total, (d) => d.flapping.total)
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((x) => (x[i] ?? '').length)))
  const lines = rows.map((x) => x.map((v, i) => i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!)).join('  '))
  const p = r.population
  return [
    `${r.window.from} – ${r.window.to} (${r.window.days} days), k = ${r.k}: ${p.suppressed ? `fewer than ${r.k} residents, everything suppressed` : `${p.residents} residents, ${p.residentDays} resident-days, ${p.readings} readings`}`,
    'alerts (per 1,000 resident-days); "suppressed": from fewer than k residents',
    '',
    ...lines,
    '',
    `${r.elapsedMs} ms`,
  ].join('\n')
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => { console.error(`vitalmesh: ${e.message}`); process.exit(1) })
