/**
 * Per-device publish budget: a token bucket (rate per second, burst) plus a count of
 * refused messages in the current minute, which decides when over-use becomes abuse.
 * Pure and clock-driven: the broker passes `now`.
 */
export interface RateLimit { ratePerS: number, burst: number, abuseRefusalsPerMinute: number }

export type RateVerdict = 'ok' | 'refused' | 'abuse'

const WINDOW_MS = 60_000

export class PublishBudget {
  private tokens: number
  private refilledAt: number
  private windowStart: number
  private refused = 0

  constructor (private readonly limit: RateLimit, now: number) {
    this.tokens = limit.burst
    this.refilledAt = now
    this.windowStart = now
  }

  take (now: number): RateVerdict {
    const elapsed = now - this.refilledAt
    if (elapsed > 0) {
      this.tokens = Math.min(this.limit.burst, this.tokens + elapsed * this.limit.ratePerS / 1000)
      this.refilledAt = now
    }
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 'ok'
    }
    if (now - this.windowStart >= WINDOW_MS) { this.windowStart = now; this.refused = 0 }
    this.refused++
    return this.refused > this.limit.abuseRefusalsPerMinute ? 'abuse' : 'refused'
  }

  /** Nothing to remember: the bucket has refilled and no refusal counts any more. */
  idle (now: number): boolean {
    const full = this.tokens + (now - this.refilledAt) * this.limit.ratePerS / 1000 >= this.limit.burst
    return full && (this.refused === 0 || now - this.windowStart >= WINDOW_MS)
  }
}
