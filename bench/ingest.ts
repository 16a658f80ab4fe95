import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import { startAppProcess, tempDir } from '../test/helpers/proc.ts'

export interface IngestResult { label: string, readings: number, seconds: number, readingsPerS: number, serverCpuUsPerReading: number, clientCpuUsPerReading: number }

function procCpuMs (pid: number): number {
  // utime + stime of the server process, in clock ticks (100 Hz on Linux)
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}

/**
 * One mqtt.js publisher at QoS 1 with `inflight` messages outstanding against a real
 * vitalmesh process: readings/s and server CPU per reading, every reading durable
 * (PUBACK after the group commit).
 */
export async function ingestThroughput (o: { messages: number, batch: number, inflight: number }): Promise<IngestResult> {
  const app = await startAppProcess(tempDir('vm-bench-'), { VITALMESH_LOG_LEVEL: 'info', VITALMESH_PUBLISH_RATE: '100000', VITALMESH_PUBLISH_BURST: '100000' })
  try {
    const d = app.creds.device
    const c = mqtt.connect(`mqtt://127.0.0.1:${app.mqttPort}`, { clientId: d.deviceId, username: d.deviceId, password: d.secret, protocolVersion: 4, reconnectPeriod: 0 })
    await new Promise<void>((res, rej) => { c.once('connect', () => res()); c.once('error', rej) })
    const now = Date.now()
    let seq = 0
    const payload = (): string => {
      if (o.batch === 1) { const s = seq++; return `{"v":1,"seq":${s},"ts":${now - 1_000_000 + s},"hr":${60 + (s % 40)},"sys":${110 + (s % 25)},"dia":${70 + (s % 9)}}` }
      const rs = []
      for (let k = 0; k < o.batch; k++) { const s = seq++; rs.push(`{"seq":${s},"ts":${now - 1_000_000 + s},"hr":${60 + (s % 40)},"sys":${110 + (s % 25)},"dia":${70 + (s % 9)}}`) }
      return `{"v":1,"readings":[${rs.join(',')}]}`
    }
    // warm-up
    for (let i = 0; i < 200; i++) await c.publishAsync(`vitals/${d.deviceId}`, payload(), { qos: 1 })
    const cpu0 = procCpuMs(app.proc.pid!)
    const cli0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await new Promise<void>((resolve, reject) => {
      let sent = 0; let acked = 0
      const send = (): void => {
        if (sent >= o.messages) return
        sent++
        c.publish(`vitals/${d.deviceId}`, payload(), { qos: 1 }, (err) => {
          if (err) return reject(err)
          if (++acked === o.messages) resolve()
          else send()
        })
      }
      for (let i = 0; i < o.inflight; i++) send()
    })
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cpu = procCpuMs(app.proc.pid!) - cpu0
    const cli = process.cpuUsage(cli0)
    await c.endAsync()
    const readings = o.messages * o.batch
    return {
      label: `${o.batch === 1 ? 'single readings' : `batches of ${o.batch}`}, ${o.inflight} in flight`,
      readings, seconds, readingsPerS: readings / seconds,
      serverCpuUsPerReading: (cpu * 1000) / readings,
      clientCpuUsPerReading: (cli.user + cli.system) / readings,
    }
  } finally {
    await app.kill('SIGTERM')
  }
}
