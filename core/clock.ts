/** Time is a dependency: components take their clock from outside so tests can drive it. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

export class ManualClock implements Clock {
  constructor (private t = 0) {}
  now (): number { return this.t }
  set (t: number): void { this.t = t }
  advance (ms: number): void { this.t += ms }
}
