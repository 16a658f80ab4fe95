import type { StoredReading } from '../../core/index.ts'

/**
 * How readings look in InfluxDB (README, "InfluxDB schema").
 *
 * - measurement `vitals`: one point per reading.
 * - tags (indexed, low cardinality): `device`, `resident`, `region`, `model`. A device is
 *   worn by one resident, so `resident` adds almost no series beyond `device`, and it is
 *   what every resident query filters on. `seq` is a field, never a tag: as a tag it would
 *   make one series per reading.
 * - fields: `hr`, `sys`, `dia` (float), `seq` (integer), quality flags `motion` (bool),
 *   `confidence` (float), `activity` (string).
 * - timestamp: nanoseconds = reading ms * 1e6 + (seq mod 1e6). A point is identified by
 *   measurement + tag set + timestamp, so two readings of one device in the same
 *   millisecond never overwrite each other, and a re-sent (device, seq) lands on the same
 *   point: re-writes are idempotent. Queries with `epoch=ms` get the reading's ms back.
 * - roll-ups written by vitalmesh: `vitals_1h` and `vitals_1d` (same tags, fields
 *   `hr_mean`, `hr_min`, `hr_max`, `sys_mean`, `sys_max`, `dia_mean`, `dia_max`, `n`).
 */
export const MEASUREMENT = 'vitals'
export const ROLLUPS = { hour: { measurement: 'vitals_1h', ms: 3_600_000, every: '1h' }, day: { measurement: 'vitals_1d', ms: 86_400_000, every: '1d' } } as const
export const PRECISION = 'ns'

/** What the registry knows about a device, for the `region` and `model` tags. */
export interface DeviceTags { region?: string | null, model?: string | null }
export type TagLookup = (deviceId: string) => DeviceTags | undefined

const escTag = (s: string): string => s.replace(/[\\,= ]/g, (c) => '\\' + c).replace(/\n/g, '\\n')
const escMeasurement = (s: string): string => s.replace(/[\\, ]/g, (c) => '\\' + c)
const escStr = (s: string): string => s.replace(/[\\"]/g, (c) => '\\' + c)

/** The nanosecond timestamp of a reading, as a decimal string (it exceeds 2^53). */
export function pointTime (ts: number, seq: number): string {
  // the padding by hand: this runs once per point, and padStart with its String() cost 7% of the drain
  const r = seq % 1_000_000
  return ts + (r >= 100_000 ? '' : r >= 10_000 ? '0' : r >= 1000 ? '00' : r >= 100 ? '000' : r >= 10 ? '0000' : '00000') + r
}

export function tagSet (r: { deviceId: string, residentId: string }, t: DeviceTags | undefined): string {
  let s = `device=${escTag(r.deviceId)}`
  if (t?.model) s += `,model=${escTag(t.model)}`
  if (t?.region) s += `,region=${escTag(t.region)}`
  if (r.residentId) s += `,resident=${escTag(r.residentId)}` // tags in key order: cheaper for the server
  return s
}

/** One reading as a line of InfluxDB line protocol (precision ns). */
export function toLine (r: StoredReading, t: DeviceTags | undefined): string {
  return `${MEASUREMENT},${tagSet(r, t)} ${fieldsAndTime(r)}`
}

/** The fields and timestamp part of a reading's line. */
export function fieldsAndTime (r: StoredReading): string {
  let f = `seq=${r.seq}i`
  if (r.hr !== undefined) f += `,hr=${num(r.hr)}`
  if (r.sys !== undefined) f += `,sys=${num(r.sys)}`
  if (r.dia !== undefined) f += `,dia=${num(r.dia)}`
  if (r.motion !== undefined) f += `,motion=${r.motion}`
  if (r.confidence !== undefined) f += `,confidence=${num(r.confidence)}`
  if (r.activity !== undefined) f += `,activity="${escStr(r.activity)}"`
  return `${f} ${pointTime(r.ts, r.seq)}`
}

/** A float field value: always with a decimal point, so 72 and 72.5 have one type. */
function num (v: number): string {
  return Number.isInteger(v) ? `${v}.0` : String(v)
}

export function lineFor (measurement: string, tags: Record<string, string>, fields: Record<string, number>, timeNs: string): string {
  const t = Object.keys(tags).sort().filter((k) => tags[k] !== '').map((k) => `${escTag(k)}=${escTag(tags[k]!)}`).join(',')
  const f = Object.entries(fields).map(([k, v]) => `${escTag(k)}=${Number.isInteger(v) && k === 'n' ? `${v}i` : num(v)}`).join(',')
  return `${escMeasurement(measurement)}${t ? ',' + t : ''} ${f} ${timeNs}`
}

/** A string literal in InfluxQL. */
export function ql (s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
}
/** An identifier in InfluxQL. */
export function qid (s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}
