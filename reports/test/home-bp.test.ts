import { describe, expect, it } from 'vitest'
import { computeHomeBp, homeBpEnd } from '../home-bp.ts'
import { HOME_BP_5D_TRIPLES, HOME_BP_7D, HomeBpProtocolSchema } from '../protocol.ts'
import { zonedTime, addDays } from '../localtime.ts'
import type { ReportReading } from '../reading.ts'

const iso = (t: number): string => new Date(t).toISOString()
const cuff = (ts: number, sys: number, dia: number, over: Partial<ReportReading> = {}): ReportReading => ({ ts, deviceId: 'cuff-1', sys, dia, deviceModel: 'omron-x', validation: 'validated', ...over })

/** two readings a minute apart at `hh:mm` local on each protocol day */
function sessions (tz: string, firstDate: string, days: number, times: number[], bp: (day: number, i: number) => [number, number], perSession = 2): ReportReading[] {
  const out: ReportReading[] = []
  for (let d = 0; d < days; d++) {
    for (const [i, m] of times.entries()) {
      for (let k = 0; k < perSession; k++) out.push(cuff(zonedTime(addDays(firstDate, d), m, tz) + k * 60_000, ...bp(d + 1, i)))
    }
  }
  return out
}

describe('home BP protocol (7 days, morning + evening, 2 readings, first day discarded)', () => {
  it('Europe/Berlin across the spring DST change: session windows follow local time, day 1 is discarded', () => {
    const tz = 'Europe/Berlin'
    const start = zonedTime('2025-03-27', 6 * 60, tz) // Thu 06:00 CET
    const readings = sessions(tz, '2025-03-27', 7, [7 * 60, 20 * 60], (day) => day === 1 ? [180, 110] : [132, 82])
    const r = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: Date.parse('2025-04-10T00:00:00Z') }, readings)
    expect(iso(r.period.start)).toBe('2025-03-27T05:00:00.000Z')
    expect(iso(r.period.end)).toBe('2025-04-02T22:00:00.000Z') // local midnight after day 7, CEST
    expect(r.days.map((d) => d.date)).toEqual(['2025-03-27', '2025-03-28', '2025-03-29', '2025-03-30', '2025-03-31', '2025-04-01', '2025-04-02'])
    const dstDay = r.days[3]!
    expect(dstDay.sessions.map((s) => [s.id, iso(s.from), iso(s.to), s.status, s.readings])).toEqual([
      ['morning', '2025-03-30T02:00:00.000Z', '2025-03-30T10:00:00.000Z', 'done', 2],
      ['evening', '2025-03-30T15:00:00.000Z', '2025-03-30T22:00:00.000Z', 'done', 2],
    ])
    expect(r.days[0]!.discarded).toBe(true)
    expect(r.adherence).toEqual({ scheduled: 14, done: 14, partial: 0, missed: 0, pending: 0 })
    expect(r.counts).toEqual({ inPeriod: 28, averaged: 24, firstDay: 4, outsideSessions: 0, beyondSession: 0, excluded: { unvalidated: 0, cuffless: 0, unknown: 0, incomplete: 0 } })
    expect(r.outcome).toEqual({ status: 'complete', n: 24, mean: { sys: 132, dia: 82 }, classification: 'below-threshold', threshold: { sys: 135, dia: 85 } })
    expect(r.averaged).toHaveLength(24)
    expect(r.averaged[0]!.ts).toBe(zonedTime('2025-03-28', 7 * 60, tz))
    // the same readings under ACC/AHA: home threshold 130/80
    const acc = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline: 'acc-aha-2017', now: Date.parse('2025-04-10T00:00:00Z') }, readings)
    expect(acc.outcome).toMatchObject({ status: 'complete', classification: 'hypertension', threshold: { sys: 130, dia: 80 } })
    expect(r.provenance.threshold).toContain('clinical-thresholds.md')
  })

  it('boundaries: a mean of exactly 135.0 (ESH) is hypertension, 134.9 is not; DBP 85 alone is enough; ACC/AHA 130/80 likewise', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 0, tz)
    const now = zonedTime('2025-06-09', 0, tz)
    const run = (guideline: 'esh-2023' | 'china-2018' | 'acc-aha-2025', bp: (d: number, i: number) => [number, number]) =>
      computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline, now }, sessions(tz, '2025-06-01', 7, [7 * 60, 19 * 60], bp)).outcome
    expect(run('esh-2023', () => [135, 70])).toMatchObject({ classification: 'hypertension', mean: { sys: 135, dia: 70 } })
    // 24 readings: 22 at 135 and 2 at 134 → 134.9166 → reported 134.9
    expect(run('esh-2023', (d, i) => d === 7 && i === 1 ? [134, 70] : [135, 70])).toMatchObject({ classification: 'below-threshold', mean: { sys: 134.9, dia: 70 } })
    expect(run('china-2018', () => [120, 85])).toMatchObject({ classification: 'hypertension' })
    expect(run('china-2018', () => [120, 84])).toMatchObject({ classification: 'below-threshold' })
    expect(run('acc-aha-2025', () => [130, 70])).toMatchObject({ classification: 'hypertension' })
    expect(run('acc-aha-2025', () => [129, 79])).toMatchObject({ classification: 'below-threshold' })
  })

  it('Asia/Shanghai, started at 23:30: the evening of day 1 is still open; a reading after midnight is day 2, outside its sessions', () => {
    const tz = 'Asia/Shanghai'
    const start = Date.parse('2025-06-01T15:30:00Z') // 23:30 local
    const readings = [
      cuff(Date.parse('2025-06-01T15:40:00Z'), 140, 90), cuff(Date.parse('2025-06-01T15:41:00Z'), 140, 90), // 23:40, day 1 evening
      cuff(Date.parse('2025-06-01T16:10:00Z'), 140, 90), // 00:10 on day 2: no session
      cuff(Date.parse('2025-06-01T23:00:00Z'), 130, 80), // 07:00 on day 2
    ]
    const now = Date.parse('2025-06-02T12:00:00Z') // 20:00 local on day 2
    const r = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline: 'china-2018', now }, readings)
    expect(r.days[0]!.sessions.map((s) => [s.id, s.status, s.readings])).toEqual([['morning', 'not-scheduled', 0], ['evening', 'done', 2]])
    expect(r.days[1]!.sessions.map((s) => [s.id, s.status, s.readings])).toEqual([['morning', 'partial', 1], ['evening', 'pending', 0]])
    expect(r.adherence).toEqual({ scheduled: 13, done: 1, partial: 1, missed: 0, pending: 11 })
    expect(r.counts.outsideSessions).toBe(1)
    expect(r.counts.firstDay).toBe(2)
    expect(r.outcome).toEqual({ status: 'in-progress' })
    expect(iso(homeBpEnd(HOME_BP_7D, start, tz))).toBe('2025-06-07T16:00:00.000Z')
  })

  it('readings of cuffless, unvalidated and unknown models are counted, never averaged: too few valid ones is "insufficient data"', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 0, tz)
    const now = zonedTime('2025-06-10', 0, tz)
    const valid = sessions(tz, '2025-06-02', 3, [7 * 60], () => [150, 95]).slice(0, 5) // 5 valid readings after day 1
    const watch = sessions(tz, '2025-06-01', 7, [7 * 60 + 30, 20 * 60], () => [170, 100]).map((r) => ({ ...r, deviceId: 'watch-1', deviceModel: 'smartwatch', validation: 'cuffless' as const }))
    const cheap = sessions(tz, '2025-06-02', 1, [8 * 60], () => [170, 100]).map((r) => ({ ...r, deviceId: 'cuff-2', deviceModel: 'no-name', validation: 'unvalidated' as const }))
    const unknown = [cuff(zonedTime('2025-06-03', 21 * 60, tz), 170, 100, { deviceId: 'x', deviceModel: null, validation: 'unknown' })]
    const sysOnly = [cuff(zonedTime('2025-06-04', 21 * 60, tz), 170, 100, { dia: undefined })]
    const r = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline: 'esh-2023', now }, [...valid, ...watch, ...cheap, ...unknown, ...sysOnly])
    expect(r.counts.excluded).toEqual({ cuffless: 28, unvalidated: 2, unknown: 1, incomplete: 1 })
    expect(r.counts.averaged).toBe(5)
    expect(r.outcome).toEqual({ status: 'insufficient-data', n: 5, required: 12 })
    expect(r.days[1]!.sessions[0]).toMatchObject({ status: 'done', readings: 2, excluded: 4 })
    expect(r.days[1]!.sessions[1]).toMatchObject({ status: 'missed', readings: 0, excluded: 2 })
    expect(r.deviceModels).toEqual([
      { model: 'no-name', validation: 'unvalidated', readings: 2 },
      { model: 'null', validation: 'unknown', readings: 1 },
      { model: 'omron-x', validation: 'validated', readings: 6 },
      { model: 'smartwatch', validation: 'cuffless', readings: 28 },
    ].map((m) => ({ ...m, model: m.model === 'null' ? null : m.model })))
  })

  it('a session counts its first readings of one sitting; more readings or a later sitting are not averaged', () => {
    const tz = 'Asia/Shanghai'
    const start = zonedTime('2025-06-01', 0, tz)
    const t0 = zonedTime('2025-06-02', 7 * 60, tz)
    const readings = [cuff(t0, 120, 80), cuff(t0 + 60_000, 122, 80), cuff(t0 + 120_000, 160, 100), cuff(t0 + 3 * 3600_000, 160, 100)]
    const r = computeHomeBp(HOME_BP_7D, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: zonedTime('2025-06-10', 0, tz) }, readings)
    expect(r.averaged.map((x) => x.sys)).toEqual([120, 122])
    expect(r.counts.beyondSession).toBe(2)
  })

  it('another protocol is other data: 5 days, readings in threes', () => {
    const tz = 'Europe/Berlin'
    const start = zonedTime('2025-10-22', 0, tz)
    const readings = sessions(tz, '2025-10-22', 5, [6 * 60 + 30, 21 * 60], (d, i) => [d === 1 ? 200 : 128 + i * 4, 84], 3)
    const r = computeHomeBp(HOME_BP_5D_TRIPLES, { startTs: start, timeZone: tz, guideline: 'esh-2023', now: Date.parse('2025-11-01T00:00:00Z') }, readings)
    expect(iso(r.period.end)).toBe('2025-10-26T23:00:00.000Z') // fall-back day in the protocol: CET again
    expect(r.outcome).toEqual({ status: 'complete', n: 24, mean: { sys: 130, dia: 84 }, classification: 'below-threshold', threshold: { sys: 135, dia: 85 } })
    expect(r.protocol).toEqual({ id: 'home-bp-5d-triples', version: '1.0.0' })
  })

  it('protocols are validated data', () => {
    expect(HomeBpProtocolSchema.safeParse({ ...HOME_BP_7D, version: 'one' }).success).toBe(false)
    expect(HomeBpProtocolSchema.safeParse({ ...HOME_BP_7D, sessions: [{ ...HOME_BP_7D.sessions[0], to: '25:00' }] }).success).toBe(false)
    for (const v of Object.values(HOME_BP_7D.provenance)) expect(v).toMatch(/clinical-thresholds\.md|project heuristic/)
  })
})
