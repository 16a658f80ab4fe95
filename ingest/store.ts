import type { StoredReading } from '../core/index.ts'

/**
 * A telemetry store. `write` must be idempotent for the same (deviceId, seq): the drain
 * re-sends a batch whose confirmation was lost, and the store must not duplicate it.
 */
export interface TelemetryStore {
  readonly kind: string
  write(rows: readonly StoredReading[]): Promise<void>
  /** readings of one resident in [from, to), oldest first */
  queryRange(residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]>
  ping(): Promise<void>
  close(): Promise<void>
}
