import type { Logger } from '../core/index.ts'
import type { Spool } from './spool.ts'
import type { TelemetryStore } from './store.ts'

const CURSOR = 'store'

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
  readonly stats = { drained: 0, batches: 0, failures: 0 }

  constructor (
    private readonly spool: Spool,
    private readonly store: TelemetryStore,
    private readonly logger: Logger,
    private readonly opts: { batch: number, intervalMs: number, maxBackoffMs?: number },
  ) {}

  start (): void {
    // A pass starts at once when a full batch is waiting, else after intervalMs: the store
    // then takes few large transactions instead of one per ingest commit.
    let pending = 0
    this.spool.onCommit((rows) => {
      pending += rows.length
      if (pending >= this.opts.batch) { pending = 0; this.kick(); return }
      this.tick ??= setTimeout(() => { this.tick = undefined; pending = 0; this.kick() }, this.opts.intervalMs)
    })
    this.kick()
  }

  /** Asks for a drain pass; passes never overlap. */
  kick (): void {
    if (this.stopped) return
    if (this.running) { this.again = true; return }
    if (this.timer) return // a retry is scheduled
    this.running = true
    setImmediate(() => { void this.pass() })
  }

  private async pass (): Promise<void> {
    try {
      for (;;) {
        this.again = false
        const rows = this.spool.read(this.spool.cursor(CURSOR), this.opts.batch)
        if (rows.length === 0) break
        await this.store.write(rows)
        this.spool.ack(CURSOR, rows[rows.length - 1]!.id)
        this.stats.drained += rows.length
        this.stats.batches++
        if (this.failures > 0) this.logger.info({ store: this.store.kind }, 'telemetry store reachable again; draining the spool')
        this.failures = 0
        if (this.stopped) break
        if (rows.length < this.opts.batch && !this.again) break
      }
    } catch (err) {
      this.failures++
      this.stats.failures++
      const delay = Math.min(this.opts.maxBackoffMs ?? 30_000, 100 * 2 ** Math.min(this.failures, 10)) * (0.5 + Math.random() / 2)
      this.logger.warn({ err, store: this.store.kind, retryInMs: Math.round(delay), spooled: this.spool.size() }, 'telemetry store write failed; readings stay in the spool')
      this.timer = setTimeout(() => { this.timer = undefined; this.kick() }, delay)
    } finally {
      this.running = false
    }
    if (this.again && !this.timer) this.kick()
    else if (!this.timer) { const w = this.idleWaiters; this.idleWaiters = []; w.forEach((f) => f()) }
  }

  /** Resolves when the spool is empty (tests and graceful shutdown). */
  async idle (): Promise<void> {
    if (!this.running && !this.timer && this.spool.size() === 0) return
    await new Promise<void>((resolve) => { this.idleWaiters.push(resolve); this.kick() })
    if (this.spool.size() > 0) return this.idle()
  }

  /**
   * Resolves once the pass in flight (if any) has ended. After stop() no new pass starts,
   * so `stop(); await settled()` makes it safe to close the spool's database.
   */
  async settled (): Promise<void> {
    while (this.running) await new Promise((resolve) => setTimeout(resolve, 5))
  }

  stop (): void {
    this.stopped = true
    if (this.tick) clearTimeout(this.tick)
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }
}
