/**
 * What a consumer's sliced checkpoint writes next: the items (alert timelines, summary windows)
 * changed since they were last written, each with the spool position before its first unsaved
 * change, and the round in progress.
 *
 * A round is the items dirty when it began, written a slice per consumer transaction; items
 * that change meanwhile wait for the next round. Under steady load every item is dirty again
 * before a round ends, so a checkpoint that ran until none was would never end. The consumer's
 * cursor may move only to the oldest change still unwritten (`cursor`), and each written item
 * records the position it holds everything up to, so a replay after a crash skips it.
 */
export class CheckpointRounds<K> {
  private readonly since = new Map<K, number>()
  private round: K[] = []
  private at = 0

  /** `k` changed; `pos`: the spool position before this change (kept if it was dirty already) */
  mark (k: K, pos: number): void {
    if (!this.since.has(k)) this.since.set(k, pos)
  }

  isDirty (k: K): boolean { return this.since.has(k) }

  get dirtyCount (): number { return this.since.size }

  /** every dirty item (a full checkpoint) */
  keys (): IterableIterator<K> { return this.since.keys() }

  /** a round is under way: its next slice is due with the next transaction */
  get inProgress (): boolean { return this.at < this.round.length }

  /** Starts a round of every item dirty now, unless one is under way; true when it started one. */
  begin (): boolean {
    if (this.inProgress) return false
    this.round = [...this.since.keys()]
    this.at = 0
    return true
  }

  /** The round's next item still dirty, or undefined at its end. Call `begin` first. */
  take (): K | undefined {
    while (this.at < this.round.length) {
      const k = this.round[this.at++]!
      if (this.since.has(k)) return k
    }
    return undefined
  }

  /** The oldest unwritten change, or `last` when it is older: where the cursor may go. `except`: items being written with it. */
  cursor (last: number, except?: ReadonlySet<K>): number {
    let c = last
    for (const [k, s] of this.since) if (s < c && !except?.has(k)) c = s
    return c
  }

  /** these items were written */
  written (keys: Iterable<K>): void {
    for (const k of keys) this.since.delete(k)
  }

  /** The round ends without writing the rest (a slice failed: its items stay dirty for the next one). */
  abandon (): void {
    this.round = []
    this.at = 0
  }

  /** everything is written, or reloaded from the database */
  clear (): void {
    this.since.clear()
    this.abandon()
  }
}
