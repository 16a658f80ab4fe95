import { addDays, localDate, zonedTime } from './localtime.ts'
import { OUT_OF_OFFICE, atOrAbove, wallMinutes, type BpThreshold, type HomeBpProtocol } from './protocol.ts'
import { admit, emptyExclusions, meanBp, modelUse, ref, type BpClass, type Exclusions, type ModelUse, type ReadingRef, type ReportReading, type RunContext } from './reading.ts'

export type SessionStatus = 'done' | 'partial' | 'missed' | 'pending' | 'not-scheduled'

export interface SessionAdherence {
  id: string
  from: number
  to: number
  status: SessionStatus
  /** valid readings of the session that count (at most readingsPerSession) */
  readings: number
  /** readings of the session's window from excluded devices or incomplete */
  excluded: number
}

export interface DayAdherence { day: number, date: string, discarded: boolean, sessions: SessionAdherence[] }

export type HomeBpOutcome =
  | { status: 'in-progress' }
  | { status: 'insufficient-data', n: number, required: number }
  | { status: 'complete', n: number, mean: { sys: number, dia: number }, classification: BpClass, threshold: BpThreshold }

export interface HomeBpResult {
  kind: 'home-bp'
  protocol: { id: string, version: string }
  timeZone: string
  guideline: string
  period: { start: number, end: number }
  days: DayAdherence[]
  adherence: { scheduled: number, done: number, partial: number, missed: number, pending: number }
  counts: { inPeriod: number, averaged: number, firstDay: number, outsideSessions: number, beyondSession: number, excluded: Exclusions }
  /** the readings the mean is made of, in time order */
  averaged: ReadingRef[]
  deviceModels: ModelUse[]
  outcome: HomeBpOutcome
  provenance: Record<string, string>
}

/** When a protocol started at `startTs` ends: local midnight after its last day. */
export function homeBpEnd (p: HomeBpProtocol, startTs: number, timeZone: string): number {
  return zonedTime(addDays(localDate(startTs, timeZone), p.days), 0, timeZone)
}

/**
 * A home-BP protocol's adherence and result, as a pure function of the protocol, the
 * run (start, resident's zone and guideline, now) and the readings. Day 1 is the local
 * date the protocol started on; a session is its window on a protocol day in local time.
 */
export function computeHomeBp (p: HomeBpProtocol, run: RunContext, readings: readonly ReportReading[]): HomeBpResult {
  const tz = run.timeZone
  const start = run.startTs
  const end = homeBpEnd(p, start, tz)
  const sorted = readings.filter((r) => r.ts >= start && r.ts < end).sort((a, b) => a.ts - b.ts || a.deviceId.localeCompare(b.deviceId))
  const excluded = emptyExclusions()
  const valid = sorted.filter((r) => admit(r, excluded))
  const startDate = localDate(start, tz)
  // readings of a session belong to one sitting: a later one in the window is not part of it
  const sittingMs = Math.max(600, p.readingsPerSession * p.readingIntervalS * 3) * 1000
  const taken = new Set<ReportReading>()
  const counted: (ReportReading & { sys: number, dia: number })[] = []
  let firstDay = 0; let beyondSession = 0
  const days: DayAdherence[] = []
  const adherence = { scheduled: 0, done: 0, partial: 0, missed: 0, pending: 0 }
  for (let d = 1; d <= p.days; d++) {
    const date = addDays(startDate, d - 1)
    const discarded = p.discardFirstDay && d === 1
    const sessions: SessionAdherence[] = []
    for (const s of p.sessions) {
      const from = zonedTime(date, wallMinutes(s.from), tz)
      const to = zonedTime(date, wallMinutes(s.to), tz)
      const inWindow = valid.filter((r) => r.ts >= from && r.ts < to)
      for (const r of inWindow) taken.add(r)
      const first = inWindow[0]
      const sitting = first ? inWindow.filter((r) => r.ts - first.ts <= sittingMs).slice(0, p.readingsPerSession) : []
      beyondSession += inWindow.length - sitting.length
      if (discarded) firstDay += sitting.length; else counted.push(...sitting)
      const excludedHere = sorted.filter((r) => r.ts >= from && r.ts < to).length - inWindow.length
      let status: SessionStatus
      if (to <= start) status = 'not-scheduled'
      else if (sitting.length >= p.readingsPerSession) status = 'done'
      else if (to > run.now) status = 'pending'
      else status = sitting.length > 0 ? 'partial' : 'missed'
      if (status !== 'not-scheduled') { adherence.scheduled++; adherence[status]++ }
      sessions.push({ id: s.id, from, to, status, readings: sitting.length, excluded: excludedHere })
    }
    days.push({ day: d, date, discarded, sessions })
  }
  const outsideSessions = valid.filter((r) => !taken.has(r)).length
  const threshold = OUT_OF_OFFICE[run.guideline].home
  let outcome: HomeBpOutcome
  if (run.now < end) outcome = { status: 'in-progress' }
  else if (counted.length < p.minValidReadings) outcome = { status: 'insufficient-data', n: counted.length, required: p.minValidReadings }
  else {
    // classified on the reported (1-decimal) mean, so the number a clinician reads and its class agree
    const mean = meanBp(counted)
    outcome = { status: 'complete', n: counted.length, mean, classification: atOrAbove(mean, threshold) ? 'hypertension' : 'below-threshold', threshold }
  }
  return {
    kind: 'home-bp',
    protocol: { id: p.id, version: p.version },
    timeZone: tz,
    guideline: run.guideline,
    period: { start, end },
    days,
    adherence,
    counts: { inPeriod: sorted.length, averaged: counted.length, firstDay, outsideSessions, beyondSession, excluded },
    averaged: counted.sort((a, b) => a.ts - b.ts).map(ref),
    deviceModels: modelUse(sorted),
    outcome,
    provenance: {
      ...p.provenance,
      threshold: `${OUT_OF_OFFICE[run.guideline].source}; home ${threshold.sys}/${threshold.dia}, hypertension if mean SBP ≥ ${threshold.sys} or mean DBP ≥ ${threshold.dia}`,
      mean: 'arithmetic mean of the averaged readings, rounded to 0.1 mmHg, classified as rounded: project heuristic',
      localTime: `days and session windows in the resident's time zone ${tz}`,
      sitting: `a session's readings are its first ${p.readingsPerSession} valid ones within ${sittingMs / 60000} min of the first: project heuristic`,
      exclusions: 'readings of cuffless, unvalidated or unknown device models, and readings without both SBP and DBP, are counted and not averaged: reference §1 wearable caveat (2025 AHA/ACC, ESH Working Group ✔)',
    },
  }
}
