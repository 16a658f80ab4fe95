import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import type { DB } from './sqlite.ts'
import type { Logger } from './logger.ts'

// resolved here, not in the worker: an eval'd worker resolves modules from the working directory,
// and vitalmesh may be started from any
const SQLITE = createRequire(import.meta.url).resolve('better-sqlite3')

// CommonJS, evaluated in the worker: its own connection per file, a PASSIVE checkpoint on an interval.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.sqlite)
const dbs = workerData.files.map((f) => { const d = new Database(f); d.pragma('busy_timeout = 5000'); return d })
setInterval(() => {
  for (const d of dbs) {
    try { d.pragma('wal_checkpoint(PASSIVE)') } catch (e) { parentPort.postMessage(String(e && e.message || e)) }
  }
}, workerData.everyMs)
`

/**
 * SQLite's WAL checkpoints (copying committed pages from the WAL into the database file, and
 * an fsync of it) run inside whichever commit crosses the threshold: on the event loop, a
 * stall of tens of milliseconds now and then, which shows in the tail of PUBACK and alert
 * latency. Here a worker thread with its own connections checkpoints every `everyMs`
 * (PASSIVE: it never waits for, nor blocks, the writer), and the app's connections stop
 * checkpointing themselves. If the worker dies, they take it up again.
 */
export class WalCheckpointer {
  private worker: Worker | undefined

  constructor (private readonly dbs: readonly DB[], private readonly logger: Logger, private readonly everyMs = 1000) {}

  start (): void {
    const files = this.dbs.map((d) => d.name).filter((f) => f !== ':memory:' && f !== '')
    if (files.length === 0) return
    const w = new Worker(WORKER, { eval: true, workerData: { sqlite: SQLITE, files, everyMs: this.everyMs } })
    w.unref()
    w.on('message', (m: string) => this.logger.warn({ err: m }, 'WAL checkpoint failed; retried on the next interval'))
    w.on('error', (err) => this.logger.error({ err }, 'WAL checkpointer failed'))
    w.on('exit', () => {
      if (this.worker !== w) return
      this.worker = undefined
      this.logger.warn('WAL checkpointer stopped; commits checkpoint on the event loop again')
      this.autocheckpoint(true)
    })
    this.worker = w
    this.autocheckpoint(false)
  }

  private autocheckpoint (on: boolean): void {
    for (const d of this.dbs) if (d.open) d.pragma(`wal_autocheckpoint = ${on ? 1000 : 0}`)
  }

  async stop (): Promise<void> {
    const w = this.worker
    this.worker = undefined
    if (!w) return
    this.autocheckpoint(true)
    await w.terminate()
  }
}
