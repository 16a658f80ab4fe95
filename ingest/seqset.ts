/**
 * The sequence numbers one device has had accepted, as sorted closed intervals
 * [start0, end0, start1, end1, ...]. A device counts up, so its whole history is usually
 * one interval; a gap (readings the device never delivered) adds one. This is the
 * spool's de-duplication: exact, in memory, a few bytes per device, no row per reading.
 *
 * Bounded: above `maxIntervals` the two oldest intervals are joined, so seqs inside the
 * oldest gap then count as already accepted. Only a device with that many holes in its
 * history, sending a reading for the oldest of them, sees that (as a duplicate).
 */
export class SeqSet {
  /** flat [start, end] pairs, sorted, disjoint and not adjacent */
  private r: number[]

  constructor (ranges: readonly number[] = [], private readonly maxIntervals = 64) {
    this.r = ranges.slice()
  }

  has (seq: number): boolean {
    const r = this.r
    const n = r.length
    // the common case: at or below the newest interval's end, and above its start
    if (n === 0) return false
    if (seq > r[n - 1]!) return false
    if (seq >= r[n - 2]!) return true
    let lo = 0; let hi = n / 2 - 2
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (seq < r[2 * mid]!) hi = mid - 1
      else if (seq > r[2 * mid + 1]!) lo = mid + 1
      else return true
    }
    return false
  }

  /** Adds a seq that `has` said is absent. */
  add (seq: number): void {
    const r = this.r
    const n = r.length
    if (n > 0 && seq === r[n - 1]! + 1) { r[n - 1] = seq; return } // the device counted on
    // the interval before which seq goes: first i with start > seq
    let i = 0
    let lo = 0; let hi = n / 2 - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (r[2 * mid]! > seq) hi = mid - 1
      else lo = mid + 1
    }
    i = lo
    const joinsPrev = i > 0 && r[2 * i - 1]! + 1 === seq
    const joinsNext = i < n / 2 && r[2 * i]! - 1 === seq
    if (joinsPrev && joinsNext) r.splice(2 * i - 1, 2)
    else if (joinsPrev) r[2 * i - 1] = seq
    else if (joinsNext) r[2 * i] = seq
    else {
      r.splice(2 * i, 0, seq, seq)
      if (r.length > 2 * this.maxIntervals) r.splice(1, 2) // join the two oldest intervals
    }
  }

  /** Forgets a seq (a record that was discarded before anything consumed it); absent seqs are left alone. */
  remove (seq: number): void {
    const r = this.r
    for (let i = 0; i < r.length; i += 2) {
      const start = r[i]!; const end = r[i + 1]!
      if (seq < start) return
      if (seq > end) continue
      if (start === end) r.splice(i, 2)
      else if (seq === start) r[i] = seq + 1
      else if (seq === end) r[i + 1] = seq - 1
      else r.splice(i, 2, start, seq - 1, seq + 1, end)
      return
    }
  }

  get intervals (): number { return this.r.length / 2 }

  /** For the checkpoint: the pairs as float64 (seqs are integers up to 2^53, exact in a double). */
  toBuffer (): Buffer {
    return Buffer.from(Float64Array.from(this.r).buffer)
  }

  static fromBuffer (b: Buffer, maxIntervals?: number): SeqSet {
    const a = new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))
    return new SeqSet(Array.from(a), maxIntervals)
  }
}
