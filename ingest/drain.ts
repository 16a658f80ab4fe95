import type { Logger } from '../core/index.ts'
import type { Spool, SpoolRow } from './spool.ts'
import type { RejectedReading, TelemetryStore, WriteOutcome } from './store.ts'


/**
 * Moves readings from the spool to the telemetry store in batches. Rows leave the spool
 * only after the store confirmed them; a failure keeps them and retries with back-off,
 * so an outage of the store only grows the spool.
 */
export class Drain {
  private running = false
  private again = false
  private stopped = false
  private failures = 0
  private timer: NodeJS.Timeout | undefined
  private tick: NodeJS.Timeout | undefined
  private idleWaiters: (() => void)[] = []
  readonly stats = { drained: 0, batches: 0, failures: 0, quarantined: 0, retryAfterHonoured: 0 }

  private readonly cursor: string

  constructor (
    private readonly spool: Spool,
    /** where the rows go: the telemetry store, or in cluster mode the reading log (cluster/node.ts) */
    private readonly store: Pick<TelemetryStore, 'kind' | 'write'>,
    private readonly logger: Logger,
    private readonly opts: {
      /** the spool cursor this drain moves (default 'store') */
      cursor?: string
      /**
       * Moves the spool cursor at most this often (default 0: after every batch). For a sink
       * where a batch sent again is harmless (the reading log drops it by message id): the
       * drain's batches under light load are one commit each, and each acknowledgement is a
       * SQLite transaction. The onDrained listeners are still called after every batch.
       */
      ackEveryMs?: number
      batch: number
      intervalMs: number
      maxBackoffMs?: number
      /** batches written at the same time; they are acknowledged in spool order */
      concurrency?: number
    },
  ) {
    this.cursor = opts.cursor ?? 'store'
  }

  private readonly drainedListeners: ((rows: readonly SpoolRow[]) => void)[] = []
  /**
   * Readings committed since the drain last found the spool exhausted, in spool order: the
   * drain takes them from here instead of reading back what was just written. After a
   * restart, a failed write or when this grows past its bound, the drain reads the spool.
   */
  private mem: SpoolRow[] = []
  private memValid = false

  /** Called with each batch once the store confirmed it (e.g. to mark roll-up windows stale). */
  onDrained (listener: (rows: readonly SpoolRow[]) => void): void {
    this.drainedListeners.push(listener)
  }

  start (): void {
    // A pass starts at once when a full batch is waiting, else after intervalMs: the store
    // then takes few large transactions instead of one per ingest commit.
    let pending = 0
    const memMax = Math.max(50_000, 4 * this.opts.batch)
    this.spool.onCommit((rows) => {
      if (this.memValid) {
        if (this.mem.length + rows.length <= memMax) for (const r of rows) this.mem.push(r)
        else { this.memValid = false; this.mem = [] }
      }
      pending += rows.length
      if (pending >= this.opts.batch) { pending = 0; this.kick(); return }
      this.tick ??= setTimeout(() => { this.tick = undefined; pending = 0; this.kick() }, this.opts.intervalMs)
    })
    this.kick()
  }

  /** Retries at once instead of after the back-off (the sink is reachable again). */
  retryNow (): void {
    // a pass failing right now would otherwise arm its back-off after this (up to 30 s of held PUBACKs)
    this.retrySoon = true
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined }
    this.kick()
  }

  private retrySoon = false

  /** Asks for a drain pass; passes never overlap. */
  kick (): void {
    if (this.stopped) return
    if (this.running) { this.again = true; return }
    if (this.timer) return // a retry is scheduled
    this.running = true
    this.retrySoon = false // this pass is the retry
    setImmediate(() => { void this.pass() })
  }

  private async pass (): Promise<void> {
    // A sliding window of `concurrency` writes: while InfluxDB ingests some batches, the
    // next one is read and serialised. Batches are acknowledged strictly in spool order.
    const inflight: { rows: SpoolRow[], result: Promise<{ ok: true, value: WriteOutcome | void } | { ok: false, error: unknown }> }[] = []
    try {
      // the sink confirmed up to `unacked` already, even if the cursor was not written yet (ackEveryMs)
      let after = Math.max(this.spool.cursor(this.cursor), this.unacked ?? 0)
      let exhausted = false
      this.again = false
      for (;;) {
        while (!exhausted && !this.stopped && inflight.length < Math.max(1, this.opts.concurrency ?? 1)) {
          const rows = this.take(after)
          if (rows.length === 0) { exhausted = true; break }
          after = rows[rows.length - 1]!.id
          inflight.push({ rows, result: this.store.write(rows).then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error })) })
          if (rows.length < this.opts.batch) exhausted = true
        }
        const head = inflight.shift()
        if (!head) {
          // new readings were committed meanwhile: go on reading after the last batch
          if (this.again && !this.stopped) { this.again = false; exhausted = false; continue }
          break
        }
        const r = await head.result
        // a later batch that succeeded after this one failed is written again next time,
        // which the store ignores (writes are idempotent)
        if (!r.ok) throw r.error
        const rows = head.rows
        const rejected = r.value?.rejected ?? []
        if (rejected.length) {
          this.stats.quarantined += rejected.length
          this.logger.warn({ store: this.store.kind, quarantined: rejected.length, first: { deviceId: rejected[0]!.row.deviceId, seq: rejected[0]!.row.seq, reason: rejected[0]!.reason } },
            'the telemetry store refused readings for good; they are quarantined in the spool database, the rest of the batch is stored')
        }
        this.acknowledge(rows[rows.length - 1]!.id, rejected)
        for (const l of this.drainedListeners) l(rows)
        this.stats.drained += rows.length - rejected.length
        this.stats.batches++
        if (this.failures > 0) this.logger.info({ store: this.store.kind }, 'telemetry store reachable again; draining the spool')
        this.failures = 0
      }
    } catch (err) {
      this.memValid = false // the retry reads what is unconfirmed from the spool
      this.mem = []
      await Promise.all(inflight.map((x) => x.result)) // let the rest settle before a retry re-sends them
      this.failures++
      this.stats.failures++
      // The server's Retry-After (429/503) wins over our own exponential back-off with jitter.
      const retryAfter = (err as { retryAfterMs?: unknown }).retryAfterMs
      const backoff = Math.min(this.opts.maxBackoffMs ?? 30_000, 100 * 2 ** Math.min(this.failures, 10)) * (0.5 + Math.random() / 2)
      const delay = this.retrySoon ? 0 : typeof retryAfter === 'number' && retryAfter >= 0 ? retryAfter : backoff
      this.retrySoon = false
      if (delay === retryAfter) this.stats.retryAfterHonoured++
      this.logger.warn({ err, store: this.store.kind, retryInMs: Math.round(delay), retryAfter: delay === retryAfter, spooled: this.spool.size() }, 'telemetry store write failed; readings stay in the spool')
      this.timer = setTimeout(() => { this.timer = undefined; this.kick() }, delay)
    } finally {
      this.running = false
    }
    if (this.again && !this.timer) this.kick()
    else if (!this.timer) { const w = this.idleWaiters; this.idleWaiters = []; w.forEach((f) => f()) }
  }

  private ackedAt = 0
  private unacked: number | undefined
  private ackTimer: NodeJS.Timeout | undefined

  private acknowledge (id: number, rejected: RejectedReading[], force = false): void {
    const every = this.opts.ackEveryMs ?? 0
    // after stop() at once: a timer would fire after the database is closed, and the rows be sent again at restart
    if (force || every === 0 || this.stopped || rejected.length > 0 || Date.now() - this.ackedAt >= every) {
      clearTimeout(this.ackTimer)
      this.ackTimer = undefined
      this.unacked = undefined
      this.spool.ack(this.cursor, id, rejected)
      this.ackedAt = Date.now()
      return
    }
    this.unacked = id
    this.ackTimer ??= setTimeout(() => { this.ackTimer = undefined; this.flushAck() }, every)
  }

  /** Moves the cursor to the last batch confirmed (ackEveryMs). */
  private flushAck (): void {
    if (this.unacked === undefined) return
    const id = this.unacked
    try {
      this.acknowledge(id, [], true)
    } catch (err) {
      // the rows are sent again after a restart, which the sink tolerates (ackEveryMs)
      this.logger.warn({ err, cursor: this.cursor }, 'could not move the drain\'s spool cursor; it moves with the next batch')
    }
  }

  /** The next batch after spool id `after`: whole spool records (a record is one commit), about `batch` readings. */
  private take (after: number): SpoolRow[] {
    const limit = this.opts.batch
    if (this.memValid) {
      const mem = this.mem
      let i = 0
      while (i < mem.length && mem[i]!.id <= after) i++
      let j = i
      while (j < mem.length && (j - i < limit || mem[j]!.id === mem[j - 1]!.id)) j++
      const rows = mem.slice(i, j)
      this.mem = j === mem.length ? [] : mem.slice(j)
      return rows
    }
    const rows = this.spool.read(after, limit)
    // the spool is exhausted (nothing can be committed before this returns): from now on commits arrive in memory
    if (rows.length < limit) { this.memValid = true; this.mem = [] }
    return rows
  }

  /** Resolves when the store has everything in the spool (tests and graceful shutdown). */
  async idle (): Promise<void> {
    this.flushAck()
    if (!this.running && !this.timer && this.spool.pendingFor(this.cursor) === 0) return
    await new Promise<void>((resolve) => { this.idleWaiters.push(resolve); this.kick() })
    if (this.spool.pendingFor(this.cursor) > 0) return this.idle()
  }

  /**
   * Resolves once the pass in flight (if any) has ended. After stop() no new pass starts,
   * so `stop(); await settled()` makes it safe to close the spool's database.
   */
  async settled (): Promise<void> {
    while (this.running) await new Promise((resolve) => setTimeout(resolve, 5))
    this.flushAck()
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.ackTimer)
    this.ackTimer = undefined
    this.flushAck()
    if (this.tick) clearTimeout(this.tick)
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }
}
