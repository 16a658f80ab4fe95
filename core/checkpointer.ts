import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import type { DB } from './sqlite.ts'
import type { Logger } from './logger.ts'

// resolved here, not in the worker: an eval'd worker resolves modules from the working directory,
// and vitalmesh may be started from any
const SQLITE = createRequire(import.meta.url).resolve('better-sqlite3')

// CommonJS, evaluated in the worker: its own connection per file, a PASSIVE checkpoint on an interval.
// A checkpoint copies what was committed when it began; while it runs, the app commits more. The
// worker goes again (at most a few times) while more than FINISH_FRAMES frames are left, then
// reports what is left: the app's connection copies that last bit itself (see finish()).
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.sqlite)
const dbs = workerData.files.map((f) => { const d = new Database(f); d.pragma('busy_timeout = 5000'); return d })
setInterval(() => {
  dbs.forEach((d, i) => {
    try {
      let r
      for (let round = 0; round < 4; round++) {
        r = d.pragma('wal_checkpoint(PASSIVE)')[0]
        if (r.busy || r.log - r.checkpointed <= workerData.finishFrames) break
      }
      if (r.log > 0 && !r.busy) parentPort.postMessage({ done: i, left: r.log - r.checkpointed })
    } catch (e) { parentPort.postMessage({ err: String(e && e.message || e) }) }
  })
}, workerData.everyMs)
`

/** frames (pages) the app's connection copies itself to let its WAL start over: a few milliseconds of commits */
const FINISH_FRAMES = 256

/**
 * SQLite's WAL checkpoints (copying committed pages from the WAL into the database file, and
 * an fsync of it) run inside whichever commit crosses the threshold: on the event loop, a
 * stall of tens of milliseconds now and then, which shows in the tail of PUBACK and alert
 * latency. Here a worker thread with its own connections checkpoints every `everyMs`
 * (PASSIVE: it never waits for, nor blocks, the writer), and the app's connections stop
 * checkpointing themselves. If the worker dies, they take it up again.
 *
 * SQLite starts a WAL over from its beginning only when a write transaction begins with every
 * frame copied. Under steady load the app commits every few milliseconds, always while the
 * worker copies, so the WAL never started over: it grew by about 10 MB a second of the
 * single-reading benchmark (82 MB in 8 s) until the load paused, every commit wrote into new
 * blocks of the file (ext4 allocates and zeroes them; 7% of the event loop's CPU in `perf`),
 * and a county's steady stream would have filled the disk. So after each of the worker's
 * checkpoints the app's own connection copies the few frames committed meanwhile, between two of
 * its transactions (`finish`); its next commit starts the WAL over, into pages already cached.
 */
export class WalCheckpointer {
  private worker: Worker | undefined

  private readonly files: DB[]

  /**
   * `dbs`: the app's connections, one per file. `writtenElsewhere`: those of them whose file is
   * written by another connection (the embedded store's writer thread): the worker checkpoints
   * them, but the last frames are not theirs to copy.
   */
  constructor (private readonly dbs: readonly DB[], private readonly logger: Logger, private readonly opts: { everyMs?: number, writtenElsewhere?: readonly DB[] } = {}) {
    this.files = dbs.filter((d) => d.name !== ':memory:' && d.name !== '')
  }

  start (): void {
    const files = this.files.map((d) => d.name)
    if (files.length === 0) return
    const w = new Worker(WORKER, { eval: true, workerData: { sqlite: SQLITE, files, everyMs: this.opts.everyMs ?? 1000, finishFrames: FINISH_FRAMES } })
    w.unref()
    w.on('message', (m: { done: number, left: number } | { err: string }) => {
      if ('err' in m) this.logger.warn({ err: m.err }, 'WAL checkpoint failed; retried on the next interval')
      // a file written by another connection: its last frames are not this one's to copy
      else if (m.left <= FINISH_FRAMES && !this.opts.writtenElsewhere?.includes(this.files[m.done]!)) setImmediate(() => this.finish(m.done))
    })
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

  /**
   * The last frames, copied by the connection that writes: no transaction of its own can begin
   * in between, so the next one starts the WAL over. Only the main connection of each file
   * writes on the event loop (the embedded store writes on its own thread), so only it can.
   */
  private finish (i: number): void {
    const d = this.files[i]
    if (!this.worker || !d?.open || d.inTransaction) return
    try { d.pragma('wal_checkpoint(PASSIVE)') } catch (err) { this.logger.warn({ err }, 'WAL checkpoint failed; retried on the next interval') }
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
