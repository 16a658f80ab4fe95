import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect, StorageType } from 'nats'
import { freePort } from './redis.ts'
import { tempDir, waitFor } from './proc.ts'

/** One nats-server of a test cluster. */
export interface NatsNode {
  name: string
  /** client port on 127.0.0.1 */
  port: number
  /** monitoring port (/jsz, /healthz) */
  httpPort: number
  /** nats://127.0.0.1:port */
  url: string
  running(): boolean
  /** stops the server (SIGKILL for a crash) and waits for it to exit */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** starts it again on the same ports and store directory; resolves once it is healthy */
  restart(): Promise<void>
  output(): string
  /** resolves once it answers /healthz; throws (with its output) when it has exited */
  healthy(): Promise<void>
}

export interface NatsCluster {
  nodes: NatsNode[]
  /** every node's client URL, for a client that fails over between them */
  servers: string[]
  dir: string
  /** resolves with the meta leader's server name once every running node agrees on one that runs and it sees each as a current peer */
  metaLeader(timeoutMs?: number): Promise<string>
  /** kills every node and removes the store */
  stop(): Promise<void>
}

interface Jsz { meta_cluster?: { leader?: string, cluster_size?: number, replicas?: { name: string, current?: boolean }[] } }

async function jsz (httpPort: number): Promise<Jsz> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/jsz`)
  return await res.json() as Jsz
}

/**
 * Debian's nats-server (2.9) as a JetStream cluster of `size` nodes on free loopback ports, file
 * storage in a temporary directory. Resolves once the JetStream meta group has a leader that
 * every node knows and that knows every node, i.e. once streams of 3 replicas can be placed.
 */
export async function startNatsCluster (opts: { size?: number, name?: string } = {}): Promise<NatsCluster> {
  // a JetStream cluster that does not come up whole (a server that exited, no meta leader, no
  // placement of a stream of all its servers within 30 s) is thrown away and a new one started on
  // other ports, once: the tests are about vitalmesh, not about that
  try {
    return await startNatsClusterOnce(opts)
  } catch (err) {
    console.warn(`nats test cluster: ${(err as Error).message.split('\n')[0]}; starting a new one on other ports`)
    return await startNatsClusterOnce(opts)
  }
}

async function startNatsClusterOnce (opts: { size?: number, name?: string }): Promise<NatsCluster> {
  const size = opts.size ?? 3
  // a name of its own: servers of another test's cluster that are still going can never join this one
  const clusterName = opts.name ?? `vmtest-${Math.random().toString(36).slice(2, 8)}`
  const dir = tempDir('vm-nats-')
  const ports: { client: number, cluster: number, http: number }[] = []
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), cluster: await freePort(), http: await freePort() })
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.cluster}`)

  const nodes = ports.map((p, i): NatsNode => {
    const name = `n${i + 1}`
    const store = join(dir, name)
    mkdirSync(store)
    const conf = join(dir, `${name}.conf`)
    // routes to every node, itself included: nats-server ignores the route to itself, and one
    // config shape for all nodes is what an operator writes too
    writeFileSync(conf, `server_name: ${name}
listen: 127.0.0.1:${p.client}
http: 127.0.0.1:${p.http}
jetstream {
  store_dir: "${store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: ${clusterName}
  listen: 127.0.0.1:${p.cluster}
  routes: [${routes.join(', ')}]
}
`)
    let proc: ChildProcess | undefined
    let out = ''
    const running = (): boolean => proc !== undefined && proc.exitCode === null && proc.signalCode === null
    const start = (): void => {
      const child = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
      proc = child
      const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-50_000) }
      child.stdout!.on('data', keep)
      child.stderr!.on('data', keep)
    }
    const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
      const child = proc
      if (!child || !running()) return
      const exited = new Promise<void>((r) => child.once('exit', () => r()))
      child.kill(signal)
      // a SIGTERM'd server may wait for its clients; the tests never wait on that
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    }
    const healthy = async (): Promise<void> => {
      await waitFor(`nats-server ${name} healthy`, async () => {
        if (!running()) throw new Error(`nats-server ${name} exited:\n${out}`)
        return (await fetch(`http://127.0.0.1:${p.http}/healthz`)).status === 200
      }, 20_000, 50)
    }
    start()
    return {
      name, port: p.client, httpPort: p.http, url: `nats://127.0.0.1:${p.client}`,
      running, kill, output: () => out, healthy,
      restart: async () => { if (!running()) start(); await healthy() },
    }
  })

  const metaLeader = async (timeoutMs = 30_000): Promise<string> => waitFor('a JetStream meta leader known to every running node', async () => {
    const up = nodes.filter((n) => n.running())
    if (up.length === 0) throw new Error('no nats-server is running')
    const views = await Promise.all(up.map(async (n) => ({ name: n.name, meta: (await jsz(n.httpPort)).meta_cluster })))
    const first = views[0]!.meta?.leader ?? ''
    // a killed leader stays 'the leader' in the others' view until they elect a new one
    const leader = views.find((v) => v.name === first)
    if (leader === undefined || !views.every((v) => v.meta?.leader === first)) return undefined
    // and the leader must know every other running server as a current peer: until it does it
    // refuses to place a stream of 3 replicas ("no suitable peers for placement")
    const current = new Set((leader.meta?.replicas ?? []).filter((r) => r.current === true).map((r) => r.name))
    return up.every((n) => n.name === first || current.has(n.name)) ? first : undefined
  }, timeoutMs, 100)

  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')))
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    // every server up (one that could not bind a port has exited: the meta leader would be elected
    // by the others, and a stream of `size` replicas never placed)
    await Promise.all(nodes.map(async (n) => { await n.healthy() }))
    await metaLeader()
    await canPlace(nodes.map((n) => n.url), size)
  } catch (err) {
    const logs = nodes.map((n) => `--- ${n.name}\n${n.output().slice(-3000)}`).join('\n')
    await stop()
    throw new Error(`${(err as Error).message}\n${logs}`)
  }
  return { nodes, servers: nodes.map((n) => n.url), dir, metaLeader, stop }
}

/** Resolves once the cluster places (and removes) a file stream with a replica on every server. */
async function canPlace (servers: string[], replicas: number): Promise<void> {
  const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  try {
    const jsm = await nc.jetstreamManager()
    const name = `PLACEMENT_PROBE_${Math.random().toString(36).slice(2, 8)}`
    const until = Date.now() + 30_000
    for (;;) {
      try {
        await jsm.streams.add({ name, subjects: [`probe.${name}`], num_replicas: replicas, storage: StorageType.File })
        await jsm.streams.delete(name)
        return
      } catch (err) {
        if (/already in use/i.test((err as Error).message)) { await jsm.streams.delete(name).catch(() => {}); return }
        if (Date.now() > until) throw new Error(`the JetStream cluster cannot place a stream of ${replicas} replicas: ${(err as Error).message}`)
        await new Promise((r) => setTimeout(r, 250))
      }
    }
  } finally {
    await nc.close()
  }
}
