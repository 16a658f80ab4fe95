import { cpSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { cpuMs, load, settled, type Server } from './brokers.ts'
import { ROOT, run, startAppProcess, tempDir, type AppProcess } from '../test/helpers/proc.ts'
import { startNatsCluster } from '../test/helpers/nats.ts'
import { startPostgres } from '../test/helpers/postgres.ts'
import { startInfluxd } from '../test/helpers/influxd.ts'
import { connect } from 'nats'
import { DEFAULT_STREAM } from '../cluster/log.ts'

/**
 * `npm run bench -- cluster`: server CPU per reading of cluster mode over NATS JetStream and
 * PostgreSQL (3 vitalmesh nodes, 3 nats-servers, PostgreSQL), summed over the processes,
 * against one vitalmesh node with the same InfluxDB store, for the same open-loop load spread
 * over the nodes; then the throughput of the 3 nodes and of the one node under a closed loop.
 * Every server runs on this host: its two cores bound what a cluster can show here.
 */
const arg = (name: string): number | undefined => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) || undefined : undefined }
const ROUNDS = arg('--rounds') ?? 3
/** readings per MQTT message (a phone syncing a cuff's history sends many at once): the rate in readings stays RATE */
const BATCH = arg('--batch') ?? 1
/** the reading log's replicas: 3 as in production; 1 shows what the replication costs */
const REPLICAS = arg('--replicas') ?? 3
const RATE = 3000
const SECONDS = 6
const IDLE_S = 5
const UNLIMITED = { VITALMESH_PUBLISH_RATE: '1000000', VITALMESH_PUBLISH_BURST: '1000000', VITALMESH_ALERT_FLAP_COUNT: '0' }

/** the postmaster and its backends */
function postgresPids (dataDir: string): number[] {
  const master = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  const out = [master]
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try { if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === master) out.push(Number(d)) } catch { /* gone */ }
  }
  return out
}
const pidsOf = (pattern: string): number[] => (spawnSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean).map(Number)
const cpuOf = (pids: number[]): number => pids.reduce((s, p) => { try { return s + cpuMs(p) } catch { return s } }, 0)

const asServer = (a: AppProcess, name: string): Server => ({
  name, pid: a.proc.pid!, port: a.mqttPort, httpPort: a.httpPort, dataDir: a.dataDir, devices: [a.creds.device, ...a.creds.fleet],
  operatorKey: a.creds.apiKeys.operator, config: '', stop: async () => { await a.kill('SIGTERM') },
})

interface Stats { readingsAccepted: number, cluster?: { stored: number, fed: number } }
const stats = async (s: Server): Promise<Stats> =>
  await (await fetch(`http://127.0.0.1:${s.httpPort}/v1/stats`, { headers: { authorization: `Bearer ${s.operatorKey}` } })).json() as Stats

/** the partitions' owners stored and fed every reading the nodes accepted, and then every node's consumers (its feed's among them) caught up */
async function clusterSettled (nodes: Server[]): Promise<void> {
  for (const end = Date.now() + 60_000; ;) {
    const all = await Promise.all(nodes.map(stats))
    const accepted = all.reduce((s, x) => s + x.readingsAccepted, 0)
    const stored = all.reduce((s, x) => s + (x.cluster?.stored ?? 0), 0)
    const fed = all.reduce((s, x) => s + (x.cluster?.fed ?? 0), 0)
    if (stored >= accepted && fed >= accepted) break
    if (Date.now() > end) throw new Error(`the partitions' owners stored ${stored} and fed ${fed} of ${accepted} readings after 60 s`)
    await new Promise((r) => setTimeout(r, 50))
  }
  for (const n of nodes) await settled(n)
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2 }
const range = (xs: number[], d = 1): string => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`

export async function clusterBenchmark (): Promise<void> {
  const [nats, pg, influx] = await Promise.all([startNatsCluster({ size: 3 }), startPostgres(), startInfluxd()])
  const base = tempDir('vm-bench-cluster-')
  const made = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'demo'], 60_000, { VITALMESH_DATA_DIR: base })
  if (made.code !== 0) throw new Error(made.stderr)
  const dirs = [0, 1, 2, 3].map((i) => { const d = tempDir(`vm-bench-node${i}-`); cpSync(base, d, { recursive: true }); return d })
  const influxEnv = { VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influx.url, VITALMESH_INFLUX_API: 'v1', VITALMESH_INFLUX_CREATE_DATABASE: 'true' }
  const single = asServer(await startAppProcess(dirs[3]!, { ...UNLIMITED, ...influxEnv, VITALMESH_INFLUX_DB: 'single' }), 'one node')
  const clusterEnv = { ...UNLIMITED, ...influxEnv, VITALMESH_INFLUX_DB: 'cluster', VITALMESH_NATS_URL: nats.servers.join(','), VITALMESH_PG_URL: pg.url, VITALMESH_CLUSTER_PARTITIONS: '16', VITALMESH_CLUSTER_REPLICAS: String(REPLICAS) }
  const nodes: Server[] = []
  // BENCH_CPU_PROF=<dir>: a V8 CPU profile of node0, written when it stops
  const profiled = (i: number): Record<string, string> => process.env.BENCH_CPU_PROF && i === 0 ? { BENCH_NODE_ARGS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF}` } : {}
  for (let i = 0; i < 3; i++) nodes.push(asServer(await startAppProcess(dirs[i]!, { ...clusterEnv, ...profiled(i), VITALMESH_NODE_ID: `node${i}` }), `node${i}`))
  const natsPids = pidsOf(nats.dir)
  const pgData = join(pg.dir, 'data')
  try {
    // what each part burns with no load at all (timers: leases, shippers, polls), in ms of CPU per second: a round
    // counts it too, and at RATE readings/s it is idle / RATE * 1000 µs of each reading (`net` below leaves it out)
    await settled(single); await clusterSettled(nodes)
    const idle = await (async () => {
      const i0 = { single: cpuMs(single.pid), vm: cpuOf(nodes.map((n) => n.pid)), nats: cpuOf(natsPids), pg: cpuOf(postgresPids(pgData)) }
      const t0 = performance.now()
      await new Promise((r) => setTimeout(r, IDLE_S * 1000))
      const s = (performance.now() - t0) / 1000
      return { single: (cpuMs(single.pid) - i0.single) / s, vm: (cpuOf(nodes.map((n) => n.pid)) - i0.vm) / s, nats: (cpuOf(natsPids) - i0.nats) / s, pg: (cpuOf(postgresPids(pgData)) - i0.pg) / s }
    })()
    console.log(`idle (${IDLE_S} s, no load): one node ${idle.single.toFixed(1)} ms of CPU per second; vitalmesh ×3 ${idle.vm.toFixed(1)}, nats-server ×3 ${idle.nats.toFixed(1)}, PostgreSQL ${idle.pg.toFixed(1)}`)
    const rows: { single: number, vm: number, all: number, nats: number, pg: number, singleNet: number, vmNet: number }[] = []
    for (let round = 0; round < ROUNDS; round++) {
      // one node: 60 devices at RATE readings/s in all
      await settled(single)
      const c0 = cpuMs(single.pid); const w0 = performance.now()
      const r1 = await load(single, { devices: 60, inflight: 1, seconds: SECONDS, batch: BATCH, rate: RATE / BATCH })
      await settled(single)
      const singleMs = cpuMs(single.pid) - c0; const singleS = (performance.now() - w0) / 1000
      const singleUs = (singleMs * 1000) / r1.readings
      // the cluster: the same 60 devices, 20 on each node, RATE / 3 each
      await clusterSettled(nodes)
      const v0 = cpuOf(nodes.map((n) => n.pid)); const n0 = cpuOf(natsPids); const p0 = cpuOf(postgresPids(pgData)); const w1 = performance.now()
      const rs = await Promise.all(nodes.map((n, i) => load(n, { devices: 20, inflight: 1, seconds: SECONDS, batch: BATCH, rate: RATE / 3 / BATCH, skip: i * 20 })))
      await clusterSettled(nodes)
      const clusterS = (performance.now() - w1) / 1000
      const readings = rs.reduce((s, r) => s + r.readings, 0)
      const vmMs = cpuOf(nodes.map((n) => n.pid)) - v0
      const vm = (vmMs * 1000) / readings
      const natsUs = ((cpuOf(natsPids) - n0) * 1000) / readings
      const pgUs = ((cpuOf(postgresPids(pgData)) - p0) * 1000) / readings
      const singleNet = ((singleMs - idle.single * singleS) * 1000) / r1.readings
      const vmNet = ((vmMs - idle.vm * clusterS) * 1000) / readings
      rows.push({ single: singleUs, vm, all: vm + natsUs + pgUs, nats: natsUs, pg: pgUs, singleNet, vmNet })
      console.log(`round ${round + 1}: one node ${singleUs.toFixed(1)} µs/reading (${singleNet.toFixed(1)} net of idle); cluster: vitalmesh ×3 ${vm.toFixed(1)} (${vmNet.toFixed(1)} net of idle), nats-server ×3 ${natsUs.toFixed(1)}, PostgreSQL ${pgUs.toFixed(1)}, all ${(vm + natsUs + pgUs).toFixed(1)} µs/reading (${readings} readings)`)
    }
    // what the log holds: readings per JetStream message (a commit's readings of a partition travel together)
    const nc = await connect({ servers: nats.servers })
    const logMessages = (await (await nc.jetstreamManager()).streams.info(DEFAULT_STREAM)).state.messages
    await nc.close()
    const accepted = (await Promise.all(nodes.map(stats))).reduce((sum, x) => sum + x.readingsAccepted, 0)
    console.log(`the reading log: ${logMessages} messages for ${accepted} readings accepted by the cluster (${(accepted / Math.max(1, logMessages)).toFixed(2)} per message)`)
    // throughput: closed loop, 10 messages in flight per device, 30 devices (10 per node)
    await settled(single)
    const t1 = await load(single, { devices: 30, inflight: 10, seconds: SECONDS, batch: 1 })
    await clusterSettled(nodes)
    const t3 = await Promise.all(nodes.map((n, i) => load(n, { devices: 10, inflight: 10, seconds: SECONDS, batch: 1, skip: i * 10 })))
    const t3Rate = t3.reduce((s, r) => s + r.readings / r.seconds, 0)
    const p99 = Math.max(...t3.map((r) => r.p99))
    const ratio = rows.map((r) => r.vm / r.single)
    const ratioAll = rows.map((r) => r.all / r.single)
    console.log([
      '',
      `cluster mode (${REPLICAS} replicas), ${ROUNDS} rounds of ${SECONDS} s at ${RATE} readings/s, ${BATCH === 1 ? 'single readings' : `${BATCH} per message`} (60 devices; in the cluster 20 per node), InfluxDB 1.6 store on this host (its CPU not counted), ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}:`,
      `  server CPU µs per reading, median (min–max): one node ${range(rows.map((r) => r.single))}; cluster vitalmesh ×3 ${range(rows.map((r) => r.vm))}, nats-server ×3 ${range(rows.map((r) => r.nats))}, PostgreSQL ${range(rows.map((r) => r.pg))}`,
      `  cluster / one node: vitalmesh processes ${range(ratio, 2)}×, with nats-server and PostgreSQL ${range(ratioAll, 2)}× (goal ≤ 1.5×)`,
      `  net of what each burns idle (one node ${idle.single.toFixed(1)}, vitalmesh ×3 ${idle.vm.toFixed(1)} ms of CPU per second): one node ${range(rows.map((r) => r.singleNet))}, vitalmesh ×3 ${range(rows.map((r) => r.vmNet))} µs/reading, ${range(rows.map((r) => r.vmNet / r.singleNet), 2)}×`,
      `  throughput, closed loop (10 in flight per device, 30 devices): one node ${Math.round(t1.readings / t1.seconds)} readings/s (PUBACK p99 ${t1.p99.toFixed(1)} ms); 3 nodes ${Math.round(t3Rate)} readings/s (PUBACK p99 ${p99.toFixed(1)} ms)`,
    ].join('\n'))
  } finally {
    await Promise.all([single, ...nodes].map((s) => s.stop()))
    await Promise.all([nats.stop(), pg.stop(), influx.destroy()])
  }
}
