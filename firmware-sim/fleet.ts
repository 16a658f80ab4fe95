import { BUILTIN_RULE_SETS, compileRule, type CompiledRule, type RuleSetDoc } from '../alerting/index.ts'
import { LiteClient } from './lite-client.ts'
import { makePerson, measure, prng, type Person, type Scenario } from './model.ts'

export interface DeviceCredentials { deviceId: string, residentId: string, secret: string }

export interface FleetOptions {
  url: string
  devices: DeviceCredentials[]
  /** seconds between two readings of one device */
  intervalS: number
  durationS: number
  /** run until every device has taken this many readings, however long that takes (a loaded machine fires timers late), instead of for durationS */
  ticks?: number
  seed: number
  /** most readings in one message (store-and-forward replays use up to this many; live readings go one by one unless > 1) */
  batch: number
  /**
   * simulated seconds per reading: readings carry timestamps that advance this much each,
   * ending at about now (a device replaying what it measured while offline, or a fast-forward demo)
   */
  simStepS?: number
  /** scenario of the first device (the demo resident's) */
  firstScenario?: Scenario
  /** the other devices' scenarios, by weight (default: mostly healthy) */
  mix?: Partial<Record<Scenario, number>>
  /** readings a device buffers while offline; the oldest are dropped beyond it, as firmware would */
  maxBuffer?: number
  /** spread the devices' source addresses over 127.0.0.0/8 (needed beyond ~28,000 connections) */
  spreadAddresses?: boolean
  watchAlerts?: { residentId: string, password: string }
  onProgress?(s: FleetStats): void
  onAlert?(topic: string, body: string): void
}

export interface FleetStats {
  connected: number, sent: number, acked: number, errors: number, alerts: number, elapsedS: number
  duplicatesSent: number,
  /** of those, readings the server had refused (implausible, invalid): refused again, so not duplicates */ resentRefused: number,
  /** readings whose PUBACK never came (the connection dropped): sent again, so the server may count them as duplicates */ unconfirmed: number, buffered: number, offlineBuffered: number, dropped: number, reconnects: number, localWarnings: number
  errorsByCode: Record<string, number>, generatorCpuMs: number
}

interface Buffered { seq: number, ts: number, json: string }

const DEFAULT_MIX: Partial<Record<Scenario, number>> = { healthy: 70, hypertensive: 12, 'tachycardia-episodes': 6, 'crisis-episodes': 3, 'night-bradycardia': 3, 'clock-drift': 2, 'duplicate-resends': 2, 'offline-6h': 2 }

function pick (rand: () => number, mix: Partial<Record<Scenario, number>>): Scenario {
  const entries = Object.entries(mix) as [Scenario, number][]
  const total = entries.reduce((n, [, w]) => n + w, 0)
  let x = rand() * total
  for (const [s, w] of entries) { x -= w; if (x < 0) return s }
  return entries[0]![0]
}

/**
 * One simulated wearable, behaving like real firmware: it measures on its own schedule,
 * keeps readings in a bounded buffer until the broker acknowledged them (store-and-forward
 * while offline, replayed in batches on reconnect), reconnects with exponential back-off and
 * jitter, resends what a lost PUBACK left unconfirmed, and warns locally when a reading
 * crosses the standards in force (retained `standards/current`).
 */
class Device {
  client: LiteClient
  person: Person
  scenario: Scenario
  seq: number
  n = 0
  buffer: Buffered[] = []
  inflight = 0
  attempt = 0
  offlineUntil = -1
  timer: NodeJS.Timeout | undefined
  standards: CompiledRule[] = []
  stopped = false
  up = false
  /** seqs resent as duplicates, and seqs the server refused (its error replies name them) */
  readonly resent = new Set<number>()
  readonly refused = new Set<number>()

  constructor (readonly creds: DeviceCredentials, readonly index: number, readonly o: FleetOptions, readonly stats: FleetStats, seqBase: number, readonly rand: () => number, scenario: Scenario, readonly simStart: number, host: string, port: number) {
    this.scenario = scenario
    this.person = makePerson(rand, scenario)
    this.seq = seqBase
    this.client = new LiteClient({
      host, port, clientId: creds.deviceId, username: creds.deviceId, password: creds.secret, keepalive: 120,
      ...(o.spreadAddresses ? { localAddress: `127.${1 + ((index >> 16) & 0xff)}.${(index >> 8) & 0xff}.${index & 0xff || 1}` } : {}),
    })
    this.client.onMessage = (topic, payload) => this.message(topic, payload)
    this.client.onClose = () => {
      if (this.up) { this.up = false; this.stats.connected-- }
      if (!this.stopped && this.offlineUntil < 0) this.reconnect()
    }
  }

  async connect (): Promise<void> {
    try {
      await this.client.connect()
      this.attempt = 0
      this.up = true
      this.stats.connected++
      this.client.subscribe(`devices/${this.creds.deviceId}/errors`, 1)
      this.client.subscribe('standards/current', 1)
      this.flush()
    } catch {
      this.reconnect()
    }
  }

  private reconnect (): void {
    if (this.stopped || this.timer) return
    this.inflight = 0
    // exponential back-off with jitter, so a fleet does not reconnect in lock-step after an outage
    const delay = Math.min(60_000, 500 * 2 ** Math.min(this.attempt, 7)) * (0.5 + this.rand())
    this.attempt++
    this.timer = setTimeout(() => { this.timer = undefined; this.stats.reconnects++; void this.connect() }, delay)
  }

  private message (topic: string, payload: Buffer): void {
    if (topic === 'standards/current') {
      try {
        const docs = (JSON.parse(payload.toString()) as { ruleSets: RuleSetDoc[] }).ruleSets
        this.standards = docs.flatMap((d) => d.rules.filter((r) => r.kind === 'classification' || r.kind === 'threshold').map((r) => compileRule(d, r)))
      } catch { /* keep the old standards */ }
      return
    }
    this.stats.errors++
    try {
      const e = JSON.parse(payload.toString()) as { code: string, seq?: number }
      this.stats.errorsByCode[e.code] = (this.stats.errorsByCode[e.code] ?? 0) + 1
      if (typeof e.seq === 'number') this.refused.add(e.seq)
    } catch { /* counted above */ }
  }

  /** One measurement: into the buffer, then (when online) out to the broker. */
  tick (): void {
    const n = this.n++
    const clockNow = this.o.simStepS ? Math.min(Date.now(), this.simStart + n * this.o.simStepS * 1000) : Date.now()
    // clock drift: this device's own clock is 2 minutes fast (accepted), and after a failed
    // time sync 7 minutes fast (refused: more than 5 minutes in the future)
    const ts = this.scenario === 'clock-drift' ? Date.now() + (n < 10 ? 2 : 7) * 60_000 : clockNow
    const m = measure(this.person, clockNow, this.rand, n)
    const reading = { seq: this.seq++, ts, ...m }
    for (const rule of this.standards) if (rule.evaluateOne(reading, {})?.trigger) { this.stats.localWarnings++; break }
    if (this.buffer.length >= (this.o.maxBuffer ?? 10_000)) { this.buffer.shift(); this.stats.dropped++ }
    this.buffer.push({ seq: reading.seq, ts, json: JSON.stringify(reading) })
    // offline for six (simulated) hours, then catches up from its buffer
    if (this.scenario === 'offline-6h' && n === 3) {
      this.offlineUntil = n + Math.ceil((6 * 3600) / (this.o.simStepS ?? this.o.intervalS))
      this.client.end()
    }
    if (this.offlineUntil >= 0 && n >= this.offlineUntil) { this.offlineUntil = -1; void this.connect() }
    this.flush()
  }

  private flush (): void {
    if (!this.client.connected || this.offlineUntil >= 0) return
    const maxInflight = 4
    // what is not yet acknowledged goes out oldest first; a backlog goes in batches
    let start = this.inflight === 0 ? 0 : -1
    if (start < 0) return
    while (this.inflight < maxInflight && start < this.buffer.length) {
      const chunk = this.buffer.slice(start, start + Math.max(1, this.o.batch))
      start += chunk.length
      const payload = chunk.length === 1 ? `{"v":1,${chunk[0]!.json.slice(1)}` : `{"v":1,"readings":[${chunk.map((c) => c.json).join(',')}]}`
      this.inflight++
      this.stats.sent += chunk.length
      this.client.publish(`vitals/${this.creds.deviceId}`, payload, 1, (err) => {
        this.inflight = Math.max(0, this.inflight - 1)
        if (err) { this.stats.unconfirmed += chunk.length; return }
        this.stats.acked += chunk.length
        // acknowledged: exactly these readings leave the buffer
        const done = new Set(chunk.map((c) => c.seq))
        this.buffer = this.buffer.filter((b) => !done.has(b.seq))
        if (this.scenario === 'duplicate-resends' && this.rand() < 0.1) {
          // as after a lost PUBACK: the same readings again; the server must store them once
          // tracked until its PUBACK, like any publish, so the fleet does not stop with it unanswered;
          // counted as sent once acknowledged (a resend lost with its connection may or may not have arrived)
          this.client.publish(`vitals/${this.creds.deviceId}`, payload, 1, (e) => {
            if (e) this.stats.unconfirmed += chunk.length
            else { this.stats.duplicatesSent += chunk.length; for (const c of chunk) this.resent.add(c.seq) }
          })
        }
        if (this.inflight === 0) this.flush()
      })
    }
  }

  stop (): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.client.end()
  }
}

/** Runs a simulated fleet for a while and returns what happened. */
export async function runFleet (o: FleetOptions): Promise<FleetStats> {
  const stats: FleetStats = { connected: 0, sent: 0, acked: 0, errors: 0, alerts: 0, elapsedS: 0, duplicatesSent: 0, resentRefused: 0, unconfirmed: 0, buffered: 0, offlineBuffered: 0, dropped: 0, reconnects: 0, localWarnings: 0, errorsByCode: {}, generatorCpuMs: 0 }
  const cpu0 = process.cpuUsage()
  const start = Date.now()
  const url = new URL(o.url)
  const host = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname
  const port = Number(url.port || 1883)
  const rand = prng(o.seed)
  // a real device persists its sequence counter; a time-based start keeps seqs unique across sim runs
  const seqBase = Date.now() * 1000
  const planned = Math.ceil(o.durationS / o.intervalS)
  const simStart = o.simStepS ? Date.now() - planned * o.simStepS * 1000 : 0
  let watcher: LiteClient | undefined

  if (o.watchAlerts) {
    const w = o.watchAlerts
    watcher = new LiteClient({ host, port, clientId: `${w.residentId}:sim-watch`, username: w.residentId, password: w.password })
    watcher.onMessage = (topic, payload) => {
      if (topic.endsWith('/status')) return
      stats.alerts++
      o.onAlert?.(topic, payload.toString())
    }
    try {
      await watcher.connect()
      watcher.subscribe(`alerts/${w.residentId}`, 1)
    } catch { watcher = undefined }
  }

  const devices = o.devices.map((creds, i) => {
    const drand = prng(o.seed * 7919 + i)
    const scenario = i === 0 ? (o.firstScenario ?? 'crisis-episodes') : pick(rand, o.mix ?? DEFAULT_MIX)
    return new Device(creds, i, o, stats, seqBase, drand, scenario, simStart, host, port)
  })
  // connect in waves so authentication does not arrive all at once
  for (let i = 0; i < devices.length; i += 500) await Promise.all(devices.slice(i, i + 500).map((d) => d.connect()))

  const timers = devices.map((d, i) => {
    const offset = (i / devices.length) * o.intervalS * 1000
    let interval: NodeJS.Timeout | undefined
    const first = setTimeout(() => { d.tick(); interval = setInterval(() => d.tick(), o.intervalS * 1000) }, offset)
    return () => { clearTimeout(first); if (interval) clearInterval(interval) }
  })
  const progress = setInterval(() => {
    stats.elapsedS = (Date.now() - start) / 1000
    stats.buffered = devices.reduce((n, d) => n + d.buffer.length, 0)
    const c = process.cpuUsage(cpu0)
    stats.generatorCpuMs = Math.round((c.user + c.system) / 1000)
    o.onProgress?.({ ...stats })
  }, 5000)

  await new Promise<void>((resolve) => {
    const done = (): void => { clearTimeout(end); clearInterval(counted); resolve() }
    const end = o.ticks === undefined ? setTimeout(done, o.durationS * 1000) : undefined
    const counted = o.ticks === undefined ? undefined : setInterval(() => { if (devices.every((d) => d.n >= o.ticks!)) done() }, 20)
    process.once('SIGINT', done)
  })
  timers.forEach((stop) => stop())
  clearInterval(progress)
  // let the devices deliver what they still hold (catch-up after offline periods included) and
  // hear the PUBACK of every publish in flight (a duplicate resend too: on a loaded machine its
  // PUBACK could come after the fleet had stopped, and the server had not yet counted it)
  const deadline = Date.now() + 15_000
  while (devices.some((d) => (d.buffer.length > 0 || d.client.pending > 0) && d.client.connected) && Date.now() < deadline) {
    for (const d of devices) (d as unknown as { flush(): void }).flush()
    await new Promise((r) => setTimeout(r, 50))
  }
  await new Promise((r) => setTimeout(r, 300)) // the last alerts
  // a device still inside its offline period holds its readings on purpose
  stats.buffered = devices.reduce((n, d) => n + (d.offlineUntil < 0 ? d.buffer.length : 0), 0)
  stats.offlineBuffered = devices.reduce((n, d) => n + (d.offlineUntil >= 0 ? d.buffer.length : 0), 0)
  stats.resentRefused = devices.reduce((n, d) => { let k = 0; for (const q of d.resent) if (d.refused.has(q)) k++; return n + k }, 0)
  for (const d of devices) d.stop()
  watcher?.end()
  stats.elapsedS = (Date.now() - start) / 1000
  const c = process.cpuUsage(cpu0)
  stats.generatorCpuMs = Math.round((c.user + c.system) / 1000)
  return stats
}
