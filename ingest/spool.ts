import type { DB, Reading, StoredReading, Logger } from '../core/index.ts'
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
 * Work that must commit atomically with the readings (e.g. alert state), so that an
 * accepted reading and its consequences are either both durable or both absent.
 * `prepare` runs inside the transaction and must only write to the database; the
 * in-memory effects go in `commit`, which runs only when the transaction succeeded.
 */
export interface CommitParticipant<T = unknown> {
  prepare(accepted: readonly SpoolRow[]): T
  commit(prepared: T): void
  rollback?(prepared: T | undefined): void
}

interface Pending { req: AppendRequest, done: (err: Error | null, result?: AppendResult) => void }

export interface SpoolOptions {
  deadLetterMax: number
  /** bound on spooled readings; above it appends (and so PUBACKs) wait for the drain */
  maxRows?: number
  /** bound on the spool's approximate size in bytes, likewise */
  maxBytes?: number
}

/** Approximate bytes one spooled reading takes (SQLite row, index entry, numbers): for the byte bound. */
const ROW_BYTES = 64
const rowBytes = (deviceId: string, residentId: string, activity: string | undefined): number => ROW_BYTES + deviceId.length + residentId.length + (activity?.length ?? 0)

/**
 * The durable spool: a PUBACK is sent only after `append` calls back, and it calls back
 * only after the SQLite transaction holding the readings has been committed (fsync).
 * Requests that arrive while the event loop is busy are committed together in one
 * transaction (group commit), so the cost of an fsync is shared by all of them.
 */
export class Spool {
  private queue: Pending[] = []
  private scheduled = false
  private readonly participants: CommitParticipant<unknown>[] = []
  private readonly listeners: ((rows: readonly SpoolRow[]) => void)[] = []
  private readonly s
  private readonly commitBatch: (batch: Pending[]) => { results: AppendResult[], rows: SpoolRow[], prepared: unknown[] }
  private readonly ackTx: (name: string, id: number, rejected: readonly RejectedReading[]) => { n: number, bytes: number }
  private deadLettersSincePrune = 0
  /** counters for metrics and tests */
  readonly stats = { commits: 0, accepted: 0, duplicates: 0, backpressureEpisodes: 0, backpressureMs: 0, heldAppends: 0, quarantined: 0 }
  private rows = 0
  private bytes = 0
  private readonly consumers = new Set<string>(['store'])
  private fullSince: number | undefined

  constructor (private readonly db: DB, private readonly logger: Logger, private readonly opts: SpoolOptions) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS spool (
        -- AUTOINCREMENT: ids must never be reused after the drain deleted rows, or the cursor would skip them
        id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, resident_id TEXT NOT NULL, seq INTEGER NOT NULL,
        ts INTEGER NOT NULL, hr REAL, sys REAL, dia REAL, activity TEXT, motion INTEGER, confidence REAL);
      CREATE TABLE IF NOT EXISTS seen (device_key INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (device_key, seq)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS quarantine (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, resident_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
        reading TEXT NOT NULL, reason TEXT NOT NULL, quarantined_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, received_at INTEGER NOT NULL,
        code TEXT NOT NULL, message TEXT NOT NULL, payload BLOB NOT NULL);
    `)
    this.s = {
      seen: db.prepare('INSERT OR IGNORE INTO seen (device_key, seq) VALUES (?, ?)'),
      insert: db.prepare('INSERT INTO spool (device_id, resident_id, seq, ts, hr, sys, dia, activity, motion, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      deadLetter: db.prepare('INSERT INTO dead_letters (device_id, received_at, code, message, payload) VALUES (?, ?, ?, ?, ?)'),
      pruneDeadLetters: db.prepare('DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?'),
      // arrays, not objects: the drain reads every row once, and this halves the cost
      read: db.prepare<[number, number], RawTuple>('SELECT id, device_id, resident_id, seq, ts, hr, sys, dia, activity, motion, confidence FROM spool WHERE id > ? ORDER BY id LIMIT ?').raw(true),
      cursor: db.prepare<[string], { id: number }>('SELECT id FROM cursors WHERE name = ?'),
      setCursor: db.prepare('INSERT INTO cursors (name, id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET id = excluded.id'),
      deleteUpTo: db.prepare('DELETE FROM spool WHERE id <= ?'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM spool'),
      countAfter: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM spool WHERE id > ?'),
      sizeUpTo: db.prepare<[number], { n: number, bytes: number }>(`SELECT count(*) AS n, coalesce(sum(${ROW_BYTES} + length(device_id) + length(resident_id) + coalesce(length(activity), 0)), 0) AS bytes FROM spool WHERE id <= ?`),
      quarantine: db.prepare('INSERT INTO quarantine (device_id, resident_id, seq, ts, reading, reason, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    }
    const initial = this.s.sizeUpTo.get(Number.MAX_SAFE_INTEGER)!
    this.rows = initial.n
    this.bytes = initial.bytes
    this.commitBatch = db.transaction((batch: Pending[]) => {
      const results: AppendResult[] = []
      const rows: SpoolRow[] = []
      const now = Date.now()
      for (const { req } of batch) {
        const res: AppendResult = { accepted: 0, duplicates: 0 }
        for (const r of req.readings) {
          if (this.s.seen.run(req.deviceKey, r.seq).changes === 0) { res.duplicates++; continue }
          const info = this.s.insert.run(req.deviceId, req.residentId, r.seq, r.ts, r.hr ?? null, r.sys ?? null, r.dia ?? null,
            r.activity ?? null, r.motion === undefined ? null : r.motion ? 1 : 0, r.confidence ?? null)
          res.accepted++
          this.rows++
          this.bytes += rowBytes(req.deviceId, req.residentId, r.activity)
          rows.push({ ...r, id: Number(info.lastInsertRowid), deviceId: req.deviceId, residentId: req.residentId })
        }
        if (req.deadLetter) {
          const d = req.deadLetter
          this.s.deadLetter.run(d.deviceId, now, d.code, d.message, d.payload)
          this.deadLettersSincePrune++
        }
        results.push(res)
      }
      if (this.deadLettersSincePrune > 100) {
        this.s.pruneDeadLetters.run(this.opts.deadLetterMax)
        this.deadLettersSincePrune = 0
      }
      const prepared = this.participants.map((p) => p.prepare(rows))
      return { results, rows, prepared }
    })
    this.ackTx = db.transaction((name: string, id: number, rejected: readonly RejectedReading[]) => {
      const now = Date.now()
      for (const { row, reason } of rejected) {
        this.s.quarantine.run(row.deviceId, row.residentId, row.seq, row.ts, JSON.stringify(row), reason.slice(0, 1000), now)
      }
      this.s.setCursor.run(name, id)
      // a row leaves only when every consumer (the store's drain, the forwarder's windows) is past it
      let upTo = id
      for (const c of this.consumers) if (c !== name) upTo = Math.min(upTo, this.s.cursor.get(c)?.id ?? 0)
      const n = upTo > 0 ? this.s.deleteUpTo.run(upTo).changes : 0
      // bytes leave in proportion: summing the deleted rows' sizes would cost a scan per batch
      return { n, bytes: this.rows > 0 ? Math.round(this.bytes * Math.min(1, n / this.rows)) : 0 }
    })
  }

  /** Names a consumer that reads the spool from its own cursor; rows stay until every consumer acknowledged them. */
  addConsumer (name: string): void { this.consumers.add(name) }

  addParticipant<T> (p: CommitParticipant<T>): void {
    this.participants.push(p as CommitParticipant<unknown>)
  }

  /** Called after each commit with the readings it accepted (e.g. to wake the drain). */
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
    let out
    try {
      out = this.commitBatch(batch)
    } catch (err) {
      this.logger.error({ err, requests: batch.length }, 'spool commit failed; the readings were not acknowledged')
      for (const p of this.participants) p.rollback?.(undefined)
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
    this.participants.forEach((p, i) => p.commit(out.prepared[i]))
    if (out.rows.length) for (const l of this.listeners) l(out.rows)
  }

  cursor (name: string): number {
    return this.s.cursor.get(name)?.id ?? 0
  }

  read (afterId: number, limit: number): SpoolRow[] {
    return this.s.read.all(afterId, limit).map(fromTuple)
  }

  /**
   * Marks rows up to `id` as delivered to the store and removes them from the spool.
   * `rejected` rows (refused by the store for good) go to the quarantine table instead.
   */
  ack (name: string, id: number, rejected: readonly RejectedReading[] = []): void {
    // No fsync for this one: if a crash loses the ack, the drain sends the rows again and
    // the store ignores what it already has (writes are idempotent by device and seq).
    // The next fully synced commit makes it durable anyway.
    this.db.pragma('synchronous = NORMAL')
    let gone
    try {
      gone = this.ackTx(name, id, rejected)
    } finally {
      this.db.pragma('synchronous = FULL')
    }
    this.stats.quarantined += rejected.length
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

  size (): number {
    return this.s.count.get()!.n
  }

  /** Rows the named consumer has not acknowledged yet (other consumers may still hold older rows). */
  pendingFor (name: string): number {
    return this.s.countAfter.get(this.cursor(name))!.n
  }

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
