import { writeFileSync, readFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { cpus } from 'node:os'
import { runFleet, type DeviceCredentials } from '../firmware-sim/fleet.ts'
import { startAppProcess, run, tempDir, ROOT } from '../test/helpers/proc.ts'
import { rssKb } from './brokers.ts'

/**
 * Soak (not in CI): `npm run soak -- --minutes 30 --devices 10000 --rate 5000`. Provisions the
 * devices, drives them with the firmware simulator, samples the node every 10 s (RSS,
 * event-loop delay, spool rows, readings/s) and reports whether memory stays flat.
 */
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, devices: { type: 'string', default: '10000' }, rate: { type: 'string', default: '5000' } } })
const minutes = Number(values.minutes); const n = Number(values.devices); const rate = Number(values.rate)
const dataDir = tempDir('vm-soak-')

// provision n devices (one resident each) with the operator CLI, as an operator would
const csv = join(dataDir, 'fleet.csv')
writeFileSync(csv, 'id,residentId,model,region\n' + Array.from({ length: n }, (_, i) => `soak-${i},soak-res-${i},sim-watch,county-soak`).join('\n') + '\n')
const boot = await startAppProcess(dataDir)
await boot.kill('SIGTERM')
console.log(`soak: provisioning ${n} devices...`)
const imp = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'devices', 'import', csv, '--create-residents', '--secrets-out', join(dataDir, 'secrets.csv')], 3_600_000, { VITALMESH_DATA_DIR: dataDir })
if (imp.code !== 0) { console.error(imp.stderr.slice(-2000)); process.exit(1) }
const secrets = new Map(readFileSync(join(dataDir, 'secrets.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',') as [string, string]))
const devices: DeviceCredentials[] = Array.from({ length: n }, (_, i) => ({ deviceId: `soak-${i}`, residentId: `soak-res-${i}`, secret: secrets.get(`soak-${i}`)! }))

// BENCH_NODE_ARGS, e.g. `--heapsnapshot-signal=SIGUSR2`, goes to the node (for investigating memory)
const app = await startAppProcess(dataDir, { VITALMESH_MAX_CONNECTIONS_PER_ADDRESS: '0', VITALMESH_LOG_LEVEL: 'info', ...(process.env.BENCH_NODE_ARGS ? { BENCH_NODE_ARGS: process.env.BENCH_NODE_ARGS } : {}) })
console.log(`soak: node pid ${app.proc.pid}`)
const samples: { t: number, rssMb: number, loopP99Ms: number, spoolRows: number, readingsPerS: number, clients: number }[] = []
const t0 = Date.now()
const sampler = setInterval(async () => {
  try {
    const s = await (await fetch(`http://127.0.0.1:${app.httpPort}/v1/stats`, { headers: { authorization: `Bearer ${app.creds.apiKeys.operator}` } })).json() as { eventLoopDelayP99Ms: number, spoolRows: number, readingsPerS: number, mqttClients: number }
    const row = { t: Math.round((Date.now() - t0) / 1000), rssMb: Math.round(rssKb(app.proc.pid!) / 1024), loopP99Ms: s.eventLoopDelayP99Ms, spoolRows: s.spoolRows, readingsPerS: s.readingsPerS, clients: s.mqttClients }
    samples.push(row)
    console.log(`soak: ${row.t} s, RSS ${row.rssMb} MB, event-loop p99 ${row.loopP99Ms} ms, spool ${row.spoolRows} rows, ${row.readingsPerS} readings/s, ${row.clients} clients`)
  } catch (e) { console.error('soak: sample failed', (e as Error).message) }
}, 10_000)
const stats = await runFleet({ url: `mqtt://127.0.0.1:${app.mqttPort}`, devices, intervalS: n / rate, durationS: minutes * 60, seed: 1, batch: 1, spreadAddresses: true, firstScenario: 'healthy', mix: { healthy: 1 } })
clearInterval(sampler)
await app.kill('SIGTERM')

// flat memory, judged on the load only (from the first sample with readings flowing): the lowest RSS
// of the last third (after a collection) within 10% of the middle third's. RSS swings by hundreds of
// MB between collections, so single samples and means of a saw-tooth say little about growth.
const loaded = samples.slice(Math.max(0, samples.findIndex((x) => x.readingsPerS > 0)))
const third = Math.floor(loaded.length / 3)
const floor = (xs: typeof samples) => Math.min(...xs.map((x) => x.rssMb))
const first = floor(loaded.slice(third, 2 * third)); const last = floor(loaded.slice(2 * third))
const flat = loaded.length >= 3 && last <= first * 1.1
const md = [
  `# Soak: ${minutes} min, ${n} devices, ${rate} readings/s`,
  '',
  `Run ${new Date().toISOString()} with \`npm run soak -- --minutes ${minutes} --devices ${n} --rate ${rate}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}.`,
  `Sent ${stats.sent}, acknowledged ${stats.acked}, still buffered ${stats.buffered}, reconnects ${stats.reconnects}, device errors ${stats.errors}; load generator CPU ${stats.generatorCpuMs} ms.`,
  '',
  `Device errors by code: ${JSON.stringify(stats.errorsByCode)}.`,
  '',
  `**Memory ${flat ? 'stays flat' : 'grows'}** under load: lowest RSS ${first} MB in the middle third of the loaded samples, ${last} MB in the last third.`,
  '',
  '| t (s) | RSS MB | event-loop p99 ms | spool rows | readings/s | MQTT clients |',
  '|---|---|---|---|---|---|',
  ...samples.map((s) => `| ${s.t} | ${s.rssMb} | ${s.loopP99Ms} | ${s.spoolRows} | ${s.readingsPerS} | ${s.clients} |`),
  '',
]
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
const out = join(ROOT, 'bench', 'results', `soak-${minutes}min-${n}dev.md`)
writeFileSync(out, md.join('\n'))
console.log(`soak: memory ${flat ? 'flat' : 'GROWING'}; report in ${out}`)
process.exit(flat ? 0 : 1)
