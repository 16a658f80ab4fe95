/**
 * Which devices are connected to this node and when each was last seen. Kept in memory
 * (a counter per device: a device may hold several `id:suffix` sessions) and written to
 * SQLite in batched transactions per interval, so a publish costs a Map.set, not a
 * syscall. A batch holds at most `chunk` devices and the next one waits for the next turn
 * of the event loop: when a whole fleet reconnects, one transaction of 10,000 devices held
 * the event loop for 186 ms (a --cpu-prof of bench/connections.ts).
 */
export class Presence {
  private scheduled = false
  private readonly sessions = new Map<string, number>()
  private dirty = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly write: (seen: Iterable<[string, number, boolean]>) => void, private readonly onError: (err: Error) => void, private readonly chunk = 2000) {}

  /** returns true when this is the device's first session on this node */
  connected (id: string, now: number): boolean {
    const n = (this.sessions.get(id) ?? 0) + 1
    this.sessions.set(id, n)
    this.dirty.set(id, now)
    return n === 1
  }

  /** returns true when the device has no session left on this node */
  disconnected (id: string, now: number): boolean {
    const n = (this.sessions.get(id) ?? 1) - 1
    if (n <= 0) this.sessions.delete(id)
    else this.sessions.set(id, n)
    this.dirty.set(id, now)
    return n <= 0
  }

  seen (id: string, now: number): void { this.dirty.set(id, now) }

  isOnline (id: string): boolean { return this.sessions.has(id) }

  /** the in-memory last-seen time that is not written yet, if any */
  pendingLastSeen (id: string): number | undefined { return this.dirty.get(id) }

  get onlineCount (): number { return this.sessions.size }

  start (intervalMs: number): void {
    this.timer ??= setInterval(() => this.flush(), intervalMs)
    this.timer.unref()
  }

  /** Writes up to `max` devices' last-seen times; what remains follows on the next turns of the event loop. */
  flush (max = this.chunk): void {
    if (this.dirty.size === 0) return
    let batch = this.dirty
    if (batch.size <= max) this.dirty = new Map()
    else {
      batch = new Map()
      for (const [id, at] of this.dirty) {
        batch.set(id, at)
        this.dirty.delete(id)
        if (batch.size >= max) break
      }
    }
    try {
      const sessions = this.sessions
      this.write((function * () { for (const [id, at] of batch) yield [id, at, sessions.has(id)] as [string, number, boolean] })())
    } catch (err) {
      // keep the newer of both values for the next attempt
      for (const [id, at] of batch) if ((this.dirty.get(id) ?? 0) < at) this.dirty.set(id, at)
      this.onError(err as Error)
      return
    }
    if (this.dirty.size > 0 && this.timer && !this.scheduled) {
      this.scheduled = true
      setImmediate(() => { this.scheduled = false; if (this.timer) this.flush() })
    }
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.flush(Infinity)
  }
}
