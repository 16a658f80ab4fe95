import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { DemoCredentials } from '../../registry/index.ts'

export const ROOT = resolve(import.meta.dirname, '..', '..')

export function tempDir (prefix = 'vitalmesh-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export interface AppProcess {
  proc: ChildProcess
  mqttPort: number
  httpPort: number
  dataDir: string
  creds: DemoCredentials
  output: () => string
  kill(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * Starts vitalmesh as a real child process (`node --import tsx main.ts`) on free ports
 * and resolves once it logs that it listens.
 */
export function startAppProcess (dataDir: string, env: Record<string, string> = {}): Promise<AppProcess> {
  // BENCH_NODE_ARGS (benchmarks only), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`: NODE_OPTIONS may not carry --cpu-prof
  const nodeArgs = (env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  // BENCH_NODE and BENCH_NODE_ROOT (benchmarks only): another node binary, run from a checkout whose node_modules were built for it
  const root = env.BENCH_NODE_ROOT ?? ROOT
  const proc = spawn(env.BENCH_NODE ?? process.execPath, [...nodeArgs, '--import', 'tsx', join(root, 'main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      VITALMESH_DATA_DIR: dataDir,
      VITALMESH_MQTT_PORT: '0',
      VITALMESH_HTTP_PORT: '0',
      VITALMESH_MQTT_HOST: '127.0.0.1',
      VITALMESH_HTTP_HOST: '127.0.0.1',
      VITALMESH_LOG_PRETTY: 'false',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)))
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error('vitalmesh did not start in 30 s:\n' + out)) }, 30_000)
    proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /"mqttPort":(\d+),"httpPort":(\d+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        const creds = JSON.parse(readFileSync(join(dataDir, 'demo-credentials.json'), 'utf8')) as DemoCredentials
        resolvePromise({
          proc, mqttPort: Number(m[1]), httpPort: Number(m[2]), dataDir, creds,
          output: () => out,
          kill: async (signal = 'SIGTERM') => { if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal); return exited },
        })
      }
    })
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`vitalmesh exited with ${code} before listening:\n${out}`)) })
  })
}

export interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command to completion (e.g. mosquitto_pub). */
export function run (cmd: string, args: string[], timeoutMs = 15_000, env?: Record<string, string>): Promise<Run> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) })
    let stdout = ''; let stderr = ''
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs)
    p.once('error', rej)
    p.once('exit', (code) => { clearTimeout(t); res({ code, stdout, stderr }) })
  })
}

/** Starts `mosquitto_sub` and resolves with its output once it has received `count` messages. */
export function subscribe (args: string[]): { lines: string[], done: Promise<Run>, stop(): void } {
  // line-buffered (stdbuf execs mosquitto_sub in its place): its -d log lines, e.g. the SUBACK, would otherwise wait in a pipe buffer
  const p = spawn('stdbuf', ['-oL', 'mosquitto_sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let stdout = ''; let stderr = ''
  p.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
    const parts = stdout.split('\n')
    stdout = parts.pop()!
    lines.push(...parts)
  })
  p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const done = new Promise<Run>((res) => p.once('exit', (code) => res({ code, stdout: lines.join('\n'), stderr })))
  return { lines, done, stop: () => p.kill('SIGTERM') }
}

export async function waitFor<T> (what: string, f: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await f()
      if (v) return v as NonNullable<T>
    } catch (e) { last = e }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ': ' + String(last) : ''}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

export interface NodeStats { readingsAccepted: number, duplicates: number, spoolRows: number, drained: number, outboxPending: number }

/** The node's /v1/stats (operator key), e.g. to wait until the spool is empty rather than until /readyz answers. */
export async function nodeStats (app: Pick<AppProcess, 'httpPort' | 'creds'>): Promise<NodeStats> {
  const res = await fetch(`http://127.0.0.1:${app.httpPort}/v1/stats`, { headers: { authorization: `Bearer ${app.creds.apiKeys.operator}` } })
  if (res.status !== 200) throw new Error(`/v1/stats answered ${res.status}`)
  return await res.json() as NodeStats
}
