/**
 * Mergeable statistics of one metric: count, min, max, sum and a histogram of values
 * rounded to whole units (bpm, mmHg). Histograms merge exactly, so a city's p95 is the p95
 * of all its counties' readings, not an average of percentiles.
 */
export interface MetricStats { n: number, min: number, max: number, sum: number, bins: Record<string, number> }

export interface StatsSummary { count: number, min: number | null, max: number | null, mean: number | null, p50: number | null, p95: number | null }

export function emptyStats (): MetricStats { return { n: 0, min: Infinity, max: -Infinity, sum: 0, bins: {} } }

export function addValue (s: MetricStats, x: number): void {
  s.n++
  if (x < s.min) s.min = x
  if (x > s.max) s.max = x
  s.sum += x
  const b = Math.round(x)
  s.bins[b] = (s.bins[b] ?? 0) + 1
}

export function mergeStats (into: MetricStats, other: MetricStats): void {
  if (other.n === 0) return
  into.n += other.n
  into.min = Math.min(into.min, other.min)
  into.max = Math.max(into.max, other.max)
  into.sum += other.sum
  for (const [b, c] of Object.entries(other.bins)) into.bins[b] = (into.bins[b] ?? 0) + c
}

/** Nearest-rank percentile over the histogram (whole units). */
export function percentile (s: MetricStats, p: number): number | null {
  if (s.n === 0) return null
  const rank = Math.max(1, Math.ceil((p / 100) * s.n))
  const keys = Object.keys(s.bins).map(Number).sort((a, b) => a - b)
  let seen = 0
  for (const k of keys) {
    seen += s.bins[k]!
    if (seen >= rank) return k
  }
  return keys[keys.length - 1] ?? null
}

export function summarize (s: MetricStats): StatsSummary {
  if (s.n === 0) return { count: 0, min: null, max: null, mean: null, p50: null, p95: null }
  return { count: s.n, min: s.min, max: s.max, mean: Math.round((s.sum / s.n) * 10) / 10, p50: percentile(s, 50), p95: percentile(s, 95) }
}

/** JSON cannot hold Infinity: an empty histogram travels with null bounds. */
export function statsToJSON (s: MetricStats): { n: number, min: number | null, max: number | null, sum: number, bins: Record<string, number> } {
  return { n: s.n, min: s.n ? s.min : null, max: s.n ? s.max : null, sum: s.sum, bins: s.bins }
}

export function statsFromJSON (j: { n: number, min: number | null, max: number | null, sum: number, bins: Record<string, number> }): MetricStats {
  return { n: j.n, min: j.min ?? Infinity, max: j.max ?? -Infinity, sum: j.sum, bins: { ...j.bins } }
}
