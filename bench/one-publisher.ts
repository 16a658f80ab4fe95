import mqtt from 'mqtt'
import { startAppProcess, tempDir } from '../test/helpers/proc.ts'

/**
 * The figure of the foundation issue: readings/s that ONE mqtt.js publisher gets at QoS 1
 * with 20 messages in flight, every PUBACK after the group commit.
 * `npx tsx bench/one-publisher.ts [messages]`
 */
const N = Number(process.argv[2] ?? 30_000)
const app = await startAppProcess(tempDir('vm-one-'), { VITALMESH_PUBLISH_RATE: '1000000', VITALMESH_PUBLISH_BURST: '1000000' })
const d = app.creds.device
const c = mqtt.connect(`mqtt://127.0.0.1:${app.mqttPort}`, { clientId: d.deviceId, username: d.deviceId, password: d.secret, protocolVersion: 4, reconnectPeriod: 0 })
await new Promise<void>((res, rej) => { c.once('connect', () => res()); c.once('error', rej) })
const t0 = Date.now() - 3_600_000
let seq = 0
const payload = (): string => { const s = seq++; return `{"v":1,"seq":${s},"ts":${t0 + s},"hr":${60 + (s % 40)},"sys":${110 + (s % 25)},"dia":${70 + (s % 9)}}` }
for (let i = 0; i < 500; i++) await c.publishAsync(`vitals/${d.deviceId}`, payload(), { qos: 1 }) // warm-up
const start = process.hrtime.bigint()
await new Promise<void>((resolve, reject) => {
  let sent = 0; let acked = 0
  const send = (): void => {
    if (sent >= N) return
    sent++
    c.publish(`vitals/${d.deviceId}`, payload(), { qos: 1 }, (err) => { if (err) return reject(err); if (++acked === N) resolve(); else send() })
  }
  for (let i = 0; i < 20; i++) send()
})
const s = Number(process.hrtime.bigint() - start) / 1e9
console.log(`one mqtt.js publisher, QoS 1, 20 in flight: ${N} readings in ${s.toFixed(2)} s = ${Math.round(N / s)} readings/s`)
await c.endAsync()
await app.kill('SIGTERM')
process.exit(0)
