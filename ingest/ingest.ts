import { decodePayload, defaultPlausibility, type Clock, type PlausibilityLimits, type ReadingError, type ErrorCode } from '../core/index.ts'
import type { Spool, AppendRequest } from './spool.ts'

export interface IngestDevice { id: string, deviceKey: number, residentId: string }

/** Where a device is told what was wrong with its payload (`devices/{id}/errors`). */
export type ErrorReply = (deviceId: string, error: ReadingError) => void

/**
 * The generation layer's last step: decode, validate, check plausibility, and append
 * to the durable spool. `accept` calls back only once the readings are committed, so
 * the broker can hold the PUBACK until then.
 */
export class Ingest {
  readonly errorsByCode = new Map<ErrorCode, number>()
  readonly stats = { messages: 0 }

  constructor (
    private readonly spool: Spool,
    private readonly clock: Clock,
    private readonly reply: ErrorReply,
    private readonly limits: PlausibilityLimits = defaultPlausibility,
    /**
     * Holds the PUBACK after the spool's commit until a further step is done: in cluster mode,
     * until the reading log acknowledged every record committed so far (cluster/node.ts).
     * A duplicate waits too: the first copy may not have reached the log yet.
     */
    private readonly hold?: (release: () => void) => void,
  ) {}

  accept (device: IngestDevice, payload: Buffer, done: (err: Error | null) => void): void {
    this.stats.messages++
    const decoded = decodePayload(payload, this.clock.now(), this.limits)
    const req: AppendRequest = { deviceKey: device.deviceKey, deviceId: device.id, residentId: device.residentId, readings: decoded.readings }
    const errors = decoded.errors
    if (errors.length > 0) {
      const first = errors[0]!
      req.deadLetter = { deviceId: device.id, code: first.code, message: first.message, payload }
      for (const e of errors) this.errorsByCode.set(e.code, (this.errorsByCode.get(e.code) ?? 0) + 1)
    }
    this.spool.append(req, (err) => {
      if (err) return done(err)
      const release = (): void => {
        done(null)
        for (const e of errors) this.reply(device.id, e)
      }
      if (this.hold) this.hold(release)
      else release()
    })
  }
}
