/**
 * Local time in a resident's IANA time zone with nothing but Intl: days, mornings and
 * nights of a clinical report are the resident's, not UTC's, and a DST change day has 23
 * or 25 hours.
 */

const formats = new Map<string, Intl.DateTimeFormat>()

function format (timeZone: string): Intl.DateTimeFormat {
  let f = formats.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })
    formats.set(timeZone, f)
  }
  return f
}

/** true when Intl knows the zone (an IANA name such as Europe/Berlin or Asia/Shanghai) */
export function isTimeZone (timeZone: string): boolean {
  try { format(timeZone); return true } catch { return false }
}

export interface LocalParts { year: number, month: number, day: number, hour: number, minute: number, second: number }

export function localParts (ts: number, timeZone: string): LocalParts {
  const p: Record<string, number> = {}
  for (const part of format(timeZone).formatToParts(new Date(ts))) if (part.type !== 'literal') p[part.type] = Number(part.value)
  return { year: p.year!, month: p.month!, day: p.day!, hour: p.hour! % 24, minute: p.minute!, second: p.second! }
}

/** the zone's offset from UTC at `ts`, in milliseconds (UTC+8 gives 28 800 000) */
export function offsetMs (ts: number, timeZone: string): number {
  const p = localParts(ts, timeZone)
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second)
  return asUtc - (ts - (((ts % 1000) + 1000) % 1000))
}

/** A local calendar date, `YYYY-MM-DD`. */
export type LocalDate = string

export function localDate (ts: number, timeZone: string): LocalDate {
  const p = localParts(ts, timeZone)
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`
}

/** minutes since local midnight (wall-clock reading, 0..1439) */
export function localMinuteOfDay (ts: number, timeZone: string): number {
  const p = localParts(ts, timeZone)
  return p.hour * 60 + p.minute
}

export function addDays (date: LocalDate, days: number): LocalDate {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number]
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10)
}

/**
 * The instant at which the wall clock of `timeZone` shows `date` `minuteOfDay` (1440 is
 * the next midnight). A time skipped by a DST change (02:30 on a spring-forward day in
 * Berlin) maps to the instant the clocks jumped to (03:00 local); a repeated time (02:30 on
 * a fall-back day) maps to its first occurrence.
 */
export function zonedTime (date: LocalDate, minuteOfDay: number, timeZone: string): number {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number]
  const wall = Date.UTC(y, m - 1, d, 0, minuteOfDay)
  // the offsets in force a day either side bracket every transition of that day
  const before = offsetMs(wall - 86400_000, timeZone)
  const after = offsetMs(wall + 86400_000, timeZone)
  const candidates = [...new Set([before, after])].map((o) => wall - o).filter((t) => offsetMs(t, timeZone) === wall - t)
  if (candidates.length) return Math.min(...candidates)
  // skipped wall time: the clocks jumped over it at the transition, which lies between the two readings
  let lo = wall - before; let hi = wall - after
  if (lo > hi) [lo, hi] = [hi, lo]
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2)
    if (offsetMs(mid, timeZone) === before) lo = mid; else hi = mid
  }
  return hi - (hi % 1000)
}

/** The local days an interval touches, in order. */
export function localDaysBetween (from: number, to: number, timeZone: string): LocalDate[] {
  const out: LocalDate[] = []
  for (let d = localDate(from, timeZone); zonedTime(d, 0, timeZone) < to; d = addDays(d, 1)) out.push(d)
  return out
}
