import mqtt, { type MqttClient } from 'mqtt'
import { makePerson, measure, prng, type Person, type Scenario } from './model.ts'

export interface DeviceCredentials { deviceId: string, residentId: string, secret: string }

export interface FleetOptions {
  url: string
  devices: DeviceCredentials[]
  /** seconds between two readings of one device */
  intervalS: number
  durationS: number
  seed: number
  /** readings per message (store-and-forward style batches when > 1) */
  batch: number
  /**
   * simulated seconds per reading: readings carry timestamps that advance this much each,
   * ending at about now (a device replaying what it measured while offline, or a fast-forward demo)
   */
  simStepS?: number
  /** scenario of the first device (the demo resident's) */
  firstScenario?: Scenario
  watchAlerts?: { residentId: string, password: string }
  onProgress?(s: FleetStats): void
  onAlert?(topic: string, body: string): void
}

export interface FleetStats { connected: number, sent: number, acked: number, errors: number, alerts: number, elapsedS: number }

interface SimDevice { creds: DeviceCredentials, client: MqttClient, person: Person, seq: number, n: number, rand: () => number }

/** Runs a simulated fleet for a while and returns what happened. */
export async function runFleet (o: FleetOptions): Promise<FleetStats> {
  const stats: FleetStats = { connected: 0, sent: 0, acked: 0, errors: 0, alerts: 0, elapsedS: 0 }
  const start = Date.now()
  const rand = prng(o.seed)
  const sims: SimDevice[] = []
  const scenarios: Scenario[] = ['healthy', 'healthy', 'healthy', 'hypertensive', 'tachycardia-episodes']
  // a real device persists its sequence counter; a time-based start keeps seqs unique across sim runs
  const seqBase = Date.now()
  let watcher: MqttClient | undefined

  if (o.watchAlerts) {
    const w = o.watchAlerts
    watcher = mqtt.connect(o.url, { clientId: `${w.residentId}:sim-watch`, username: w.residentId, password: w.password, protocolVersion: 4, reconnectPeriod: 1000 })
    watcher.on('message', (topic, payload) => { stats.alerts++; o.onAlert?.(topic, payload.toString()) })
    watcher.on('connect', () => { watcher!.subscribe(`alerts/${w.residentId}/#`, { qos: 1 }); watcher!.subscribe(`alerts/${w.residentId}`, { qos: 1 }) })
  }

  await Promise.all(o.devices.map((creds, i) => new Promise<void>((resolve) => {
    const drand = prng(o.seed * 7919 + i)
    const scenario = i === 0 ? (o.firstScenario ?? 'crisis-episodes') : scenarios[Math.floor(rand() * scenarios.length)]!
    const client = mqtt.connect(o.url, {
      clientId: creds.deviceId, username: creds.deviceId, password: creds.secret, protocolVersion: 4,
      // reconnect with back-off and jitter, as firmware would
      reconnectPeriod: 1000 + Math.floor(drand() * 1000), clean: false,
    })
    const sim: SimDevice = { creds, client, person: makePerson(drand, scenario), seq: seqBase, n: 0, rand: drand }
    client.on('connect', () => {
      stats.connected++
      client.subscribe(`devices/${creds.deviceId}/errors`, { qos: 1 })
      resolve()
    })
    client.on('close', () => { if (client.connected === false && stats.connected > 0) stats.connected-- })
    client.on('message', () => { stats.errors++ })
    client.on('error', () => resolve())
    sims.push(sim)
  })))

  const planned = Math.ceil(o.durationS / o.intervalS) * o.batch
  const simStart = o.simStepS ? Date.now() - planned * o.simStepS * 1000 : 0
  const tick = (sim: SimDevice): void => {
    const readings = []
    for (let k = 0; k < o.batch; k++) {
      const t = o.simStepS ? Math.min(Date.now(), simStart + sim.n * o.simStepS * 1000) : Date.now() - (o.batch - 1 - k) * 1000
      const m = measure(sim.person, t, sim.rand, sim.n++)
      readings.push({ seq: sim.seq++, ts: t, ...m })
    }
    const payload = o.batch === 1 ? { v: 1, ...readings[0] } : { v: 1, readings }
    stats.sent += readings.length
    sim.client.publish(`vitals/${sim.creds.deviceId}`, JSON.stringify(payload), { qos: 1 }, (err) => {
      if (!err) stats.acked += readings.length
    })
  }

  const timers = sims.map((sim, i) => {
    // spread the devices over the interval so load is even
    const offset = (i / sims.length) * o.intervalS * 1000
    let interval: NodeJS.Timeout | undefined
    const first = setTimeout(() => { tick(sim); interval = setInterval(() => tick(sim), o.intervalS * 1000) }, offset)
    return () => { clearTimeout(first); if (interval) clearInterval(interval) }
  })
  const progress = setInterval(() => { stats.elapsedS = (Date.now() - start) / 1000; o.onProgress?.({ ...stats }) }, 5000)

  await new Promise<void>((resolve) => {
    const end = setTimeout(resolve, o.durationS * 1000)
    process.once('SIGINT', () => { clearTimeout(end); resolve() })
  })
  timers.forEach((stop) => stop())
  clearInterval(progress)
  // wait briefly for outstanding PUBACKs
  const deadline = Date.now() + 5000
  while (stats.acked < stats.sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  await new Promise((r) => setTimeout(r, 300)) // let the last alerts arrive
  await Promise.all(sims.map((s) => s.client.endAsync()))
  await watcher?.endAsync()
  stats.elapsedS = (Date.now() - start) / 1000
  return stats
}
