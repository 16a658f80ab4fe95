import { describe, expect, it } from 'vitest'
import { makePerson, prng } from '../model.ts'
import { homeBpWeek } from '../home-bp.ts'
import { HOME_BP_7D, addDays, computeHomeBp, zonedTime, type ReportReading } from '../../reports/index.ts'

const TZ = 'Europe/Berlin'
const dates = Array.from({ length: 7 }, (_, i) => addDays('2025-03-27', i)) // across the spring DST change

function run (scenario: 'healthy' | 'hypertensive', missRate: number, seed: number, watchRate = 0.1) {
  const rand = prng(seed)
  const person = makePerson(rand, scenario)
  const week = homeBpWeek(person, { timeZone: TZ, dates, morning: 7 * 60, evening: 20 * 60, perSitting: 2, missRate, watchRate }, rand, (d, m) => zonedTime(d, m, TZ))
  const readings: ReportReading[] = week.map((r) => ({ ts: r.ts, deviceId: r.device, sys: r.sys, dia: r.dia, hr: r.hr, deviceModel: r.device === 'cuff' ? 'demo-cuff' : 'demo-watch', validation: r.device === 'cuff' ? 'validated' : 'cuffless' }))
  return { person, result: computeHomeBp(HOME_BP_7D, { startTs: zonedTime(dates[0]!, 0, TZ), timeZone: TZ, guideline: 'esh-2023', now: zonedTime(addDays(dates[6]!, 2), 0, TZ) }, readings) }
}

describe('simulated resident through a home-BP week', () => {
  it('a hypertensive resident who keeps to the protocol is classified at or above 135/85; watch sittings are not averaged', () => {
    const { result } = run('hypertensive', 0.05, 3, 0.25)
    expect(result.outcome.status).toBe('complete')
    expect(result.outcome).toMatchObject({ classification: 'hypertension' })
    expect(result.counts.excluded.cuffless).toBeGreaterThan(0)
    expect(result.adherence.done).toBeGreaterThanOrEqual(10)
  })

  it('a healthy resident is below the threshold', () => {
    const { result } = run('healthy', 0.05, 4)
    expect(result.outcome).toMatchObject({ status: 'complete', classification: 'below-threshold' })
  })

  it('one who skips most sittings ends with insufficient data', () => {
    const { result } = run('hypertensive', 0.75, 5)
    expect(result.outcome.status).toBe('insufficient-data')
    expect(result.adherence.missed).toBeGreaterThan(result.adherence.done)
  })
})
