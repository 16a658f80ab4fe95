import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir, waitFor } from './proc.ts'

export async function freePort (): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => res(p))
    })
  })
}

export interface ServerProcess {
  url: string
  port: number
  dir: string
  /** stops the server (SIGKILL for a crash) and waits for it to exit */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** starts it again on the same port and data */
  restart(): Promise<void>
  /** kill and remove the data */
  destroy(): Promise<void>
  output(): string
  /** the server's process id while it runs */
  pid(): number | undefined
}

async function serve (cmd: string, args: string[], url: string, ready: () => Promise<boolean>, dir: string, port: number): Promise<ServerProcess> {
  let proc: ChildProcess | undefined
  let out = ''
  const start = async (): Promise<void> => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    proc = p
    p.stdout!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20_000) })
    p.stderr!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20_000) })
    await waitFor(`${cmd} on ${url}`, async () => {
      if (p.exitCode !== null) throw new Error(`${cmd} exited with ${p.exitCode}:\n${out}`)
      return ready()
    }, 20_000, 50)
  }
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const p = proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>((r) => p.once('exit', () => r()))
    p.kill(signal)
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
  }
  await start()
  return {
    url, port, dir, kill, restart: start, output: () => out, pid: () => proc?.pid,
    destroy: async () => { await kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) },
  }
}

/**
 * Debian's influxd (1.6.7) with a generated config: free ports for HTTP and RPC,
 * meta/data/wal in a temporary directory, no usage reporting.
 */
export async function startInfluxd (opts: { auth?: boolean } = {}): Promise<ServerProcess> {
  const dir = tempDir('vm-influxd-')
  const [http, rpc] = [await freePort(), await freePort()]
  for (const d of ['meta', 'data', 'wal']) mkdirSync(join(dir, d))
  const conf = join(dir, 'influxdb.conf')
  writeFileSync(conf, `reporting-disabled = true
bind-address = "127.0.0.1:${rpc}"
[meta]
  dir = "${join(dir, 'meta')}"
[data]
  dir = "${join(dir, 'data')}"
  wal-dir = "${join(dir, 'wal')}"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${http}"
  log-enabled = false
  auth-enabled = ${opts.auth === true}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`)
  const url = `http://127.0.0.1:${http}`
  return serve('influxd', ['-config', conf], url, async () => (await fetch(`${url}/ping`)).status === 204, dir, http)
}

/** Debian's victoria-metrics, which accepts InfluxDB line protocol on /write and /api/v2/write. */
export async function startVictoriaMetrics (): Promise<ServerProcess> {
  const dir = tempDir('vm-victoria-')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  return serve('victoria-metrics', [`-storageDataPath=${dir}`, `-httpListenAddr=127.0.0.1:${port}`, '-loggerLevel=ERROR', '-dedup.minScrapeInterval=1ms', '-search.latencyOffset=0s', '-retentionPeriod=100y'],
    url, async () => (await fetch(`${url}/health`)).status === 200, dir, port)
}
