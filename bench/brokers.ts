import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LiteClient } from '../firmware-sim/lite-client.ts'
import { startAppProcess, tempDir, ROOT } from '../test/helpers/proc.ts'

export interface Server {
  name: string, pid: number, port: number, devices: { deviceId: string, residentId: string, secret: string }[]
  resident?: { id: string, password: string }, operatorKey?: string, httpPort?: number, dataDir?: string
  /** how it was started: command line, config file, where its output went (printed in the report) */
  config: string
  stop(): Promise<void>
}

/**
 * The node that runs a Node server (plain Aedes, vitalmesh): by default this process's own; with
 * `BENCH_NODE` another binary, run from `root`, a checkout whose node_modules were built for it
 * (better-sqlite3 is compiled per Node ABI; scripts/test-on-node-lts.sh makes one).
 */
export interface NodeRuntime { bin: string, root: string, version: string }
export const OWN_NODE: NodeRuntime = { bin: process.execPath, root: ROOT, version: process.version }
export function cpuMs (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}
export function rssKb (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : 0
}

async function waitLine (p: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = ''
    const t = setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 20_000)
    const on = (d: Buffer): void => { out += d.toString(); const m = re.exec(out); if (m) { clearTimeout(t); resolve(m) } }
    p.stdout?.on('data', on); p.stderr?.on('data', on)
  })
}

const anonymous = (n: number) => Array.from({ length: n }, (_, i) => ({ deviceId: `bench-${i}`, residentId: `r-${i}`, secret: 'x' }))

async function waitPort (port: number, p: ChildProcess, what: string, why: () => string): Promise<void> {
  const end = Date.now() + 20_000
  for (;;) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${what} exited before listening: ${why()}`)
    const up = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true) })
      c.once('error', () => resolve(false))
    })
    if (up) return
    if (Date.now() > end) throw new Error(`${what} did not listen on ${port} in 20 s: ${why()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((b) => existsSync(b)) ?? 'mosquitto'
export const mosquittoVersion = (): string => /mosquitto version (\S+)/.exec(spawnSync(MOSQUITTO, ['-h'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? '?'

/**
 * Debian's mosquitto as its users run it: the default log types (no `-v`, which logs every
 * packet) to a file, stdout and stderr discarded. Earlier runs used `-v` with stdout piped into
 * this process, which made it look about 3× slower than it is. `nodelay` adds `set_tcp_nodelay true`.
 */
export async function startMosquitto (o: { nodelay?: boolean } = {}): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'vm-mosq-'))
  const port = 20000 + Math.floor(Math.random() * 20000)
  const conf = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    'max_inflight_messages 0',
    'max_queued_messages 100000',
    ...(o.nodelay ? ['set_tcp_nodelay true'] : []),
    `log_dest file ${join(dir, 'mosquitto.log')}`,
  ].join('\n') + '\n'
  writeFileSync(join(dir, 'm.conf'), conf)
  const p = spawn(MOSQUITTO, ['-c', join(dir, 'm.conf')], { stdio: 'ignore' })
  const log = () => { try { return readFileSync(join(dir, 'mosquitto.log'), 'utf8') } catch { return '' } }
  await waitPort(port, p, 'mosquitto', log)
  const config = `\`${MOSQUITTO} -c m.conf\` (mosquitto ${mosquittoVersion()}), stdin/stdout/stderr to /dev/null, m.conf:\n\n\`\`\`\n${conf.replace(String(port), '<port>').replace(dir, '<tmp>')}\`\`\``
  return {
    name: o.nodelay ? 'mosquitto, set_tcp_nodelay' : 'mosquitto', pid: p.pid!, port, devices: anonymous(1000), config,
    stop: async () => { p.kill('SIGTERM'); await new Promise((r) => p.exitCode !== null ? r(null) : p.once('exit', r)) },
  }
}

const nodeLabel = (node: NodeRuntime) => node === OWN_NODE ? '' : `, Node ${node.version}`
const nodeOptions = () => process.env.NODE_OPTIONS ? ` with NODE_OPTIONS=${process.env.NODE_OPTIONS}` : ''

export async function startPlainAedes (node: NodeRuntime = OWN_NODE): Promise<Server> {
  const p = spawn(node.bin, ['--import', 'tsx', join(node.root, 'bench/plain-aedes.ts'), '0'], { cwd: node.root, stdio: ['ignore', 'pipe', 'inherit'] })
  const m = await waitLine(p, /"port":(\d+)/, 'plain aedes')
  p.stdout!.removeAllListeners('data'); p.stdout!.resume() // one line at start, nothing after
  return {
    name: `plain Aedes${nodeLabel(node)}`, pid: p.pid!, port: Number(m[1]), devices: anonymous(1000),
    config: `\`node --import tsx bench/plain-aedes.ts\` (Node ${node.version}${nodeOptions()}): Aedes 1.2 with default options, no authentication, no logging`,
    stop: async () => { p.kill('SIGTERM') },
  }
}

export async function startVitalmesh (env: Record<string, string> = {}, name = 'vitalmesh (embedded)', node: NodeRuntime = OWN_NODE): Promise<Server> {
  const dataDir = tempDir('vm-bench-')
  const runEnv = { VITALMESH_LOG_LEVEL: 'info', ...env, ...(node === OWN_NODE ? {} : { BENCH_NODE: node.bin, BENCH_NODE_ROOT: node.root }) }
  const app = await startAppProcess(dataDir, runEnv)
  const shown = Object.entries(runEnv).filter(([k]) => !k.startsWith('BENCH_NODE')).map(([k, v]) => `${k}=${v}`).join(' ')
  return {
    name: `${name}${nodeLabel(node)}`, pid: app.proc.pid!, port: app.mqttPort, httpPort: app.httpPort, dataDir,
    devices: [app.creds.device, ...app.creds.fleet], resident: app.creds.resident, operatorKey: app.creds.apiKeys.operator,
    config: `\`node --import tsx main.ts\` (Node ${node.version}${nodeOptions()}), ${shown}, JSON log lines (pino, info: none per message) on a pipe to the benchmark`,
    stop: async () => { await app.kill('SIGTERM') },
  }
}

/** the last reading time each device sent, across loads (rounds) */
const lastTs = new Map<string, number>()
/** a device's next reading time: after its last one, and at most 10 minutes old (a batched load runs ahead of the wall clock) */
function nextTs (deviceId: string): number {
  const t = Math.max((lastTs.get(deviceId) ?? 0) + 1, Date.now() - 600_000)
  lastTs.set(deviceId, t)
  return t
}

/**
 * Resolves once the server has done all the work the readings it acknowledged cause: every
 * spool consumer of vitalmesh (store drain, alerting, forwarder, reports, feeds) at lag 0 in /metrics,
 * twice in a row 50 ms apart. A server without an HTTP port (plain Aedes, mosquitto) has no
 * work after the PUBACK. Each round starts settled and counts CPU until settled, so that a round
 * pays for its own readings' downstream work and not for the previous round's: a single-reading
 * round after a batched one (500,000 readings in 2 s) otherwise pays for the batched round's
 * backlog, and the alert round measures the alerting consumer catching up, not an alert.
 */
export async function settled (s: Server, timeoutMs = 60_000): Promise<number> {
  if (!s.httpPort) return 0
  const t0 = Date.now()
  let zero = 0
  while (zero < 2) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${s.name}: spool consumers still behind after ${timeoutMs} ms`)
    const text = await (await fetch(`http://127.0.0.1:${s.httpPort}/metrics`)).text()
    // not alerting-timeline: that is the position of the last checkpoint of the rule timelines
    // (every 5 s, a slice at a time), i.e. what a restart would replay, not work waiting
    const lags = [...text.matchAll(/^vitalmesh_spool_consumer_lag_records\{consumer="([^"]*)"\} (\d+)/gm)].filter((m) => m[1] !== 'alerting-timeline').map((m) => Number(m[2]))
    if (lags.length === 0) throw new Error(`${s.name}: /metrics shows no spool consumer lag: ${text.slice(0, 300)}`)
    zero = lags.every((l) => l === 0) ? zero + 1 : 0
    if (zero < 2) await new Promise((r) => setTimeout(r, 50))
  }
  return Date.now() - t0
}

export interface LoadResult { readings: number, messages: number, seconds: number, serverCpuUs: number, generatorCpuUs: number, p50: number, p99: number }

/**
 * Closed-loop load: `devices` connections each keep `inflight` QoS 1 messages outstanding
 * (or, with `rate`, an open-loop schedule of that many messages per second overall), for
 * `seconds`. Returns throughput, server CPU per reading and publish-to-PUBACK latency.
 */
/** `onRunning`: called once every load device is connected and the first publishes are out, i.e. the load is steady */
export async function load (s: Server, o: { devices: number, inflight: number, seconds: number, batch: number, rate?: number, skip?: number, onRunning?: () => void }): Promise<LoadResult> {
  const clients = await Promise.all(s.devices.slice(o.skip ?? 0, (o.skip ?? 0) + o.devices).map(async (d) => {
    const c = new LiteClient({ host: '127.0.0.1', port: s.port, clientId: d.deviceId, username: d.deviceId, password: d.secret })
    await c.connect()
    return { c, d, seq: Date.now() * 1000 }
  }))
  const lat: number[] = []
  let messages = 0
  // reading time moves forward per device, as a device's clock does: never before the device's
  // last reading (also across rounds), and not ahead of now (a batch ends at the newest).
  // Round 1 used `t0 + seq % 3,000,000`, which jumped each device back in time at every
  // round: irrelevant to a broker, but for vitalmesh every reading of half the rounds was
  // "late" and took the replay path, which is not how wearables send
  const ts = nextTs
  const body = (seq: number, deviceId: string) => `{"seq":${seq},"ts":${ts(deviceId)},"hr":${60 + (seq % 40)},"sys":${112 + (seq % 25)},"dia":${72 + (seq % 9)}}`
  const payload = (x: { seq: number, d: { deviceId: string } }): string => {
    if (o.batch === 1) { const q = x.seq++; return `{"v":1,${body(q, x.d.deviceId).slice(1)}` }
    const parts = []
    for (let k = 0; k < o.batch; k++) parts.push(body(x.seq++, x.d.deviceId))
    return `{"v":1,"readings":[${parts.join(',')}]}`
  }
  const cpu0 = cpuMs(s.pid)
  const gen0 = process.cpuUsage()
  const start = process.hrtime.bigint()
  const end = Date.now() + o.seconds * 1000
  let stopped = false
  const sendOne = (x: (typeof clients)[number], again: boolean): void => {
    const sent = process.hrtime.bigint()
    x.c.publish(`vitals/${x.d.deviceId}`, payload(x), 1, (err) => {
      if (err) return
      messages++
      lat.push(Number(process.hrtime.bigint() - sent) / 1e6)
      if (again && !stopped && Date.now() < end) sendOne(x, true)
    })
  }
  if (o.rate) {
    const perTick = o.rate / 100
    let acc = 0; let i = 0
    let ticks = 0
    const timer = setInterval(() => {
      acc += perTick
      while (acc >= 1) { acc--; sendOne(clients[i++ % clients.length]!, false) }
      if (++ticks === 10) o.onRunning?.() // 100 ms at the rate, after every device's CONNACK
    }, 10)
    await new Promise((r) => setTimeout(r, o.seconds * 1000))
    clearInterval(timer)
  } else {
    for (const x of clients) for (let k = 0; k < o.inflight; k++) sendOne(x, true)
    o.onRunning?.()
    await new Promise((r) => setTimeout(r, o.seconds * 1000))
  }
  stopped = true
  const deadline = Date.now() + 10_000
  while (clients.some((x) => x.c.pending > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  // the work after the PUBACK (store, alerts, windows) belongs to this round's readings
  if (!o.rate) await settled(s)
  const cpu = cpuMs(s.pid) - cpu0
  const gen = process.cpuUsage(gen0)
  for (const x of clients) x.c.end()
  lat.sort((a, b) => a - b)
  const q = (p: number) => lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]! : NaN
  const readings = messages * o.batch
  return { readings, messages, seconds, serverCpuUs: (cpu * 1000) / Math.max(1, readings), generatorCpuUs: (gen.user + gen.system) / Math.max(1, readings), p50: q(50), p99: q(99) }
}

const crisisRule = new WeakSet<Server>()

/** Publish → alert delivered: crisis readings among a background load, timed to their arrival at the resident. */
export async function alertLatency (s: Server, o: { backgroundRate: number, alertsPerS: number, seconds: number }): Promise<{ p50: number, p99: number, n: number }> {
  if (!s.resident || !s.operatorKey || !s.httpPort) return { p50: NaN, p99: NaN, n: 0 }
  const d = s.devices[0]! // the demo device, bound to the demo resident
  // a rule without hold-down or cool-down, so every crisis reading after a normal one opens a new alert
  const http = async (method: string, path: string, key: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${s.httpPort}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined })
    return r.json() as Promise<{ key?: string }>
  }
  if (!crisisRule.has(s)) { // once per server: later rounds reuse the active rule set
    // a research key belongs to a registered institution
    await http('POST', '/v1/institutions', s.operatorKey, { id: 'bench', name: 'Benchmark institute' })
    const research = (await http('POST', '/v1/api-keys', s.operatorKey, { role: 'research', scope: 'bench' })).key!
    await http('POST', '/v1/rulesets', research, { id: 'bench-crisis', version: '1.0.0', publisher: 'bench', citation: 'bench', effectiveDate: '2026-01-01', audience: { kind: 'resident', residentId: s.resident.id }, rules: [{ id: 'crisis', title: 'Crisis', kind: 'threshold', severity: 'critical', when: [{ metric: 'sys', op: '>', value: 180 }] }] })
    await http('POST', '/v1/rulesets/bench-crisis/1.0.0/activate', s.operatorKey)
    // only this rule: another rule set's crisis alert (with a hold-down) would stay open and, being the
    // same concern, cover these (one message per reading and concern)
    for (const id of ['acc-aha-2017', 'vitalmesh-safety', 'wearable-hr']) await http('DELETE', `/v1/rulesets/${id}/active`, s.operatorKey)
    crisisRule.add(s)
  }
  const watcher = new LiteClient({ host: '127.0.0.1', port: s.port, clientId: `${s.resident.id}:bench`, username: s.resident.id, password: s.resident.password })
  await watcher.connect()
  watcher.subscribe(`alerts/${s.resident.id}`, 1)
  const dev = new LiteClient({ host: '127.0.0.1', port: s.port, clientId: d.deviceId, username: d.deviceId, password: d.secret })
  await dev.connect()
  await new Promise((r) => setTimeout(r, 300))
  const sentAt = new Map<number, bigint>()
  const lat: number[] = []
  watcher.onMessage = (_t, payload) => {
    const a = JSON.parse(payload.toString()) as { state: string, reading: { seq: number } | null }
    if (a.state !== 'open' || !a.reading) return
    const t = sentAt.get(a.reading.seq)
    if (t !== undefined) lat.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  // the crisis readings start once the background load runs at its rate: measured at 5,000
  // readings/s, not during the 50 background devices' logins (scrypt, sessions, presence), which
  // until 2026-12-02 overlapped the first few hundred milliseconds of every round and made most
  // of its slowest alerts (bench/README.md)
  let running!: () => void
  const steady = new Promise<void>((resolve) => { running = resolve })
  const bg = load(s, { devices: Math.min(50, s.devices.length - 1), inflight: 1, seconds: o.seconds, batch: 1, rate: o.backgroundRate, skip: 1, onRunning: () => running() })
  await steady
  let seq = Date.now() * 1000
  let crisis = true
  const timer = setInterval(() => {
    // alternate crisis and normal readings: each crisis opens a new alert, each normal one resolves it
    const s1 = seq++
    if (crisis) sentAt.set(s1, process.hrtime.bigint())
    dev.publish(`vitals/${d.deviceId}`, `{"v":1,"seq":${s1},"ts":${nextTs(d.deviceId)},"sys":${crisis ? 195 : 120},"dia":${crisis ? 125 : 78}}`, 1)
    crisis = !crisis
  }, 500 / o.alertsPerS)
  await bg
  clearInterval(timer)
  await new Promise((r) => setTimeout(r, 500))
  dev.end(); watcher.end()
  lat.sort((a, b) => a - b)
  const q = (p: number) => lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]! : NaN
  return { p50: q(50), p99: q(99), n: lat.length }
}

/** RSS per idle connection: connect `n` clients and compare the server's RSS before and after. */
export async function rssPerConnection (s: Server, n: number): Promise<{ n: number, kbPerConnection: number }> {
  const before = rssKb(s.pid)
  const clients: LiteClient[] = []
  for (let i = 0; i < n; i += 200) {
    await Promise.all(s.devices.slice(i, Math.min(n, i + 200)).map(async (d, k) => {
      const c = new LiteClient({ host: '127.0.0.1', port: s.port, clientId: d.deviceId, username: d.deviceId, password: d.secret, localAddress: `127.0.${((i + k) >> 8) & 0xff}.${((i + k) & 0xff) || 1}` })
      await c.connect()
      clients.push(c)
    }))
  }
  await new Promise((r) => setTimeout(r, 1000))
  const after = rssKb(s.pid)
  for (const c of clients) c.end()
  return { n: clients.length, kbPerConnection: (after - before) / Math.max(1, clients.length) }
}
