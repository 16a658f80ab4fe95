import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import { freePort } from './redis.ts'
import { tempDir, waitFor } from './proc.ts'

export interface PostgresServer {
  port: number
  /** postgres://postgres@127.0.0.1:port/postgres (trust authentication on loopback: a test cluster) */
  url: string
  dir: string
  output(): string
  stop(): Promise<void>
}

/** Debian's PostgreSQL binaries (postgresql-15; the newest installed major if several are). */
function binDir (): string {
  for (const v of ['15', '16', '17']) {
    const d = `/usr/lib/postgresql/${v}/bin`
    if (existsSync(join(d, 'initdb'))) return d
  }
  throw new Error('PostgreSQL is not installed: scripts/install-system-deps.sh installs postgresql-15')
}

/**
 * A PostgreSQL cluster of its own: `initdb` into a temporary directory, the server on a free
 * loopback port with its socket in that directory. PostgreSQL refuses to run as root, so as
 * root both run as the `postgres` user (`runuser`), which Debian's package creates, and the
 * directory is handed to it first.
 */
export async function startPostgres (): Promise<PostgresServer> {
  const bin = binDir()
  const dir = tempDir('vm-pg-')
  const data = join(dir, 'data')
  const asRoot = userInfo().uid === 0
  let uid: number | undefined
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
    if (id.status !== 0) throw new Error('there is no postgres user to run PostgreSQL as (install postgresql-15)')
    uid = Number(id.stdout.trim())
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim())
    chownSync(dir, uid, gid)
  }
  const as = (cmd: string, args: string[]): [string, string[]] => asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
  const [initCmd, initArgs] = as(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'])
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' })
  if (init.status !== 0) throw new Error(`initdb failed:\n${init.stdout}\n${init.stderr}`)
  const port = await freePort()
  // fsync off: a test cluster that is thrown away; what vitalmesh relies on (transactions,
  // row locks) does not depend on it
  const [cmd, args] = as(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=50'])
  const proc: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-20_000) }
  proc.stdout!.on('data', keep)
  proc.stderr!.on('data', keep)
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  const ready = join(bin, 'pg_isready')
  try {
    await waitFor(`PostgreSQL on port ${port}`, async () => {
      if (proc.exitCode !== null) throw new Error(`postgres exited:\n${out}`)
      return spawnSync(ready, ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'], { encoding: 'utf8' }).status === 0
    }, 20_000, 100)
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  return {
    port, dir, url: `postgres://postgres@127.0.0.1:${port}/postgres`, output: () => out,
    stop: async () => {
      // fast shutdown (SIGINT): the server ends its connections and exits. As root the child is
      // runuser, which does not pass SIGINT on (every stop took the 10 s below): the signal goes
      // to the postmaster itself, whose pid is the first line of postmaster.pid
      if (proc.exitCode === null) {
        let pid: number | undefined
        try { pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) } catch { pid = undefined }
        if (pid) { try { process.kill(pid, 'SIGINT') } catch {} }
        proc.kill('SIGINT')
      }
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(t)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
