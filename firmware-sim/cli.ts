import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runFleet, type DeviceCredentials } from './fleet.ts'
import { SCENARIOS, type Scenario } from './model.ts'

const HELP = `vitalmesh firmware simulator

  npm run sim -- [--devices 20] [--url mqtt://localhost:1883] [--credentials data/demo-credentials.json]
                 [--interval 2] [--duration 60] [--batch 1] [--seed 1] [--scenario crisis-episodes] [--sim-step S]

  --devices      how many simulated wearables (taken from the credentials file)
  --interval     seconds between two readings of one device
  --duration     seconds to run (Ctrl-C stops earlier)
  --batch        readings per message (1 = single readings)
  --seed         a run with the same seed is the same run
  --scenario     scenario of the first device (the demo resident's): healthy, hypertensive,
                 crisis-episodes, tachycardia-episodes, sustained-tachycardia
  --mix          the other devices' scenarios by weight, e.g. healthy=80,crisis-episodes=10,offline-6h=10
  --spread       spread source addresses over 127.0.0.0/8 (for tens of thousands of devices)
  --sim-step     fast-forward: each reading's timestamp advances S simulated seconds, ending
                 at about now (like a device replaying what it measured while offline)
The first device is the demo resident's; its alerts are printed as they arrive.`

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '20' },
    url: { type: 'string', default: 'mqtt://localhost:1883' },
    credentials: { type: 'string', default: 'data/demo-credentials.json' },
    interval: { type: 'string', default: '2' },
    duration: { type: 'string', default: '60' },
    batch: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    scenario: { type: 'string', default: 'crisis-episodes' },
    'sim-step': { type: 'string' },
    mix: { type: 'string' },
    spread: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) { console.log(HELP); process.exit(0) }

function int (name: string, v: string, min: number): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n < min) { console.error(`--${name} must be a number >= ${min}, got "${v}"`); process.exit(2) }
  return n
}

function parseMix (s: string): Partial<Record<Scenario, number>> {
  const mix: Partial<Record<Scenario, number>> = {}
  for (const part of s.split(',')) {
    const [name, w] = part.split('=')
    if (!SCENARIOS.includes(name as Scenario) || !(Number(w) >= 0)) { console.error(`--mix: "${part}" is not <scenario>=<weight>; scenarios: ${SCENARIOS.join(', ')}`); process.exit(2) }
    mix[name as Scenario] = Number(w)
  }
  return mix
}

let creds: { device: DeviceCredentials, fleet: DeviceCredentials[], resident: { id: string, password: string } }
try {
  creds = JSON.parse(readFileSync(values.credentials, 'utf8'))
} catch (e) {
  console.error(`cannot read credentials from ${values.credentials}: ${(e as Error).message}\nStart vitalmesh first (npm start): it writes the demo credentials there.`)
  process.exit(2)
}
if (!SCENARIOS.includes(values.scenario as Scenario)) { console.error(`--scenario must be one of ${SCENARIOS.join(', ')}`); process.exit(2) }
const want = int('devices', values.devices, 1)
const all = [creds.device, ...creds.fleet]
if (want > all.length) console.error(`only ${all.length} device credentials in ${values.credentials}; simulating ${all.length}`)
const devices = all.slice(0, want)

console.log(`sim: ${devices.length} devices -> ${values.url}, a reading every ${values.interval} s each, for ${values.duration} s (seed ${values.seed})`)
const stats = await runFleet({
  url: values.url,
  devices,
  intervalS: int('interval', values.interval, 0.01),
  durationS: int('duration', values.duration, 1),
  batch: int('batch', values.batch, 1),
  seed: int('seed', values.seed, 0),
  firstScenario: values.scenario as Scenario,
  ...(values['sim-step'] ? { simStepS: int('sim-step', values['sim-step'], 0.001) } : {}),
  ...(values.mix ? { mix: parseMix(values.mix) } : {}),
  spreadAddresses: values.spread === true,
  watchAlerts: { residentId: creds.resident.id, password: creds.resident.password },
  onProgress: (s) => console.log(`sim: ${s.elapsedS.toFixed(0)} s, ${s.connected} connected, ${s.sent} readings sent, ${s.acked} acknowledged, ${s.buffered} buffered, ${s.errors} device errors, ${s.localWarnings} local warnings, ${s.alerts} alerts for ${creds.resident.id}, generator CPU ${s.generatorCpuMs} ms`),
  onAlert: (topic, body) => {
    try {
      const a = JSON.parse(body) as { severity: string, state: string, message: string }
      console.log(`ALERT ${topic} [${a.severity}, ${a.state}] ${a.message}`)
    } catch { console.log(`ALERT ${topic} ${body}`) }
  },
})
console.log(`sim: done in ${stats.elapsedS.toFixed(1)} s: ${stats.sent} readings sent, ${stats.acked} acknowledged, ${stats.buffered} still buffered, ${stats.offlineBuffered} held by devices still offline, ${stats.dropped} dropped from full buffers, ${stats.duplicatesSent} resent as duplicates, ${stats.reconnects} reconnects, ${stats.localWarnings} local warnings, ${stats.errors} device errors${Object.keys(stats.errorsByCode).length ? ' ' + JSON.stringify(stats.errorsByCode) : ''}, ${stats.alerts} alerts received by ${creds.resident.id}; load generator CPU ${stats.generatorCpuMs} ms`)
// a reading the server refused (e.g. a drifted clock) was acknowledged too: MQTT has no negative PUBACK
process.exit(stats.buffered === 0 ? 0 : 1)
