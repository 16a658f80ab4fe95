import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import type { StoredReading } from '../core/index.ts'

// resolved here, not in the worker: an eval'd worker resolves modules from the working directory,
// and vitalmesh may be started from any
const SQLITE = createRequire(import.meta.url).resolve('better-sqlite3')
/** numbers per reading in a batch's buffer */
const FIELDS = 10
/** readings bound to one multi-row INSERT (640 parameters, under SQLite's limit of 32,766) */
const PER_STATEMENT = 64

// CommonJS, evaluated in the worker: its own connection to the telemetry file (WAL: the main
// thread's connection keeps reading), synchronous=FULL as every durable connection of vitalmesh,
// one transaction per batch, PER_STATEMENT readings per INSERT (fewer statement steps: 3.6 → 2.3 µs
// of CPU per reading with 64, bench/README.md). A batch arrives as a Float64Array (transferred, not copied) of
// FIELDS numbers per reading, NaN for an absent value, and the batch's distinct strings.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.sqlite)
const db = new Database(workerData.file)
db.pragma('journal_mode = WAL')
db.pragma('synchronous = FULL')
db.pragma('busy_timeout = 5000')
const SQL = 'INSERT OR IGNORE INTO readings (resident_id, ts, device_id, seq, hr, sys, dia, activity, motion, confidence) VALUES '
const ROW = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
const insert = db.prepare(SQL + ROW)
const insertMany = db.prepare(SQL + Array(${PER_STATEMENT}).fill(ROW).join(', '))
const v = (x) => Number.isNaN(x) ? null : x
const args = new Array(${PER_STATEMENT * FIELDS})
const put = (nums, strings, o, a, k) => {
  a[k] = strings[nums[o]]; a[k + 1] = nums[o + 1]; a[k + 2] = strings[nums[o + 2]]; a[k + 3] = nums[o + 3]
  a[k + 4] = v(nums[o + 4]); a[k + 5] = v(nums[o + 5]); a[k + 6] = v(nums[o + 6])
  a[k + 7] = Number.isNaN(nums[o + 7]) ? null : strings[nums[o + 7]]; a[k + 8] = v(nums[o + 8]); a[k + 9] = v(nums[o + 9])
}
const one = new Array(${FIELDS})
const write = db.transaction((nums, strings) => {
  const whole = nums.length - nums.length % ${PER_STATEMENT * FIELDS}
  let o = 0
  for (; o < whole; o += ${PER_STATEMENT * FIELDS}) {
    for (let k = 0; k < ${PER_STATEMENT * FIELDS}; k += ${FIELDS}) put(nums, strings, o + k, args, k)
    insertMany.run(args)
  }
  for (; o < nums.length; o += ${FIELDS}) { put(nums, strings, o, one, 0); insert.run(one) }
})
parentPort.on('message', (m) => {
  try { write(new Float64Array(m.buf), m.strings); parentPort.postMessage({ id: m.id }) }
  catch (e) { parentPort.postMessage({ id: m.id, error: String(e && e.message || e) }) }
})
`

/**
 * The embedded store's inserts on a thread of their own. An insert costs SQLite 3 µs or so
 * per reading, on whichever thread runs it: a drain batch of 2,000–5,000 readings held the event
 * loop for 6–27 ms, and every PUBACK and alert behind it waited (bench/README.md). Here the
 * event loop only packs the batch (numbers into one transferred buffer, strings once per batch)
 * and the write runs beside it. A write resolves once its transaction is committed; if the
 * thread dies, the writes in flight reject (the drain retries them: re-writes are idempotent)
 * and the next write starts a new thread.
 */
export class StoreWriter {
  private worker: Worker | undefined
  private nextId = 1
  private readonly pending = new Map<number, { resolve: () => void, reject: (e: Error) => void }>()
  private closed = false

  constructor (private readonly file: string) {}

  write (rows: readonly StoredReading[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the store writer is closed'))
    if (rows.length === 0) return Promise.resolve()
    const nums = new Float64Array(rows.length * FIELDS)
    const strings: string[] = []
    const index = new Map<string, number>()
    const str = (s: string): number => {
      let i = index.get(s)
      if (i === undefined) { i = strings.length; strings.push(s); index.set(s, i) }
      return i
    }
    for (let i = 0, o = 0; i < rows.length; i++, o += FIELDS) {
      const r = rows[i]!
      nums[o] = str(r.residentId); nums[o + 1] = r.ts; nums[o + 2] = str(r.deviceId); nums[o + 3] = r.seq
      nums[o + 4] = r.hr ?? NaN; nums[o + 5] = r.sys ?? NaN; nums[o + 6] = r.dia ?? NaN
      nums[o + 7] = r.activity === undefined ? NaN : str(r.activity)
      nums[o + 8] = r.motion === undefined ? NaN : r.motion ? 1 : 0
      nums[o + 9] = r.confidence ?? NaN
    }
    const id = this.nextId++
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      const w = this.thread()
      w.ref() // a write in flight keeps the process alive, an idle thread does not
      w.postMessage({ id, buf: nums.buffer, strings }, [nums.buffer])
    })
  }

  async close (): Promise<void> {
    this.closed = true
    const w = this.worker
    this.worker = undefined
    if (w) await w.terminate()
    this.failAll(new Error('the store writer was closed'))
  }

  private thread (): Worker {
    if (this.worker) return this.worker
    const w = new Worker(WORKER, { eval: true, workerData: { sqlite: SQLITE, file: this.file } })
    w.on('message', (m: { id: number, error?: string }) => {
      const p = this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id)
      if (this.pending.size === 0) w.unref()
      if (m.error === undefined) p.resolve()
      else p.reject(new Error(`embedded store: ${m.error}`))
    })
    const gone = (err: Error): void => {
      if (this.worker !== w) return
      this.worker = undefined
      this.failAll(err)
    }
    w.on('error', gone)
    w.on('exit', (code) => gone(new Error(`the embedded store's writer thread exited (${code})`)))
    this.worker = w
    return w
  }

  private failAll (err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
