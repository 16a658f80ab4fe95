/**
 * Time is a dependency: components take their clock from outside so tests can drive it.
 * `now()` is the wall clock; timers run on the same clock, so a manual clock in a test
 * fires them when it is advanced past their time instead of the test waiting.
 */
export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): ClockTimer
  clearTimeout(t: ClockTimer | undefined): void
}

export interface ClockTimer { unref?(): unknown }

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => { if (t) clearTimeout(t as NodeJS.Timeout) },
}

interface ManualTimer extends ClockTimer { at: number, fn: () => void, id: number, cancelled: boolean }

export class ManualClock implements Clock {
  private timers: ManualTimer[] = []
  private nextId = 0
  constructor (private t = 0) {}
  now (): number { return this.t }
  /** Moves the clock to t and runs, in time order, every timer due by then. */
  set (t: number): void {
    for (;;) {
      this.timers = this.timers.filter((x) => !x.cancelled)
      let due: ManualTimer | undefined
      for (const x of this.timers) if (x.at <= t && (!due || x.at < due.at || (x.at === due.at && x.id < due.id))) due = x
      if (!due) break
      due.cancelled = true
      if (due.at > this.t) this.t = due.at
      due.fn()
    }
    this.t = t
  }
  advance (ms: number): void { this.set(this.t + ms) }
  setTimeout (fn: () => void, ms: number): ClockTimer {
    const x: ManualTimer = { at: this.t + Math.max(0, ms), fn, id: this.nextId++, cancelled: false, unref: () => x }
    this.timers.push(x)
    return x
  }
  clearTimeout (t: ClockTimer | undefined): void { if (t) (t as ManualTimer).cancelled = true }
  /** timers not yet run */
  get pending (): number { return this.timers.filter((x) => !x.cancelled).length }
}
