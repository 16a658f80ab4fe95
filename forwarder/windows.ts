/** A window kind such as `1h`, `1d`, `15m` or `5s`, aligned to UTC. */
export interface WindowKind { name: string, ms: number }

export function parseWindow (name: string): WindowKind {
  const m = /^(\d+)(s|m|h|d)$/.exec(name.trim())
  if (!m) throw new Error(`window "${name}" is not like 1h, 1d, 15m or 30s`)
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86400_000 }[m[2] as 's' | 'm' | 'h' | 'd']
  const ms = Number(m[1]) * unit
  if (ms <= 0) throw new Error(`window "${name}" must be longer than zero`)
  return { name: name.trim(), ms }
}

export function windowStart (ts: number, ms: number): number { return ts - (((ts % ms) + ms) % ms) }
