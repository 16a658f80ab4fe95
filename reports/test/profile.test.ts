import { describe, expect, it } from 'vitest'
import { computeProfile, dipClass } from '../profile.ts'
import { ABPM_24H } from '../protocol.ts'
import { zonedTime, localMinuteOfDay } from '../localtime.ts'
import type { ReportReading } from '../reading.ts'

const iso = (t: number): string => new Date(t).toISOString()
const cuff = (ts: number, sys: number, dia: number, over: Partial<ReportReading> = {}): ReportReading => ({ ts, deviceId: 'abpm-1', sys, dia, deviceModel: 'abpm-x', validation: 'validated', ...over })

/** a reading every 20 minutes for 24 h; night-time (22:00-07:00 local) at 110/65, daytime 130/80 */
function recording (tz: string, start: number, over: (ts: number, night: boolean) => Partial<ReportReading> = () => ({})): ReportReading[] {
  const out: ReportReading[] = []
  for (let k = 0; k < 72; k++) {
    const ts = start + k * 20 * 60_000
    const m = localMinuteOfDay(ts, tz)
    const night = m >= 22 * 60 || m < 7 * 60
    out.push(cuff(ts, night ? 110 : 130, night ? 65 : 80, over(ts, night)))
  }
  return out
}

describe('24-hour profile', () => {
  it('Asia/Shanghai: 9 hours of night (27 readings), dip 15.4 % → dipper, surge from the trough', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 10 * 60, tz)
    const r = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: start + 25 * 3600_000 }, recording(tz, start))
    expect([r.daytime.n, r.nighttime.n, r.h24.n]).toEqual([45, 27, 72])
    expect(r.daytime.mean).toEqual({ sys: 130, dia: 80 })
    expect(r.nighttime.mean).toEqual({ sys: 110, dia: 65 })
    expect(r.h24.mean).toEqual({ sys: 122.5, dia: 74.4 })
    expect(r.dip).toEqual({ pct: 15.4, classification: 'dipper' })
    expect(r.morningSurge).toEqual({ sys: 20, wakeTs: zonedTime('2025-06-02', 7 * 60, tz), morning: 130, trough: 110 })
    expect(r.sleepFrom).toEqual({ activity: 0, fixedWindow: 72 })
    expect([r.daytime.classification, r.nighttime.classification, r.h24.classification]).toEqual(['below-threshold', 'below-threshold', 'below-threshold'])
    expect(r.outcome).toEqual({ status: 'complete' })
  })

  it('Europe/Berlin on the spring-forward night: the fixed window 22:00-07:00 is 8 real hours (24 readings); ACC/AHA boundaries are ≥', () => {
    const tz = 'Europe/Berlin'
    const start = zonedTime('2025-03-29', 10 * 60, tz)
    const r = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'acc-aha-2017', now: start + 25 * 3600_000 }, recording(tz, start))
    expect(iso(r.period.end)).toBe('2025-03-30T09:00:00.000Z')
    expect([r.daytime.n, r.nighttime.n]).toEqual([48, 24])
    expect(r.h24.mean).toEqual({ sys: 123.3, dia: 75 })
    // day 130/80 ≥ 130/80, night 110/65 ≥ 110/65, 24 h DBP 75 ≥ 75: all at the threshold, so hypertension
    expect([r.daytime.classification, r.nighttime.classification, r.h24.classification]).toEqual(['hypertension', 'hypertension', 'hypertension'])
    expect(r.daytime.threshold).toEqual({ sys: 130, dia: 80 })
    expect(r.morningSurge?.wakeTs).toBe(Date.parse('2025-03-30T05:00:00Z')) // 07:00 CEST
    const esh = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: start + 25 * 3600_000 }, recording(tz, start))
    expect([esh.daytime.classification, esh.nighttime.classification, esh.h24.classification]).toEqual(['below-threshold', 'below-threshold', 'below-threshold'])
  })

  it('sleep reported by the device wins over the fixed window', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 10 * 60, tz)
    // asleep 00:00-06:00 only: 18 readings; 22:00-24:00 and 06:00-07:00 are awake though at night-time values
    const readings = recording(tz, start, (ts) => {
      const m = localMinuteOfDay(ts, tz)
      return { activity: m < 6 * 60 ? 'sleep' : 'rest' }
    })
    const r = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: start + 25 * 3600_000 }, readings)
    expect(r.sleepFrom).toEqual({ activity: 72, fixedWindow: 0 })
    expect([r.daytime.n, r.nighttime.n]).toEqual([54, 18])
    expect(r.daytime.mean).toEqual({ sys: 126.7, dia: 77.5 })
    expect(r.dip).toEqual({ pct: 13.2, classification: 'dipper' })
    expect(r.morningSurge?.wakeTs).toBe(zonedTime('2025-06-02', 6 * 60, tz))
  })

  it('fewer than 7 night-time or 20 daytime valid readings: insufficient, no dip; excluded devices do not count', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 10 * 60, tz)
    let nights = 0
    const readings = recording(tz, start, (_ts, night) => night && ++nights > 6 ? { validation: 'cuffless', deviceModel: 'watch' } : {})
    const r = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: start + 25 * 3600_000 }, readings)
    expect(r.nighttime).toMatchObject({ n: 6, mean: null, classification: null })
    expect(r.daytime.mean).toEqual({ sys: 130, dia: 80 })
    expect(r.h24.mean).toBeNull()
    expect(r.dip).toBeNull()
    expect(r.counts.excluded.cuffless).toBe(21)
    expect(r.outcome).toEqual({ status: 'insufficient-data', daytime: 45, nighttime: 6, required: { daytime: 20, nighttime: 7 } })
    const running = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: start + 3600_000 }, readings)
    expect(running.outcome).toEqual({ status: 'in-progress' })
  })

  it('dipping classes are half-open bands', () => {
    expect([25, 20, 19.9, 10, 9.9, 0, -0.1, -8].map(dipClass)).toEqual(['extreme-dipper', 'extreme-dipper', 'dipper', 'dipper', 'non-dipper', 'non-dipper', 'reverse-dipper', 'reverse-dipper'])
  })

  it('every number has its provenance', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 10 * 60, tz)
    const r = computeProfile(ABPM_24H, { startTs: start, timeZone: tz, guideline: 'china-2018', now: start }, [])
    for (const k of ['sleepWindow', 'minReadings', 'dipping', 'morningSurge', 'thresholds', 'threshold', 'mean', 'exclusions']) expect(r.provenance[k], k).toMatch(/clinical-thresholds\.md|project heuristic|project default|reference/)
  })
})
