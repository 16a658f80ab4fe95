import { localMinuteOfDay } from './localtime.ts'
import { OUT_OF_OFFICE, atOrAbove, wallMinutes, type BpThreshold, type ProfileProtocol } from './protocol.ts'
import { admit, emptyExclusions, meanBp, modelUse, ref, round1, type BpClass, type Exclusions, type ModelUse, type ReadingRef, type ReportReading, type RunContext } from './reading.ts'

export type DipClass = 'extreme-dipper' | 'dipper' | 'non-dipper' | 'reverse-dipper'

/** Half-open bands (reference key: integer bands), on the dip as reported (0.1 %). */
export function dipClass (dipPct: number): DipClass {
  if (dipPct >= 20) return 'extreme-dipper'
  if (dipPct >= 10) return 'dipper'
  if (dipPct >= 0) return 'non-dipper'
  return 'reverse-dipper'
}

export interface PeriodResult {
  n: number
  required: number
  /** null when fewer readings than required */
  mean: { sys: number, dia: number } | null
  classification: BpClass | null
  threshold: BpThreshold
  readings: ReadingRef[]
}

export type ProfileOutcome =
  | { status: 'in-progress' }
  | { status: 'insufficient-data', daytime: number, nighttime: number, required: { daytime: number, nighttime: number } }
  | { status: 'complete' }

export interface ProfileResult {
  kind: 'abpm-24h'
  protocol: { id: string, version: string }
  timeZone: string
  guideline: string
  period: { start: number, end: number }
  daytime: PeriodResult
  nighttime: PeriodResult
  /** every valid reading of the profile; a mean only when both periods have enough */
  h24: PeriodResult
  dip: { pct: number, classification: DipClass } | null
  morningSurge: { sys: number, wakeTs: number, morning: number, trough: number } | null
  /** how each valid reading was put in its period */
  sleepFrom: { activity: number, fixedWindow: number }
  counts: { inPeriod: number, valid: number, excluded: Exclusions }
  deviceModels: ModelUse[]
  outcome: ProfileOutcome
  provenance: Record<string, string>
}

export function profileEnd (p: ProfileProtocol, startTs: number): number { return startTs + p.durationH * 3600_000 }

/**
 * A 24-hour BP profile: daytime, night-time and 24 h means, the night-time dip of SBP and
 * its class, and the morning surge. A reading is night-time when it reports activity
 * "sleep"; one reporting another activity is daytime; one reporting none falls in the
 * protocol's fixed sleep window in the resident's local time.
 */
export function computeProfile (p: ProfileProtocol, run: RunContext, readings: readonly ReportReading[]): ProfileResult {
  const tz = run.timeZone
  const start = run.startTs
  const end = profileEnd(p, start)
  const sorted = readings.filter((r) => r.ts >= start && r.ts < end).sort((a, b) => a.ts - b.ts || a.deviceId.localeCompare(b.deviceId))
  const excluded = emptyExclusions()
  const valid = sorted.filter((r) => admit(r, excluded))
  const from = wallMinutes(p.sleepWindow.from); const to = wallMinutes(p.sleepWindow.to)
  const inWindow = (m: number): boolean => from <= to ? m >= from && m < to : m >= from || m < to
  const sleepFrom = { activity: 0, fixedWindow: 0 }
  const day: typeof valid = []; const night: typeof valid = []
  for (const r of valid) {
    let asleep: boolean
    if (r.activity !== undefined) { asleep = r.activity === 'sleep'; sleepFrom.activity++ } else { asleep = inWindow(localMinuteOfDay(r.ts, tz)); sleepFrom.fixedWindow++ }
    ;(asleep ? night : day).push(r)
  }
  const t = OUT_OF_OFFICE[run.guideline]
  const period = (rs: typeof valid, required: number, threshold: BpThreshold, enough = rs.length >= required): PeriodResult => {
    const mean = enough && rs.length ? meanBp(rs) : null
    return { n: rs.length, required, mean, classification: mean ? (atOrAbove(mean, threshold) ? 'hypertension' : 'below-threshold') : null, threshold, readings: rs.map(ref) }
  }
  const daytime = period(day, p.minDaytimeReadings, t.day)
  const nighttime = period(night, p.minNighttimeReadings, t.night)
  const both = daytime.mean !== null && nighttime.mean !== null
  const h24 = period(valid, p.minDaytimeReadings + p.minNighttimeReadings, t.h24, both)
  let dip: ProfileResult['dip'] = null
  if (daytime.mean && nighttime.mean) {
    const pct = round1((daytime.mean.sys - nighttime.mean.sys) / daytime.mean.sys * 100)
    dip = { pct, classification: dipClass(pct) }
  }
  const morningSurge = both ? surge(night, day, p.morningWindowMin * 60_000) : null
  const done = run.now >= end
  const outcome: ProfileOutcome = !done
    ? { status: 'in-progress' }
    : both ? { status: 'complete' } : { status: 'insufficient-data', daytime: day.length, nighttime: night.length, required: { daytime: p.minDaytimeReadings, nighttime: p.minNighttimeReadings } }
  return {
    kind: 'abpm-24h',
    protocol: { id: p.id, version: p.version },
    timeZone: tz,
    guideline: run.guideline,
    period: { start, end },
    daytime, nighttime, h24, dip, morningSurge, sleepFrom,
    counts: { inPeriod: sorted.length, valid: valid.length, excluded },
    deviceModels: modelUse(sorted),
    outcome,
    provenance: {
      ...p.provenance,
      threshold: `${t.source}; day ${t.day.sys}/${t.day.dia}, night ${t.night.sys}/${t.night.dia}, 24 h ${t.h24.sys}/${t.h24.dia}, hypertension if the mean SBP or DBP is ≥ the value`,
      mean: 'arithmetic means of readings (not time-weighted), rounded to 0.1 mmHg; the dip is computed from the rounded means and rounded to 0.1 %: project heuristic',
      localTime: `the fixed sleep window is read in the resident's time zone ${tz}`,
      exclusions: 'readings of cuffless, unvalidated or unknown device models, and readings without both SBP and DBP, are counted and not averaged: reference §1 wearable caveat (2025 AHA/ACC, ESH Working Group ✔)',
    },
  }
}

/**
 * Sleep-trough surge: waking is the first daytime reading after the last night-time one;
 * the morning is the mean SBP of the daytime readings in the window after waking (at least
 * two); the trough is the lowest night-time SBP with the readings either side of it.
 */
function surge (night: readonly ReportReading[], day: readonly ReportReading[], windowMs: number): ProfileResult['morningSurge'] {
  const last = night[night.length - 1]
  if (!last) return null
  const wake = day.find((r) => r.ts > last.ts)
  if (!wake) return null
  const morning = day.filter((r) => r.ts >= wake.ts && r.ts < wake.ts + windowMs)
  if (morning.length < 2) return null
  let lo = 0
  for (let i = 1; i < night.length; i++) if (night[i]!.sys! < night[lo]!.sys!) lo = i
  const around = night.slice(Math.max(0, lo - 1), lo + 2)
  const m = round1(morning.reduce((s, r) => s + r.sys!, 0) / morning.length)
  const trough = round1(around.reduce((s, r) => s + r.sys!, 0) / around.length)
  return { sys: round1(m - trough), wakeTs: wake.ts, morning: m, trough }
}
