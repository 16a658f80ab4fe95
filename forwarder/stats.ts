/**
 * Mergeable statistics of one metric: count, min, max, sum and a histogram of values
 * rounded to whole units (bpm, mmHg). Histograms merge exactly, so a city's p95 is the p95
 * of all its counties' readings, not an average of percentiles.
 */
export interface MetricStats {
  n: number, min: number, max: number, sum: number
  /**
   * counts[i] readings had the whole-unit value lo + i: an array of small integers over the
   * range of values seen, in the JS heap (a typed array's backing store lives outside it, and
   * those many small allocations left more RSS behind: bench/agg-mem.ts)
   */
  lo: number
  counts: number[] | null
}

/** The histogram as it travels and is stored: value (as a string key) → count. */
export type Bins = Record<string, number>

export interface StatsSummary { count: number, min: number | null, max: number | null, mean: number | null, p50: number | null, p95: number | null }

export function emptyStats (): MetricStats { return { n: 0, min: Infinity, max: -Infinity, sum: 0, lo: 0, counts: null } }

/** Makes room for whole-unit values from..to, with some slack: values of one metric cluster. */
function cover (s: MetricStats, from: number, to: number): number[] {
  const c = s.counts
  if (c !== null && from >= s.lo && to < s.lo + c.length) return c
  const lo = c === null ? from - 4 : Math.min(s.lo, from - 8)
  const hi = c === null ? to + 4 : Math.max(s.lo + c.length - 1, to + 8)
  const next = new Array<number>(hi - lo + 1).fill(0)
  if (c !== null) for (let i = 0; i < c.length; i++) next[s.lo - lo + i] = c[i]!
  s.lo = lo
  s.counts = next
  return next
}

export function addValue (s: MetricStats, x: number): void {
  s.n++
  if (x < s.min) s.min = x
  if (x > s.max) s.max = x
  s.sum += x
  const b = Math.round(x)
  cover(s, b, b)[b - s.lo]!++
}

export function mergeStats (into: MetricStats, other: MetricStats): void {
  if (other.n === 0 || other.counts === null) return
  into.n += other.n
  into.min = Math.min(into.min, other.min)
  into.max = Math.max(into.max, other.max)
  into.sum += other.sum
  const oc = other.counts
  const c = cover(into, other.lo, other.lo + oc.length - 1)
  const off = other.lo - into.lo
  for (let i = 0; i < oc.length; i++) if (oc[i]) c[off + i]! += oc[i]!
}

/** Nearest-rank percentile over the histogram (whole units). */
export function percentile (s: MetricStats, p: number): number | null {
  if (s.n === 0 || s.counts === null) return null
  const rank = Math.max(1, Math.ceil((p / 100) * s.n))
  const c = s.counts
  let seen = 0
  let last: number | null = null
  for (let i = 0; i < c.length; i++) {
    if (!c[i]) continue
    seen += c[i]!
    last = s.lo + i
    if (seen >= rank) return last
  }
  return last
}

export function summarize (s: MetricStats): StatsSummary {
  if (s.n === 0) return { count: 0, min: null, max: null, mean: null, p50: null, p95: null }
  return { count: s.n, min: s.min, max: s.max, mean: Math.round((s.sum / s.n) * 10) / 10, p50: percentile(s, 50), p95: percentile(s, 95) }
}

/** JSON cannot hold Infinity: an empty histogram travels with null bounds. */
export function statsToJSON (s: MetricStats): { n: number, min: number | null, max: number | null, sum: number, bins: Bins } {
  const bins: Bins = {}
  const c = s.counts
  if (c !== null) for (let i = 0; i < c.length; i++) if (c[i]) bins[s.lo + i] = c[i]!
  return { n: s.n, min: s.n ? s.min : null, max: s.n ? s.max : null, sum: s.sum, bins }
}

/** Histogram keys a stored or received value can have (whole units of bpm or mmHg); others are skipped, so no key sizes an array. */
export const MAX_BIN_KEY = 10_000

export function statsFromJSON (j: { n: number, min: number | null, max: number | null, sum: number, bins: Bins }): MetricStats {
  const s: MetricStats = { n: j.n, min: j.min ?? Infinity, max: j.max ?? -Infinity, sum: j.sum, lo: 0, counts: null }
  const keys = Object.keys(j.bins).map(Number).filter((k) => Number.isSafeInteger(k) && Math.abs(k) <= MAX_BIN_KEY && Number.isSafeInteger(j.bins[k]) && j.bins[k]! > 0)
  if (keys.length === 0) return s
  const from = Math.min(...keys); const to = Math.max(...keys)
  s.lo = from
  s.counts = new Array<number>(to - from + 1).fill(0)
  for (const k of keys) s.counts[k - from] = j.bins[k]!
  return s
}
