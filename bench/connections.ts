import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { cpus } from 'node:os'
import { openDatabase, systemClock } from '../core/index.ts'
import { Registry, Fleet } from '../registry/index.ts'
import { tempDir } from '../test/helpers/proc.ts'
import { startRedis } from '../test/helpers/redis.ts'

/**
 * Holds N concurrent device connections on one vitalmesh node (authenticated, with all
 * per-device state) and reports the node's RSS per connection and connects/s including
 * authentication. Client sockets are spread over 127.1.x.y (200 per address), as a fleet
 * behind many addresses would be, which also keeps each address under the per-address
 * connection cap and gives every address its own ephemeral port range.
 *
 *   npm run bench:connections            20,000 connections (the figure in the README)
 *   npm run bench:connections -- 2000    a quick run (npm run bench does this)
 *   ... -- 20000 --plain                 plain Aedes (no auth, no vitalmesh state), for comparison
 *   ... -- 50000 --nodes 3               three vitalmesh nodes on this host, a Redis cluster (each node
 *                                        registers and holds a third of the devices); RSS of all
 *                                        nodes and of Redis. For more connections than one process
 *                                        may open files (the hard limit here is 20,000).
 *
 * The node runs as a child process (its RSS is what is measured); the clients run in
 * worker processes (bench/connections-worker.ts).
 */
const ROOT = resolve(import.meta.dirname, '..')
const args = process.argv.slice(2)
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 20_000)
const PLAIN = args.includes('--plain')
const nodesAt = args.indexOf('--nodes')
const NODES = nodesAt >= 0 ? Number(args[nodesAt + 1]) : 1
if (!(NODES >= 1) || (PLAIN && NODES > 1)) { console.error('--nodes K: K >= 1, and not with --plain'); process.exit(2) }

// The node needs a file descriptor per connection. Where the hard limit allows it, raise
// the soft one for the node; client sockets are spread over worker processes so that no
// client process needs more than WORKER_MAX descriptors.
const HARD = Number(spawnSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim()) || 1024
const WORKER_MAX = Math.min(10_000, HARD - 200)

export interface ConnectionsResult { label: string, connections: number, seconds: number, connectsPerS: number, rssBeforeMb: number, rssAfterMb: number, bytesPerConnection: number, registerSeconds: number }

function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) * 1024
}

async function startNode (dataDir: string, env: Record<string, string> = {}): Promise<{ proc: ChildProcess, port: number }> {
  const script = PLAIN ? join(ROOT, 'bench', 'plain-aedes.ts') : join(ROOT, 'main.ts')
  const proc = spawn('bash', ['-c', `ulimit -n ${HARD} 2>/dev/null; exec "$0" --import tsx "$1"`, process.execPath, script], {
    cwd: ROOT,
    env: { ...process.env, VITALMESH_DATA_DIR: dataDir, VITALMESH_MQTT_PORT: '0', VITALMESH_HTTP_PORT: '0', VITALMESH_MQTT_HOST: '0.0.0.0', VITALMESH_HTTP_HOST: '127.0.0.1', VITALMESH_DEMO: 'false', VITALMESH_LOG_PRETTY: 'false', VITALMESH_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  const port = await new Promise<number>((res, rej) => {
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); const m = /"mqttPort":(\d+)/.exec(out); if (m) res(Number(m[1])) })
    proc.once('exit', (code) => rej(new Error(`node exited with ${code}:\n${out}`)))
  })
  proc.stdout!.resume()
  return { proc, port }
}

async function main (): Promise<void> {
  const redis = NODES > 1 ? await startRedis() : undefined
  // node k registers and holds devices [range(k).from, range(k).to)
  const range = (k: number) => ({ from: Math.floor((k * N) / NODES), to: Math.floor(((k + 1) * N) / NODES) })
  const dataDirs = Array.from({ length: NODES }, () => tempDir('vm-bench-conn-'))
  const t0 = Date.now()
  const creds: { id: string, secret: string }[] = []
  if (!PLAIN) {
    for (let k = 0; k < NODES; k++) {
      const db = openDatabase(join(dataDirs[k]!, 'vitalmesh.db'))
      const fleet = new Fleet(new Registry(db), systemClock)
      const { from, to } = range(k)
      const rows = Array.from({ length: to - from }, (_, j) => ({ id: `bench-dev-${from + j}`, residentId: `bench-res-${from + j}`, model: 'bench-watch', region: 'bench-county', firmware: '1.0' }))
      const r = await fleet.import(rows, { createResidents: true, onProgress: (p) => { if (p.done % 10_000 === 0 || p.done === p.total) process.stderr.write(`registered ${from + p.done}/${N}\n`) } })
      creds.push(...r.credentials)
      db.close()
    }
  } else {
    for (let i = 0; i < N; i++) creds.push({ id: `bench-dev-${i}`, secret: 'unused' })
  }
  const registerSeconds = (Date.now() - t0) / 1000

  const nodes = await Promise.all(dataDirs.map((d) => startNode(d, redis ? { VITALMESH_REDIS_URL: redis.url } : {})))
  await new Promise((r) => setTimeout(r, 1500))
  const rssAll = (): number => nodes.reduce((n, x) => n + rssOf(x.proc.pid!), redis ? rssOf(redis.proc.pid!) : 0)
  const rssBefore = rssAll()

  const credsFile = join(dataDirs[0]!, 'bench-credentials.json')
  writeFileSync(credsFile, JSON.stringify(creds))
  const workers: ChildProcess[] = []
  const start = process.hrtime.bigint()
  let connected = 0
  // each worker process connects at most WORKER_MAX devices, all of one node
  const jobs = nodes.flatMap((node, k) => {
    const { from, to } = range(k)
    return Array.from({ length: Math.ceil((to - from) / WORKER_MAX) }, (_, w) => ({ port: node.port, from: from + w * WORKER_MAX, to: Math.min(to, from + (w + 1) * WORKER_MAX) }))
  })
  await Promise.all(jobs.map((job, w) => new Promise<void>((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'connections-worker.ts'), credsFile, String(job.port), String(job.from), String(job.to)], { stdio: ['ignore', 'pipe', 'inherit'] })
    workers.push(p)
    let out = ''
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /held (\d+)/.exec(out)
      if (m) { connected += Number(m[1]); res() }
    })
    p.once('exit', (code) => rej(new Error(`worker ${w} exited with ${code}: ${out}`)))
  })))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  // let the nodes settle (timers, lazily allocated buffers), then sample
  await new Promise((r) => setTimeout(r, 3000))
  const rssAfter = rssAll()
  const result: ConnectionsResult = {
    label: PLAIN ? 'plain Aedes 1.2 (no auth)' : NODES > 1 ? `vitalmesh, ${NODES} nodes on one host (Redis cluster; RSS of the nodes and Redis)` : 'vitalmesh (scrypt auth, presence, rate limit, metrics)',
    connections: connected,
    seconds,
    connectsPerS: connected / seconds,
    rssBeforeMb: rssBefore / 2 ** 20,
    rssAfterMb: rssAfter / 2 ** 20,
    bytesPerConnection: (rssAfter - rssBefore) / connected,
    registerSeconds,
  }
  console.log(`${result.label}: ${result.connections} connections held; ${Math.round(result.connectsPerS)} connects/s ${PLAIN ? '(no authentication)' : 'including authentication'}; RSS ${result.rssBeforeMb.toFixed(0)} MB -> ${result.rssAfterMb.toFixed(0)} MB = ${(result.bytesPerConnection / 1024).toFixed(1)} KB per connection` + (PLAIN ? '' : `; registering ${N} devices took ${registerSeconds.toFixed(1)} s`))
  for (const w of workers) { w.removeAllListeners('exit'); w.kill('SIGKILL') }
  for (const node of nodes) node.proc.kill('SIGKILL')
  await redis?.stop()

  if (N >= 10_000) {
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    const file = join(dir, 'connections.md')
    let md = ''
    try { md = readFileSync(file, 'utf8') } catch {}
    if (!md) md = '# Concurrent device connections on one node\n\n`npm run bench:connections -- N [--plain]`; see bench/connections.ts.\n\n| measured | what | connections | connects/s | RSS before → after | RSS per connection |\n|---|---|---|---|---|---|\n'
    md += `| ${new Date().toISOString()} (${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}) | ${result.label} | ${result.connections} | ${Math.round(result.connectsPerS)}${PLAIN ? ' (no auth)' : ' (incl. auth)'} | ${result.rssBeforeMb.toFixed(0)} → ${result.rssAfterMb.toFixed(0)} MB | ${(result.bytesPerConnection / 1024).toFixed(1)} KB |\n`
    writeFileSync(file, md)
    console.log(`appended to ${file}`)
  }
}

await main()
