import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { tempDir } from './proc.ts'

export interface RedisServer { port: number, url: string, proc: ChildProcess, stop(): Promise<void> }

export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as { port: number }; s.close(() => resolve(port)) })
  })
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
