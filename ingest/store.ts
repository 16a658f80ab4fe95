import type { RuleField, RuleReading, StoredReading } from '../core/index.ts'

/** A reading the store refused for good (e.g. HTTP 400 for its line): it is quarantined, not retried. */
export interface RejectedReading { row: StoredReading, reason: string }

/** What a write achieved: every row not listed in `rejected` is confirmed by the store. */
export interface WriteOutcome { rejected: RejectedReading[] }

/** One window of a resident's readings (`aggregate`). Means are undefined when the window has no such value. */
export interface WindowAggregate {
  /** window start, epoch ms */
  start: number
  count: number
  hrMean?: number
  hrMin?: number
  hrMax?: number
  sysMean?: number
  sysMax?: number
  diaMean?: number
  diaMax?: number
}

/**
 * A failed write the drain should retry. `retryAfterMs` is the server's `Retry-After`
 * (HTTP 429/503), which the drain honours instead of its own back-off.
 */
export class StoreUnavailableError extends Error {
  readonly code = 'VM_STORE_UNAVAILABLE'
  constructor (message: string, readonly retryAfterMs?: number, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreUnavailableError'
  }
}

/**
 * A telemetry store. `write` must be idempotent for the same (deviceId, seq): the drain
 * re-sends a batch whose confirmation was lost, and the store must not duplicate it.
 * A write resolves only when the store confirmed the rows (those not rejected); it
 * rejects when nothing can be said about them, and the drain retries them.
 */
export interface TelemetryStore {
  readonly kind: string
  write(rows: readonly StoredReading[]): Promise<WriteOutcome | void>
  /** readings of one resident in [from, to), oldest first */
  queryRange(residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]>
  /** queryRange's readings with ts and `fields` only (the others undefined), where a store can read less: a rule-set backtest's read */
  replayRange?(residentId: string, from: number, to: number, limit: number, fields?: readonly RuleField[]): Promise<RuleReading[]>
  /** a resident's readings in [from, to) aggregated in windows of `windowMs` (aligned to the epoch), oldest first, empty windows omitted */
  aggregate(residentId: string, from: number, to: number, windowMs: number): Promise<WindowAggregate[]>
  ping(): Promise<void>
  close(): Promise<void>
}
