import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { tempDir } from './proc.ts'

export interface RedisServer { port: number, url: string, proc: ChildProcess, stop(): Promise<void> }

export async function freePort (): Promise<number> {
  // below the kernel's range for outgoing connections (32768-60999 on Debian): a port taken from
  // that range (listen on 0) could be handed to some client's connection before the server we
  // start binds it, and a nats-server that cannot bind its route port exits, leaving a cluster of
  // two that cannot place three replicas (the cause of the cluster tests' rare placement timeouts)
  for (let i = 0; ; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => { s.close(() => resolve(true)) })
    })
    if (ok) return port
    if (i > 200) throw new Error('no free port between 20000 and 32000')
  }
}

/** Debian's redis-server on a free port, without persistence, in a temporary directory. */
export async function startRedis (port?: number): Promise<RedisServer> {
  const p = port ?? await freePort()
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tempDir('vitalmesh-redis-')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('redis-server did not start:\n' + out)), 10_000)
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('Ready to accept connections')) { clearTimeout(t); resolve() } })
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`redis-server exited with ${code}:\n${out}`)) })
  })
  const exited = new Promise<void>((res) => proc.once('exit', () => res()))
  return { port: p, url: `redis://127.0.0.1:${p}`, proc, stop: async () => { if (proc.exitCode === null) proc.kill('SIGKILL'); await exited } }
}
