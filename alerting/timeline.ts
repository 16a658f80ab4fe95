import { ActivitySchema, type Reading, type RuleReading } from '../core/index.ts'

/** The fields of a reading the engine looks at (any spool row carries them). */
export interface EvaluatedReading extends Reading { deviceId: string, residentId: string }

const ACTIVITIES = ActivitySchema.options

/**
 * One resident's readings in reading time, from all their devices: the rules evaluate a
 * reading at its place here, so the order readings arrive in does not decide the outcome.
 * Kept for as far back as a late reading may still change live state (the live horizon,
 * plus what the rules look back from a reading), bounded in count.
 */
export class Timeline<R extends RuleReading = EvaluatedReading> {
  constructor (public readings: R[] = []) {}

  get newest (): R | undefined { return this.readings[this.readings.length - 1] }

  /** Places a reading by its time and returns its index; a reading in order is a push. */
  insert (r: R): number {
    const a = this.readings
    if (a.length === 0 || a[a.length - 1]!.ts <= r.ts) { a.push(r); return a.length - 1 }
    let lo = 0; let hi = a.length
    while (lo < hi) { const mid = (lo + hi) >>> 1; if (a[mid]!.ts <= r.ts) lo = mid + 1; else hi = mid }
    a.splice(lo, 0, r)
    return lo
  }

  /** Drops readings older than `keepMs` before the newest, keeping at least `minCount` (n-of-m rules) and at most `maxCount`. */
  trim (keepMs: number, maxCount: number, minCount = 32): void {
    const a = this.readings
    if (a.length <= minCount) return
    const from = a[a.length - 1]!.ts - keepMs
    let cut = 0
    while (cut < a.length - minCount && a[cut]!.ts < from) cut++
    if (a.length - cut > maxCount + 64) cut = a.length - maxCount
    // a long timeline is cut in steps of 64: one shift of the array per 64 readings, not one per reading
    if (cut >= 64 || (cut > 0 && a.length <= 256)) a.splice(0, cut)
  }

  /** Compact JSON: [ts, deviceId, seq, hr, sys, dia, activity, motion, confidence], nulls for absent fields. */
  toJSON (this: Timeline<EvaluatedReading>): unknown[] {
    return this.readings.map((r) => [r.ts, r.deviceId, r.seq, r.hr ?? null, r.sys ?? null, r.dia ?? null,
      r.activity === undefined ? null : ACTIVITIES.indexOf(r.activity), r.motion === undefined ? null : r.motion ? 1 : 0, r.confidence ?? null])
  }

  static fromJSON (residentId: string, rows: unknown[]): Timeline<EvaluatedReading> {
    return new Timeline((rows as [number, string, number, number | null, number | null, number | null, number | null, number | null, number | null][]).map((t) => {
      const r: EvaluatedReading = { ts: t[0], deviceId: t[1], seq: t[2], residentId }
      if (t[3] !== null) r.hr = t[3]
      if (t[4] !== null) r.sys = t[4]
      if (t[5] !== null) r.dia = t[5]
      if (t[6] !== null) r.activity = ACTIVITIES[t[6]]
      if (t[7] !== null) r.motion = t[7] === 1
      if (t[8] !== null) r.confidence = t[8]
      return r
    }))
  }
}
