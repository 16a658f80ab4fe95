import { addDays, localDate, offsetMs, zonedTime } from '../core/localtime.ts'

/** A window kind such as `1h`, `1d`, `15m` or `5s`. */
export interface WindowKind {
  name: string
  /** the nominal size: a `d` window of a DST-observing zone is an hour shorter or longer on a change day */
  ms: number
  /** `d` windows follow the resident's calendar days; the others are of fixed size */
  days?: number
}

export function parseWindow (name: string): WindowKind {
  const m = /^(\d+)(s|m|h|d)$/.exec(name.trim())
  if (!m) throw new Error(`window "${name}" is not like 1h, 1d, 15m or 30s`)
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86400_000 }[m[2] as 's' | 'm' | 'h' | 'd']
  const ms = Number(m[1]) * unit
  if (ms <= 0) throw new Error(`window "${name}" must be longer than zero`)
  return { name: name.trim(), ms, ...(m[2] === 'd' ? { days: Number(m[1]) } : {}) }
}

/** UTC alignment: what every window was before they followed local time, and what fixed-size windows still are in whole-hour zones. */
export function windowStart (ts: number, ms: number): number { return ts - (((ts % ms) + ms) % ms) }

export interface WindowBounds { start: number, end: number }

const HOUR = 3600_000
const EPOCH_DATE = '1970-01-01'

function daysSinceEpoch (date: string): number {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number]
  return Math.round(Date.UTC(y, m - 1, d) / 86400_000)
}

/**
 * The window of kind `w` that holds `ts` for a resident in `timeZone`.
 *
 * - `d` windows run from local midnight to local midnight (`Nd`: N local days, counted from
 *   1970-01-01 so that every resident of a zone has the same ones), so a DST change day is a
 *   23- or 25-hour window. A day whose midnight the clocks skip starts when they jumped.
 * - Fixed-size windows (`1h`, `15m`) stay UTC-aligned, shifted by the part of the zone's offset
 *   below a whole hour: in whole-hour zones (Asia/Shanghai, Europe/Berlin, with or without DST)
 *   they are exactly the UTC windows, so every resident of a region shares them; in
 *   Asia/Kolkata (+05:30) or Asia/Kathmandu (+05:45) an hour window runs from local hh:00.
 *   Limit: where a DST change is not a whole hour (Australia/Lord_Howe, 30 minutes) the
 *   windows on either side of the change overlap or leave a gap of that difference.
 */
export function windowAt (w: WindowKind, ts: number, timeZone: string): WindowBounds {
  // the zone arithmetic (Intl) costs microseconds; a region's residents share a zone, so the
  // bounds are kept per window kind, zone and UTC hour (checked: an hour may hold a boundary)
  const key = `${w.name}|${timeZone}|${Math.floor(ts / HOUR)}`
  const hit = recent.get(key)
  if (hit && hit.start <= ts && ts < hit.end) return hit
  const b = computeWindow(w, ts, timeZone)
  if (recent.size >= 4096) recent.clear()
  recent.set(key, b)
  return b
}

const recent = new Map<string, WindowBounds>()

function computeWindow (w: WindowKind, ts: number, timeZone: string): WindowBounds {
  if (w.days !== undefined) {
    const today = localDate(ts, timeZone)
    const n = daysSinceEpoch(today)
    const first = addDays(EPOCH_DATE, n - (((n % w.days) + w.days) % w.days))
    return { start: zonedTime(first, 0, timeZone), end: zonedTime(addDays(first, w.days), 0, timeZone) }
  }
  const shift = timeZone === 'UTC' ? 0 : ((offsetMs(ts, timeZone) % HOUR) + HOUR) % HOUR
  const start = windowStart(ts + shift, w.ms) - shift
  return { start, end: start + w.ms }
}

/** true when `start`-`end` is a window of kind `w` in `timeZone` (a roll-up from a child region is checked against it). */
export function isWindow (w: WindowKind, start: number, end: number, timeZone: string): boolean {
  const b = computeWindow(w, start, timeZone)
  return b.start === start && b.end === end
}
