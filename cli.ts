import { join, resolve } from 'node:path'
import { loadConfig, openDatabase, systemClock } from './core/index.ts'
import { Registry, AuditLog, Fleet, ensureDemo, devicesCommand, DEVICES_HELP } from './registry/index.ts'

const HELP = `vitalmesh operator commands

  npm run vitalmesh -- demo          create (if needed) and print the demo credentials
  npm run vitalmesh -- audit verify  check the audit log's hash chain; exit 1 at the first broken entry
${DEVICES_HELP}

Settings come from the same environment variables as npm start (VITALMESH_DATA_DIR, ...).`

/** Operator commands. Like main.ts, this is an edge that may read the environment. */
async function main (argv: string[]): Promise<number> {
  const [cmd] = argv
  if (!cmd || cmd === 'help' || cmd === '--help') { console.log(HELP); return 0 }
  const config = loadConfig(process.env)
  const dataDir = resolve(config.dataDir)
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

main(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => { console.error(`vitalmesh: ${e.message}`); process.exit(1) })
