import { ActivitySchema, atomically, migrate, type DB, type Migration, type Reading, type StoredReading, type Logger } from '../core/index.ts'
import type { Statement } from 'better-sqlite3'
import { SeqSet } from './seqset.ts'
import type { RejectedReading } from './store.ts'

/** A reading in the spool: stored, bound to device and resident, with its spool id. */
export interface SpoolRow extends StoredReading { id: number }

export interface DeadLetter { deviceId: string, code: string, message: string, payload: Buffer }

export interface AppendRequest {
  deviceKey: number
  deviceId: string
  residentId: string
  readings: Reading[]
  /** the raw payload and its first error, kept for operators when part of it was invalid */
  deadLetter?: DeadLetter
}

export interface AppendResult { accepted: number, duplicates: number }

/**
 * The one way to read the spool downstream of the PUBACK: a consumer has a name, receives
 * the committed records in order, and its own state commits together with its cursor.
 *
 * `consume` runs inside a transaction on the spool's database that also moves the
 * consumer's cursor past the rows: write the consumer's state with that database and a
 * crash loses both or neither. In-memory effects (notifications) go in `committed`, which
 * runs only after that transaction succeeded. A throw rolls back both, calls `failed`
 * (drop what changed in memory) and stops this consumer only: it is retried from its
 * cursor with back-off, while ingest goes on until the spool is full.
 *
 * A consumer that keeps its state in memory and writes it on its own schedule (the
 * forwarder's windows) sets `checkpointsItself` and moves its cursor with `ack` when it
 * writes; after a crash it is fed again from that cursor, and after a failure too: its
 * `failed` puts its memory back to that checkpoint.
 */
export interface SpoolConsumer {
  readonly name: string
  consume(rows: readonly SpoolRow[]): void
  committed?(): void
  failed?(err: Error): void
  checkpointsItself?: boolean
  /**
   * Its transaction commits, and its `committed` effects run, before the other consumers' work
   * of the same pump: a resident waits for an alert, nobody waits for a summary window. Costs one
   * commit more per pump (WAL, no fsync).
   */
  urgent?: boolean
}

/** What operators see of a consumer (/readyz, /v1/stats, /metrics). */
export interface ConsumerStatus {
  name: string
  /** the last record handed to it and committed */
  position: number
  /** committed records it has not consumed yet */
  lagRecords: number
  failures: number
  /** set while it is stopped by a failure, until a retry succeeds */
  failing: { code: 'VM_CONSUMER_FAILED', message: string, since: number } | null
}

interface Attached { c: SpoolConsumer, position: number, failures: number, streak: number, failing: ConsumerStatus['failing'], timer: NodeJS.Timeout | undefined }

interface Pending { req: AppendRequest, done: (err: Error | null, result?: AppendResult) => void }

export interface SpoolOptions {
  deadLetterMax: number
  /** bound on spooled readings; above it appends (and so PUBACKs) wait for the drain */
  maxRows?: number
  /** bound on the spool's approximate size in bytes, likewise */
  maxBytes?: number
  /** how often, at most, the de-duplication state is written while consumers lag (default 1000 ms) */
  dedupCheckpointMs?: number
  /** the cursor of the drain that rows wait for from the start (default 'store'; in cluster mode 'log') */
  drainCursor?: string
  /**
   * Whether each commit is fsynced before its appends call back (default true: a single node's
   * PUBACK means the reading is on disk). False where something else is the durable copy and
   * the fsync would be paid for nothing: in cluster mode the PUBACK waits for the reading log
   * (JetStream, a majority of its replicas), and the feed is made durable by `sync` before its
   * partition's position commits. Without it a commit still survives the process being killed
   * (WAL mode: it is in the OS), only not a power loss; at one to a few readings per commit the
   * fsync was about half of a commit's CPU (`ROUNDS=2000 npx tsx bench/spool.ts 1 1`, with and without
   * FSYNC=no: 148 against 72 µs, 134 against 58 in a second pair).
   */
  fsync?: boolean
}

/** Bytes of one spooled record besides its readings (SQLite row, index entry), for the byte bound. */
const RECORD_BYTES = 48
/** One reading packed as nine float64: device (index into the record's devices), seq, ts, hr, sys, dia, activity, motion, confidence (NaN = absent). */
const FIELDS = 9
const READING_BYTES = FIELDS * 8
/** readings per spool record at most, so that the drain can cut batches near its size */
const RECORD_MAX = 1000
const ACTIVITIES = ActivitySchema.options
const ACTIVITY_CODE = new Map<string, number>(ACTIVITIES.map((a, i) => [a, i]))
const DEDUP = 'dedup'
/** the head at the last `sync` (a row of `cursors` no consumer reads: the write that carries the fsync) */
const SYNCED = 'synced'
/** the shortest time between two consumer transactions */
const PUMP_INTERVAL_MS = 4

/**
 * The spool's tables (component 'spool'), the consumers' `cursors` among them: only the spool
 * writes those (consumers move theirs through `ack`, `commitCursor` or `attach`). Never edit a
 * shipped step: add one.
 */
export const SPOOL_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'the spool as one record per commit, de-duplication ranges, consumer cursors, quarantined readings and dead letters',
    up: `
      CREATE TABLE IF NOT EXISTS spool_records (
        -- AUTOINCREMENT: ids must never be reused after the drain deleted rows, or the cursor would skip them
        -- devices: JSON [[deviceKey, deviceId, residentId], ...]; data: FIELDS float64 per reading
        id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, devices TEXT NOT NULL, data BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS seq_ranges (device_key INTEGER PRIMARY KEY, ranges BLOB NOT NULL);
      CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS quarantine (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, resident_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
        reading TEXT NOT NULL, reason TEXT NOT NULL, quarantined_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, received_at INTEGER NOT NULL,
        code TEXT NOT NULL, message TEXT NOT NULL, payload BLOB NOT NULL);`,
  },
  {
    version: 2,
    why: 'a spool written with one row per reading (tables spool and seen) becomes records of one reading (same ids, so cursors stay valid) and seq ranges',
    up: (db) => { migrateRowPerReading(db) },
  },
]

/**
 * The durable spool: a PUBACK is sent only after `append` calls back, and it calls back
 * only after the SQLite transaction holding the readings has been committed (fsync).
 * Requests that arrive while the event loop is busy are committed together in one
 * transaction (group commit), so the cost of an fsync is shared by all of them.
 *
 * One row per commit (a record; split at RECORD_MAX readings): the accepted readings of
 * every message in it packed in a blob, so a commit costs one row write however many
 * messages it holds. De-duplication by
 * (device, seq) is in memory (`SeqSet` per device), written to `seq_ranges` when
 * consumers acknowledge (at most once per `dedupCheckpointMs` while they lag); a spool
 * row is deleted only once that checkpoint covers it, so after a crash the state is
 * the checkpoint plus the seqs of the rows still in the spool.
 */
export class Spool {
  private queue: Pending[] = []
  private scheduled = false
  private readonly attached: Attached[] = []
  /** recent commits kept in memory, so consumers that keep up never read back what was just written */
  private recent: { prevId: number, lastId: number, rows: SpoolRow[] }[] = []
  private recentRows = 0
  private pumpScheduled = false
  private lastPumpAt = 0
  private stopped = false
  private readonly listeners: ((rows: readonly SpoolRow[]) => void)[] = []
  private readonly s
  private readonly commitBatch: (batch: Pending[]) => { results: AppendResult[], rows: SpoolRow[] }
  private readonly consumeTx: (a: Attached, rows: readonly SpoolRow[], last: number) => { n: number, bytes: number }
  private readonly ackTx: (name: string, id: number, rejected: readonly RejectedReading[]) => { n: number, bytes: number }
  private deadLettersSincePrune = 0
  /** counters for metrics and tests */
  readonly stats = { commits: 0, accepted: 0, duplicates: 0, backpressureEpisodes: 0, backpressureMs: 0, heldAppends: 0, quarantined: 0, dedupCheckpoints: 0 }
  private rows = 0
  private bytes = 0
  private readonly consumers: Set<string>
  private fullSince: number | undefined
  private seqs = new Map<number, SeqSet>()
  private readonly dirtySeqs = new Set<number>()
  /** the newest committed message, and the newest one the de-duplication checkpoint covers */
  private headId = 0
  private dedupId = 0
  private dedupAt = 0

  constructor (private readonly db: DB, private readonly logger: Logger, private readonly opts: SpoolOptions) {
    migrate(db, 'spool', SPOOL_MIGRATIONS)
    this.consumers = new Set([opts.drainCursor ?? 'store'])
    this.s = {
      insert: db.prepare('INSERT INTO spool_records (n, devices, data) VALUES (?, ?, ?)'),
      deadLetter: db.prepare('INSERT INTO dead_letters (device_id, received_at, code, message, payload) VALUES (?, ?, ?, ?, ?)'),
      pruneDeadLetters: db.prepare('DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?'),
      read: db.prepare<[number], [number, number, string, Buffer]>('SELECT id, n, devices, data FROM spool_records WHERE id > ? ORDER BY id').raw(true),
      cursor: db.prepare<[string], { id: number }>('SELECT id FROM cursors WHERE name = ?'),
      setCursor: db.prepare('INSERT INTO cursors (name, id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET id = excluded.id'),
      deleteUpTo: db.prepare('DELETE FROM spool_records WHERE id <= ?'),
      sizeUpTo: db.prepare<[number], { n: number, bytes: number }>(`SELECT coalesce(sum(n), 0) AS n, coalesce(sum(${RECORD_BYTES} + length(data) + length(devices)), 0) AS bytes FROM spool_records WHERE id <= ?`),
      countAfter: db.prepare<[number], { n: number }>('SELECT coalesce(sum(n), 0) AS n FROM spool_records WHERE id > ?'),
      head: db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM spool_records'),
      saveSeqs: db.prepare('INSERT INTO seq_ranges (device_key, ranges) VALUES (?, ?) ON CONFLICT(device_key) DO UPDATE SET ranges = excluded.ranges'),
      quarantine: db.prepare('INSERT INTO quarantine (device_id, resident_id, seq, ts, reading, reason, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      // prepared once: db.pragma() prepares its statement on every call (1.2% of the event loop's CPU, perf)
      syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
      syncFull: db.prepare('PRAGMA synchronous = FULL'),
    }
    this.loadDedup()
    const initial = this.s.sizeUpTo.get(Number.MAX_SAFE_INTEGER)!
    this.rows = initial.n
    this.bytes = initial.bytes
    this.commitBatch = db.transaction((batch: Pending[]) => {
      const results: AppendResult[] = []
      const rows: SpoolRow[] = []
      const now = Date.now()
      const chunk = new RecordBuilder()
      let chunkStart = 0
      const writeChunk = (): void => {
        const { devices, data } = chunk.finish()
        const id = Number(this.s.insert.run(rows.length - chunkStart, devices, data).lastInsertRowid)
        for (let i = chunkStart; i < rows.length; i++) rows[i]!.id = id
        this.headId = id
        this.rows += rows.length - chunkStart
        this.bytes += RECORD_BYTES + data.length + devices.length
        chunkStart = rows.length
      }
      for (const { req } of batch) {
        const res: AppendResult = { accepted: 0, duplicates: 0 }
        let set = this.seqs.get(req.deviceKey)
        if (!set) this.seqs.set(req.deviceKey, set = new SeqSet())
        for (const r of req.readings) {
          if (set.has(r.seq)) { res.duplicates++; continue }
          set.add(r.seq)
          res.accepted++
          // built field by field: an object spread here cost 2 µs per reading (measured)
          const row: SpoolRow = { id: 0, deviceId: req.deviceId, residentId: req.residentId, seq: r.seq, ts: r.ts }
          if (r.hr !== undefined) row.hr = r.hr
          if (r.sys !== undefined) row.sys = r.sys
          if (r.dia !== undefined) row.dia = r.dia
          if (r.activity !== undefined) row.activity = r.activity
          if (r.motion !== undefined) row.motion = r.motion
          if (r.confidence !== undefined) row.confidence = r.confidence
          rows.push(row)
          chunk.add(req.deviceKey, row)
        }
        if (res.accepted > 0) this.dirtySeqs.add(req.deviceKey)
        if (rows.length - chunkStart >= RECORD_MAX) writeChunk()
        if (req.deadLetter) {
          const d = req.deadLetter
          this.s.deadLetter.run(d.deviceId, now, d.code, d.message, d.payload)
          this.deadLettersSincePrune++
        }
        results.push(res)
      }
      if (rows.length > chunkStart) writeChunk()
      if (this.deadLettersSincePrune > 100) {
        this.s.pruneDeadLetters.run(this.opts.deadLetterMax)
        this.deadLettersSincePrune = 0
      }
      return { results, rows }
    })
    this.consumeTx = db.transaction((a: Attached, rows: readonly SpoolRow[], last: number) => {
      a.c.consume(rows)
      return this.ackTx(a.c.name, last, [])
    })
    this.ackTx = db.transaction((name: string, id: number, rejected: readonly RejectedReading[]) => {
      const now = Date.now()
      for (const { row, reason } of rejected) {
        this.s.quarantine.run(row.deviceId, row.residentId, row.seq, row.ts, JSON.stringify(row), reason.slice(0, 1000), now)
      }
      this.s.setCursor.run(name, id)
      // a row leaves only when every consumer (the store's drain, the forwarder's windows) is past it
      let upTo = this.slowestCursor()
      // ... and the de-duplication checkpoint covers it: written now if consumers caught up, the spool is full, or it is due
      if (upTo > this.dedupId && (upTo >= this.headId || this.isFull() || now - this.dedupAt >= (this.opts.dedupCheckpointMs ?? 1000))) this.checkpointDedup(now)
      upTo = Math.min(upTo, this.dedupId)
      if (upTo <= 0) return { n: 0, bytes: 0 }
      const gone = this.s.sizeUpTo.get(upTo)!
      this.s.deleteUpTo.run(upTo)
      return gone
    })
  }

  /** The seqs of every device as of the checkpoint, plus those of the records still in the spool after it. */
  private loadDedup (): void {
    this.seqs = new Map()
    this.dirtySeqs.clear()
    for (const row of this.db.prepare<[], { device_key: number, ranges: Buffer }>('SELECT device_key, ranges FROM seq_ranges').iterate()) {
      this.seqs.set(row.device_key, SeqSet.fromBuffer(row.ranges))
    }
    this.dedupId = this.cursor(DEDUP)
    this.headId = Math.max(this.dedupId, this.s.head.get()!.id ?? 0)
    for (const [, n, devicesJson, data] of this.s.read.iterate(this.dedupId)) {
      const devices = JSON.parse(devicesJson) as [number, string, string][]
      for (let i = 0; i < n; i++) {
        const deviceKey = devices[data.readDoubleLE(i * READING_BYTES)]![0]
        let set = this.seqs.get(deviceKey)
        if (!set) this.seqs.set(deviceKey, set = new SeqSet())
        const seq = data.readDoubleLE(i * READING_BYTES + 8)
        if (!set.has(seq)) set.add(seq)
        this.dirtySeqs.add(deviceKey)
      }
    }
  }

  /**
   * Cluster mode, at start, before consumers attach: drops the records after `id`, which no
   * consumer has had, and forgets their seqs. They came from the reading log into this node's
   * feed before a crash, and their partition's position did not pass them: the log delivers them
   * again to whichever node follows the partition now, this one included, which must then take
   * them (not drop them as duplicates) and judge them. Returns how many readings were dropped.
   */
  discardAfter (id: number): number {
    let dropped = 0
    atomically(this.db, () => {
      for (const [, n, devicesJson, data] of this.s.read.iterate(id)) {
        const devices = JSON.parse(devicesJson) as [number, string, string][]
        for (let i = 0; i < n; i++) {
          const deviceKey = devices[data.readDoubleLE(i * READING_BYTES)]![0]
          this.seqs.get(deviceKey)?.remove(data.readDoubleLE(i * READING_BYTES + 8))
          this.dirtySeqs.add(deviceKey)
          dropped++
        }
      }
      this.db.prepare('DELETE FROM spool_records WHERE id > ?').run(id)
      this.headId = Math.max(id, this.s.head.get()!.id ?? 0)
      // the de-duplication checkpoint may hold the dropped seqs: written again without them
      this.checkpointDedup(Date.now())
    })
    const size = this.s.sizeUpTo.get(Number.MAX_SAFE_INTEGER)!
    this.rows = size.n
    this.bytes = size.bytes
    this.recent = []
    this.recentRows = 0
    return dropped
  }

  /** Writes the changed devices' seq ranges; the checkpoint then covers every committed message. Runs inside a transaction. */
  private checkpointDedup (now: number): void {
    for (const key of this.dirtySeqs) this.s.saveSeqs.run(key, this.seqs.get(key)!.toBuffer())
    this.dirtySeqs.clear()
    this.s.setCursor.run(DEDUP, this.headId)
    this.dedupId = this.headId
    this.dedupAt = now
    this.stats.dedupCheckpoints++
  }

  /** Names a consumer that reads the spool from its own cursor; rows stay until every consumer acknowledged them. */
  addConsumer (name: string): void { this.consumers.add(name); this.slowest = undefined }

  private slowest: { names: string[], stmt: Statement<string[], { id: number | null, n: number }> } | undefined

  /** The lowest cursor of every consumer, 0 while one has none: one query per acknowledgement, not one per consumer. */
  private slowestCursor (): number {
    if (!this.slowest) {
      const names = [...this.consumers]
      this.slowest = { names, stmt: this.db.prepare(`SELECT min(id) AS id, count(*) AS n FROM cursors WHERE name IN (${names.map(() => '?').join(', ')})`) }
    }
    const r = this.slowest.stmt.get(...this.slowest.names)!
    return r.n < this.slowest.names.length ? 0 : r.id ?? 0
  }

  /**
   * Attaches a cursor consumer (see SpoolConsumer). One that never ran starts at the head:
   * what was committed before it existed was handled by whatever came before it.
   */
  attach (c: SpoolConsumer, opts: { from?: 'head' | 'start' } = {}): void {
    if (this.attached.some((a) => a.c.name === c.name)) throw new Error(`a spool consumer named ${c.name} is attached already`)
    let position = this.s.cursor.get(c.name)?.id
    if (position === undefined) {
      position = opts.from === 'start' ? 0 : this.headId
      this.s.setCursor.run(c.name, position)
    }
    this.consumers.add(c.name)
    this.slowest = undefined
    this.attached.push({ c, position, failures: 0, streak: 0, failing: null, timer: undefined })
    this.schedulePump()
  }

  /** Hands every attached consumer what was committed after its position. */
  private schedulePump (): void {
    if (this.pumpScheduled || this.stopped) return
    this.pumpScheduled = true
    // at most one consumer transaction (and fsync) per few milliseconds: under load each one
    // takes many group commits' records; when idle the next one runs at once
    const wait = this.lastPumpAt + PUMP_INTERVAL_MS - Date.now()
    if (wait > 0) setTimeout(this.pump, wait)
    else setImmediate(this.pump)
  }

  private readonly pump = (): void => {
    this.pumpScheduled = false
    if (this.stopped) return
    this.lastPumpAt = Date.now()
    let more = false
    // at most a few rounds per turn of the event loop, so PUBACKs keep flowing
    for (let round = 0; round < 4; round++) {
      const work = this.work(() => true)
      if (work.length === 0) break
      // urgent consumers (alerting) commit and send first; the others after, in a transaction of their own
      const urgent = work.filter((w) => w.a.c.urgent)
      const rest = work.filter((w) => !w.a.c.urgent)
      if (urgent.length > 0) this.consumeGroup(urgent)
      if (rest.length > 0) this.consumeGroup(rest)
      if (round === 3) more = true
    }
    this.trimRecent()
    if (more) this.schedulePump()
  }

  /**
   * The consumers' state and cursors in one transaction, each consumer in a savepoint of its
   * own, so one that throws rolls back only itself; then each one's effects.
   */
  private consumeGroup (work: { a: Attached, rows: SpoolRow[], last: number }[]): void {
    let done: typeof work = []
    const failed: { a: Attached, err: unknown }[] = []
    let gone = { n: 0, bytes: 0 }
    // a consumer transaction is not fsynced (withoutFsync): one fsync fewer on the way from a reading to its alert
    this.withoutFsync(() => {
      try {
        atomically(this.db, () => {
          for (const w of work) {
            try {
              if (w.a.c.checkpointsItself) w.a.c.consume(w.rows)
              else { const g = this.consumeTx(w.a, w.rows, w.last); gone = { n: gone.n + g.n, bytes: gone.bytes + g.bytes } }
              done.push(w)
            } catch (err) { failed.push({ a: w.a, err }) }
          }
        })
      } catch (err) {
        // the transaction itself failed (disk full...): every consumer in it lost its work
        for (const w of done) if (!w.a.c.checkpointsItself) failed.push({ a: w.a, err })
        done = done.filter((w) => w.a.c.checkpointsItself)
        gone = { n: 0, bytes: 0 }
      }
    })
    this.afterAck(gone)
    if (failed.length) this.loadDedup() // the de-duplication checkpoint may have been rolled back
    for (const f of failed) this.fail(f.a, f.err)
    for (const w of done) this.succeed(w.a, w.last)
  }

  private fail (a: Attached, e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e))
    // its state in memory goes back to its last checkpoint (`failed`): feed it again from there
    if (a.c.checkpointsItself) a.position = this.cursor(a.c.name)
    a.failures++
    a.streak++
    a.failing = { code: 'VM_CONSUMER_FAILED', message: err.message, since: a.failing?.since ?? Date.now() }
    const backoffMs = Math.min(30_000, 500 * 2 ** Math.min(6, a.streak - 1))
    this.logger.error({ err, code: 'VM_CONSUMER_FAILED', consumer: a.c.name, position: a.position, retryInMs: backoffMs },
      `spool consumer ${a.c.name} failed; it stops until a retry succeeds (ingest goes on up to the spool's bound)`)
    try { a.c.failed?.(err) } catch (e2) { this.logger.error({ err: e2, consumer: a.c.name }, 'spool consumer failed to reset after a failure') }
    // it stays `failing` until a retry succeeds, so operators never see it healthy in between
    a.timer = setTimeout(() => { a.timer = undefined; this.schedulePump() }, backoffMs)
    a.timer.unref()
  }

  private succeed (a: Attached, last: number): void {
    a.position = last
    if (this.waiters.length) this.wakeWaiters()
    a.failing = null
    if (a.streak > 0) this.logger.info({ consumer: a.c.name, failures: a.streak }, `spool consumer ${a.c.name} recovered`)
    a.streak = 0
    try { a.c.committed?.() } catch (err) { this.logger.error({ err, consumer: a.c.name }, 'spool consumer effects after commit failed') }
  }

  /** Rows after `after`, from the commits kept in memory when they reach back that far, else from the database. */
  private rowsAfter (after: number, limit: number): SpoolRow[] {
    if (after >= this.headId) return []
    const first = this.recent.findIndex((r) => r.lastId > after)
    if (first >= 0 && this.recent[first]!.prevId <= after) {
      const out: SpoolRow[] = []
      for (let i = first; i < this.recent.length && out.length < limit; i++) for (const r of this.recent[i]!.rows) if (r.id > after) out.push(r)
      return out
    }
    return this.read(after, limit)
  }

  private trimRecent (): void {
    let min = Infinity
    for (const a of this.attached) min = Math.min(min, a.position)
    while (this.recent.length > 0 && (this.recent[0]!.lastId <= min || this.recentRows > 200_000)) this.recentRows -= this.recent.shift()!.rows.length
  }

  /** Every attached consumer, for readiness, statistics and metrics. */
  consumerStatus (): ConsumerStatus[] {
    const out: ConsumerStatus[] = this.attached.map((a) => ({
      name: a.c.name, position: a.position, lagRecords: Math.max(0, this.headId - a.position), failures: a.failures, failing: a.failing,
    }))
    // consumers that move their cursor themselves (the store's drain, alerting's timelines)
    for (const name of this.consumers) {
      if (this.attached.some((a) => a.c.name === name)) continue
      const position = this.cursor(name)
      out.push({ name, position, lagRecords: Math.max(0, this.headId - position), failures: 0, failing: null })
    }
    return out
  }

  private waiters: { name: string, id: number, resolve: () => void, reject: (err: Error) => void }[] = []

  private wakeWaiters (): void {
    this.waiters = this.waiters.filter((w) => {
      const a = this.attached.find((x) => x.c.name === w.name)
      if (!a || a.position < w.id) return true
      w.resolve()
      return false
    })
  }

  /**
   * Resolves once the attached consumer `name` has committed every record up to `id` (cluster
   * mode: a partition's position commits only after alerting judged what it appended). Rejects
   * when the spool stops first; waits as long as the consumer fails.
   */
  async whenConsumed (name: string, id: number): Promise<void> {
    const a = this.attached.find((x) => x.c.name === name)
    if (!a) throw new Error(`no spool consumer named ${name} is attached`)
    if (a.position >= id) return
    if (this.stopped) throw new Error('the spool stopped')
    await new Promise<void>((resolve, reject) => { this.waiters.push({ name, id, resolve, reject }) })
  }

  private syncing: Promise<void> | undefined

  /**
   * Makes every commit so far durable (one fsync of the WAL, which holds them all), for a spool
   * that commits without (`fsync: false`): the callers of one turn of the event loop share it.
   * It also makes durable what the consumers committed in the same database.
   */
  sync (): Promise<void> {
    this.syncing ??= new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        this.syncing = undefined
        try {
          // a write is needed: a transaction that writes nothing syncs nothing. FULL is the connection's level (openDatabase)
          this.s.setCursor.run(SYNCED, this.headId)
          resolve()
        } catch (err) { reject(err as Error) }
      })
    })
    return this.syncing
  }

  /** Resolves once every attached consumer has consumed everything committed so far (tests, shutdown). */
  async consumersIdle (timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs
    while (this.attached.some((a) => a.position < this.headId)) {
      if (Date.now() > until) throw new Error(`spool consumers did not catch up: ${JSON.stringify(this.consumerStatus())}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  /** Stops feeding consumers (shutdown): the next start feeds them from their cursors. */
  stopConsumers (): void {
    if (!this.stopped) this.pump() // what is committed is consumed before the database closes
    this.stopped = true
    for (const a of this.attached) if (a.timer) clearTimeout(a.timer)
    for (const w of this.waiters.splice(0)) w.reject(new Error('the spool stopped'))
  }

  /** Called after each commit with the readings it accepted: a wake-up for tails that keep no state (the live stream, the drain's timer). */
  onCommit (listener: (rows: readonly SpoolRow[]) => void): void {
    this.listeners.push(listener)
  }

  append (req: AppendRequest, done: (err: Error | null, result?: AppendResult) => void): void {
    this.queue.push({ req, done })
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flush)
    }
  }

  appendAsync (req: AppendRequest): Promise<AppendResult> {
    return new Promise((resolve, reject) => this.append(req, (err, res) => err ? reject(err) : resolve(res!)))
  }

  /** Commits everything queued so far in one transaction. */
  readonly flush = (): void => {
    this.scheduled = false
    const batch = this.queue
    if (batch.length === 0) return
    if (this.isFull()) { this.hold(); return }
    this.queue = []
    this.stats.heldAppends = 0
    const prevId = this.headId
    let out
    try {
      out = this.opts.fsync === false ? this.withoutFsync(() => this.commitBatch(batch)) : this.commitBatch(batch)
    } catch (err) {
      this.logger.error({ err, requests: batch.length }, 'spool commit failed; the readings were not acknowledged')
      // the seqs of the failed transaction were added in memory: go back to what the database holds
      this.loadDedup()
      const size = this.s.sizeUpTo.get(Number.MAX_SAFE_INTEGER)!
      this.rows = size.n
      this.bytes = size.bytes
      for (const p of batch) p.done(err as Error)
      return
    }
    this.stats.commits++
    for (let i = 0; i < batch.length; i++) {
      const r = out.results[i]!
      this.stats.accepted += r.accepted
      this.stats.duplicates += r.duplicates
      batch[i]!.done(null, r)
    }
    if (out.rows.length) {
      if (this.attached.length) {
        this.recent.push({ prevId, lastId: this.headId, rows: out.rows })
        this.recentRows += out.rows.length
        this.schedulePump()
      }
      for (const l of this.listeners) l(out.rows)
      if (this.attached.length) this.pumpUrgent()
    }
  }

  /**
   * Urgent consumers (alerting) take the rows of a commit right after it, without waiting for
   * the pump's spacing: under load the pump ran a few milliseconds ago, and a crisis reading
   * then waited 1–4 ms (and a timer's lateness) between its PUBACK and its alert (p50 4.2 →
   * 2.8 ms, p99 16 → 9.6 ms at 5,000 readings/s, bench/README.md). Costs nothing under load:
   * commits are then a few milliseconds apart anyway.
   */
  private pumpUrgent (): void {
    if (this.stopped) return
    const work = this.work((a) => a.c.urgent === true)
    if (work.length > 0) this.consumeGroup(work)
  }

  /** What each picked consumer has to consume next, except those waiting to retry after a failure. */
  private work (pick: (a: Attached) => boolean): { a: Attached, rows: SpoolRow[], last: number }[] {
    const work: { a: Attached, rows: SpoolRow[], last: number }[] = []
    for (const a of this.attached) {
      if (a.timer || !pick(a)) continue
      const rows = this.rowsAfter(a.position, 5000)
      if (rows.length) work.push({ a, rows, last: rows[rows.length - 1]!.id })
    }
    return work
  }

  cursor (name: string): number {
    return this.s.cursor.get(name)?.id ?? 0
  }

  /**
   * Marks a device's seq as seen without appending it: a copy is dropped as a duplicate from
   * now on (checkpointed with the rest at the next de-duplication checkpoint). Cluster mode:
   * the readings of a partition's recent past that the previous owner fed, which a node taking
   * the partition over reads back from the log.
   */
  remember (deviceKey: number, seq: number): void {
    let set = this.seqs.get(deviceKey)
    if (!set) this.seqs.set(deviceKey, set = new SeqSet())
    if (set.has(seq)) return
    set.add(seq)
    this.dirtySeqs.add(deviceKey)
  }

  /** Readings of the records after `afterId`: whole records, about `limit` readings (one record more at most). */
  read (afterId: number, limit: number): SpoolRow[] {
    const out: SpoolRow[] = []
    for (const [id, n, devices, data] of this.s.read.iterate(afterId)) {
      unpack(out, id, JSON.parse(devices) as [number, string, string][], n, data)
      if (out.length >= limit) break
    }
    return out
  }

  /**
   * Moves a consumer's cursor to `id` inside the caller's transaction (a savepoint of it), so
   * that a consumer which checkpoints itself commits its state and its cursor together; the
   * rows stay until `ack` (a separate, idempotent step) drops what every consumer has.
   */
  commitCursor (name: string, id: number): void {
    if (!this.db.inTransaction) throw new Error(`commitCursor(${name}) runs inside the transaction that writes the consumer's state`)
    this.s.setCursor.run(name, id)
  }

  /**
   * Marks rows up to `id` as delivered to the store and removes them from the spool.
   * `rejected` rows (refused by the store for good) go to the quarantine table instead.
   */
  ack (name: string, id: number, rejected: readonly RejectedReading[] = []): void {
    // No fsync for this one: if a crash loses the ack, the drain sends the rows again and
    // the store ignores what it already has (writes are idempotent by device and seq).
    // The next fully synced commit makes it durable anyway.
    const gone = this.withoutFsync(() => {
      try {
        return this.ackTx(name, id, rejected)
      } catch (err) {
        // the de-duplication checkpoint may have been rolled back with it
        this.loadDedup()
        throw err
      }
    })
    this.stats.quarantined += rejected.length
    this.afterAck(gone)
  }

  /**
   * Runs `fn` (a consumer's or the drain's transaction) with synchronous=NORMAL: in WAL mode a
   * transaction committed so survives the process being killed (the WAL is in the OS), only not
   * a power loss, and what it records can be done again; the readings themselves were fsynced
   * before their PUBACK. The spool's own commits stay FULL.
   */
  private withoutFsync<T> (fn: () => T): T {
    // inside a transaction (the forwarder acknowledges from its checkpoint slice, which runs in the
    // consumers' transaction) SQLite refuses to change the level: that transaction has it already
    if (this.db.inTransaction) return fn()
    this.s.syncNormal.run()
    try { return fn() } finally { this.s.syncFull.run() }
  }

  private afterAck (gone: { n: number, bytes: number }): void {
    this.rows -= gone.n
    this.bytes -= gone.bytes
    if (this.fullSince !== undefined && !this.isFull()) {
      const heldMs = Date.now() - this.fullSince
      this.stats.backpressureMs += heldMs
      this.fullSince = undefined
      this.logger.info({ heldMs, rows: this.rows, bytes: this.bytes }, 'spool has room again: held PUBACKs are released')
      if (!this.scheduled) { this.scheduled = true; setImmediate(this.flush) }
    }
  }

  private isFull (): boolean {
    return (this.opts.maxRows !== undefined && this.rows >= this.opts.maxRows) ||
      (this.opts.maxBytes !== undefined && this.bytes >= this.opts.maxBytes)
  }

  /** Back-pressure: appends wait (so devices get their PUBACKs later) until the drain frees space; nothing is dropped. */
  private hold (): void {
    this.stats.heldAppends = this.queue.length
    if (this.fullSince !== undefined) return
    this.fullSince = Date.now()
    this.stats.backpressureEpisodes++
    this.logger.warn({ rows: this.rows, bytes: this.bytes, maxRows: this.opts.maxRows, maxBytes: this.opts.maxBytes, held: this.queue.length },
      'spool is full: PUBACKs are held until the telemetry store catches up (back-pressure; nothing is dropped)')
  }

  /** Spool occupancy against its bounds, for metrics and readiness. */
  pressure (): { rows: number, bytes: number, maxRows?: number, maxBytes?: number, full: boolean, held: number } {
    const p: { rows: number, bytes: number, maxRows?: number, maxBytes?: number, full: boolean, held: number } = { rows: this.rows, bytes: this.bytes, full: this.fullSince !== undefined, held: this.queue.length }
    if (this.opts.maxRows !== undefined) p.maxRows = this.opts.maxRows
    if (this.opts.maxBytes !== undefined) p.maxBytes = this.opts.maxBytes
    return p
  }

  /** Readings the store refused for good, newest first (operators). */
  quarantined (limit = 100): { deviceId: string, seq: number, reason: string, reading: StoredReading }[] {
    return this.db.prepare<[number], { device_id: string, seq: number, reason: string, reading: string }>('SELECT device_id, seq, reason, reading FROM quarantine ORDER BY id DESC LIMIT ?')
      .all(limit).map((r) => ({ deviceId: r.device_id, seq: r.seq, reason: r.reason, reading: JSON.parse(r.reading) as StoredReading }))
  }

  /** Readings in the spool. */
  /** The id of the newest committed record: everything accepted so far is at or before it. */
  head (): number { return this.headId }

  size (): number {
    return this.s.countAfter.get(0)!.n
  }

  /** Rows the named consumer has not acknowledged yet (other consumers may still hold older rows). */
  pendingFor (name: string): number {
    return this.s.countAfter.get(this.cursor(name))!.n
  }

}

/** Packs the readings of one spool record. */
class RecordBuilder {
  private readonly index = new Map<number, number>()
  private devices: [number, string, string][] = []
  private values: number[] = []

  add (deviceKey: number, r: StoredReading): void {
    let d = this.index.get(deviceKey)
    if (d === undefined) { d = this.devices.length; this.index.set(deviceKey, d); this.devices.push([deviceKey, r.deviceId, r.residentId]) }
    this.values.push(d, r.seq, r.ts, r.hr ?? NaN, r.sys ?? NaN, r.dia ?? NaN,
      r.activity === undefined ? NaN : ACTIVITY_CODE.get(r.activity)!, r.motion === undefined ? NaN : r.motion ? 1 : 0, r.confidence ?? NaN)
  }

  finish (): { devices: string, data: Buffer } {
    const out = { devices: JSON.stringify(this.devices), data: Buffer.from(Float64Array.from(this.values).buffer) }
    this.index.clear()
    this.devices = []
    this.values = []
    return out
  }
}

function unpack (out: SpoolRow[], id: number, devices: readonly [number, string, string][], n: number, data: Buffer): void {
  // a float64 view when the blob is 8-byte aligned (a copy otherwise): one index per field instead of a readDoubleLE call
  const f = data.byteOffset % 8 === 0
    ? new Float64Array(data.buffer, data.byteOffset, n * FIELDS)
    : new Float64Array(data.buffer.slice(data.byteOffset, data.byteOffset + n * READING_BYTES))
  for (let i = 0, o = 0; i < n; i++, o += FIELDS) {
    const d = devices[f[o]!]!
    const row: SpoolRow = { id, deviceId: d[1], residentId: d[2], seq: f[o + 1]!, ts: f[o + 2]! }
    const hr = f[o + 3]!; if (hr === hr) row.hr = hr
    const sys = f[o + 4]!; if (sys === sys) row.sys = sys
    const dia = f[o + 5]!; if (dia === dia) row.dia = dia
    const act = f[o + 6]!; if (act === act) row.activity = ACTIVITIES[act]
    const motion = f[o + 7]!; if (motion === motion) row.motion = motion === 1
    const conf = f[o + 8]!; if (conf === conf) row.confidence = conf
    out.push(row)
  }
}

/**
 * Databases written before the spool kept one row per commit had one row per reading and a
 * `seen` row per (device, seq): those become messages of one reading (same ids, so the
 * consumers' cursors stay valid) and seq ranges.
 */
function migrateRowPerReading (db: DB): void {
  const old = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('spool', 'seen')").all().map((r) => r.name)
  if (old.length === 0) return
  const saveSeqs = db.prepare('INSERT INTO seq_ranges (device_key, ranges) VALUES (?, ?) ON CONFLICT(device_key) DO UPDATE SET ranges = excluded.ranges')
  db.transaction(() => {
    if (old.includes('spool')) {
      const insert = db.prepare('INSERT INTO spool_records (id, n, devices, data) VALUES (?, 1, ?, ?)')
      const key = db.prepare<[string], { key: number }>('SELECT key FROM devices WHERE id = ?')
      const one = new RecordBuilder()
      for (const t of db.prepare<[], RawTuple>('SELECT id, device_id, resident_id, seq, ts, hr, sys, dia, activity, motion, confidence FROM spool ORDER BY id').raw(true).all()) {
        const r = fromTuple(t)
        one.add(key.get(r.deviceId)?.key ?? 0, r)
        const { devices, data } = one.finish()
        insert.run(r.id, devices, data)
      }
      db.exec('DROP TABLE spool')
    }
    if (old.includes('seen')) {
      let cur: { key: number, set: SeqSet } | undefined
      for (const [key, seq] of db.prepare<[], [number, number]>('SELECT device_key, seq FROM seen ORDER BY device_key, seq').raw(true).iterate()) {
        if (cur?.key !== key) { if (cur) saveSeqs.run(cur.key, cur.set.toBuffer()); cur = { key, set: new SeqSet() } }
        cur.set.add(seq)
      }
      if (cur) saveSeqs.run(cur.key, cur.set.toBuffer())
      db.exec('DROP TABLE seen')
    }
  })()
}

type RawTuple = [number, string, string, number, number, number | null, number | null, number | null, string | null, number | null, number | null]

function fromTuple (t: RawTuple): SpoolRow {
  const row: SpoolRow = { id: t[0], deviceId: t[1], residentId: t[2], seq: t[3], ts: t[4] }
  if (t[5] !== null) row.hr = t[5]
  if (t[6] !== null) row.sys = t[6]
  if (t[7] !== null) row.dia = t[7]
  if (t[8] !== null) row.activity = t[8] as SpoolRow['activity']
  if (t[9] !== null) row.motion = t[9] === 1
  if (t[10] !== null) row.confidence = t[10]
  return row
}
