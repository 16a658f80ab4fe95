import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ManualClock, openDatabase, silentLogger, type DB } from '../../core/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { DeviceModelCatalogue, ReportBook, reportSink, zonedTime, addDays, type FeedRow, type HomeBpResult } from '../index.ts'
import type { OutboxEntry } from '../../forwarder/index.ts'

const TZ = 'Asia/Shanghai'
const catalogue = new DeviceModelCatalogue([
  { model: 'cuff-a', measurement: 'cuff', validated: true, source: 'test' },
  { model: 'watch-b', measurement: 'cuffless', validated: false, source: 'test' },
])
const models: Record<string, string> = { 'dev-cuff': 'cuff-a', 'dev-watch': 'watch-b' }

function book (db: DB, clock: ManualClock): ReportBook {
  return new ReportBook({ db, clock, logger: silentLogger(), deviceModel: (id) => models[id], catalogue, options: { finishGraceMs: 3600_000, amendWindowMs: 3 * 86400_000 } })
}

/** a resident's week of home readings: morning and evening, two a minute apart, from `day` 1 */
function week (residentId: string, sys: number, from = 1, to = 7): FeedRow[] {
  const rows: FeedRow[] = []
  for (let d = from; d <= to; d++) for (const m of [7 * 60, 19 * 60]) for (const k of [0, 1]) rows.push({ residentId, deviceId: 'dev-cuff', ts: zonedTime(addDays('2025-06-01', d - 1), m, TZ) + k * 60_000, sys, dia: 80, hr: 70 })
  return rows
}

describe('report book: protocol runs fed by readings, finished and amended on the wall clock', () => {
  it('runs a home-BP week: progress while running, the report after the end plus grace, state kept across a restart', () => {
    const db = openDatabase(join(tempDir(), 'r.db'))
    const clock = new ManualClock(zonedTime('2025-06-01', 6 * 60, TZ))
    let b = book(db, clock)
    const run = b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'china-2018', startedBy: 'hospital:h1' })
    expect(run).toMatchObject({ state: 'active', version: 0, end: zonedTime('2025-06-08', 0, TZ), protocol: { id: 'home-bp-7d', version: '1.0.0', kind: 'home-bp' } })
    const rows = week('r1', 138, 1, 3)
    db.transaction(() => b.consume([...rows, { residentId: 'r2', deviceId: 'x', ts: clock.now(), sys: 200, dia: 100 }, { residentId: 'r1', deviceId: 'dev-watch', ts: rows[5]!.ts + 1, sys: 99, dia: 60 }]))()
    clock.set(zonedTime('2025-06-03', 21 * 60, TZ))
    const progress = b.get(run.id)!.result as HomeBpResult
    expect(progress.outcome).toEqual({ status: 'in-progress' })
    expect(progress.adherence).toMatchObject({ done: 6, pending: 8 })
    expect(progress.counts.excluded.cuffless).toBe(1)
    expect(b.tick()).toEqual([])

    // restart: the run and its readings are in the database
    b = book(db, clock)
    db.transaction(() => b.consume(week('r1', 138, 4, 7)))()
    clock.set(zonedTime('2025-06-08', 0, TZ) + 30 * 60_000)
    expect(b.tick()).toEqual([]) // within the grace period
    clock.advance(3600_000)
    const [report, ...more] = db.transaction(() => b.tick())()
    expect(more).toEqual([])
    expect(report).toMatchObject({ runId: run.id, residentId: 'r1', version: 1 })
    expect((report!.result as HomeBpResult).outcome).toEqual({ status: 'complete', n: 24, mean: { sys: 138, dia: 80 }, classification: 'hypertension', threshold: { sys: 135, dia: 85 } })
    expect(b.get(run.id)).toMatchObject({ state: 'finished', version: 1 })
    expect(b.tick()).toEqual([])
    expect(b.list('r1').map((r) => [r.id, r.state])).toEqual([[run.id, 'finished']])
  })

  it('a late reading amends the report (version 2), once; a reading after the amend window does not', () => {
    const db = openDatabase(join(tempDir(), 'r.db'))
    const clock = new ManualClock(zonedTime('2025-06-01', 0, TZ))
    const b = book(db, clock)
    const run = b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'esh-2023', startedBy: 'resident:r1' })
    const rows = week('r1', 130)
    const late = rows.splice(-2) // the last evening arrives after the end (the cuff was offline)
    b.consume(rows)
    clock.set(zonedTime('2025-06-08', 2 * 60, TZ))
    const [v1] = b.tick()
    expect(v1!.version).toBe(1)
    expect((v1!.result as HomeBpResult).counts.averaged).toBe(22)
    b.consume(late.map((r) => ({ ...r, sys: 150 })))
    b.consume(late.map((r) => ({ ...r, sys: 150 }))) // a duplicate changes nothing
    const [v2, ...rest] = b.tick()
    expect(rest).toEqual([])
    expect(v2!.version).toBe(2)
    expect((v2!.result as HomeBpResult).outcome).toMatchObject({ n: 24, mean: { sys: 131.7, dia: 80 } })
    expect(b.tick()).toEqual([])
    clock.set(zonedTime('2025-06-12', 0, TZ))
    b.tick() // past the amend window: the run is no longer fed
    b.consume([{ residentId: 'r1', deviceId: 'dev-cuff', ts: zonedTime('2025-06-07', 8 * 60, TZ), sys: 200, dia: 120 }])
    expect(b.tick()).toEqual([])
    expect(b.get(run.id)!.version).toBe(2)
  })

  it('a 24-hour profile with too few night-time readings is finished as insufficient data; a cancelled run never reports', () => {
    const db = openDatabase(join(tempDir(), 'r.db'))
    const clock = new ManualClock(zonedTime('2025-06-01', 9 * 60, TZ))
    const b = book(db, clock)
    const run = b.start({ residentId: 'r1', protocolId: 'abpm-24h', timeZone: TZ, guideline: 'esh-2023', startedBy: 'hospital:h1' })
    const gone = b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'esh-2023', startedBy: 'resident:r1' })
    expect(b.cancel(gone.id)).toBe(true)
    const rows: FeedRow[] = []
    for (let k = 0; k < 48; k++) rows.push({ residentId: 'r1', deviceId: 'dev-cuff', ts: clock.now() + k * 30 * 60_000, sys: 125, dia: 78, activity: k >= 28 && k < 32 ? 'sleep' : 'rest' })
    b.consume(rows)
    clock.advance(26 * 3600_000)
    const reports = b.tick()
    expect(reports.map((r) => [r.runId, r.result.outcome.status])).toEqual([[run.id, 'insufficient-data']])
  })

  it('refuses what it cannot run, with a message that says what to fix', () => {
    const db = openDatabase(':memory:')
    const b = book(db, new ManualClock(Date.parse('2025-06-01T00:00:00Z')))
    expect(() => b.start({ residentId: 'r1', protocolId: 'nope', timeZone: TZ, guideline: 'esh-2023', startedBy: 'x' })).toThrow(/home-bp-7d/)
    expect(() => b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: 'Mars/Base', guideline: 'esh-2023', startedBy: 'x' })).toThrow(/IANA/)
    expect(() => b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'who-1999', startedBy: 'x' })).toThrow(/acc-aha-2017/)
    expect(() => b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'esh-2023', startedBy: 'x', startTs: Date.parse('2025-01-01T00:00:00Z') })).toThrow(/ended already/)
  })

  it('the sink enqueues each report Bundle to the resident\'s hospital, signed, with a stable idempotency key', () => {
    const db = openDatabase(':memory:')
    const clock = new ManualClock(zonedTime('2025-06-01', 0, TZ))
    const b = book(db, clock)
    b.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'esh-2023', startedBy: 'x' })
    b.start({ residentId: 'r2', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'esh-2023', startedBy: 'x' })
    b.consume([...week('r1', 130), ...week('r2', 130)])
    clock.set(zonedTime('2025-06-09', 0, TZ))
    const queued: OutboxEntry[] = []
    const audit: unknown[] = []
    const sink = (h1Feeds: string[]) => reportSink({
      node: 'county-a',
      hospitals: () => [{ id: 'h1', fhirUrl: 'http://h1.example/fhir', fhirAuth: 'hmac', fhirSecret: 's3cret', feeds: h1Feeds }, { id: 'h2', fhirUrl: null, fhirAuth: 'bearer', fhirSecret: null, feeds: ['reports', 'alerts'] }],
      hospitalOf: (id) => ({ r1: 'h1', r2: 'h2' } as Record<string, string>)[id],
      enqueue: (e) => queued.push(e), audit: (...a) => audit.push(a),
    })
    const finished = b.tick()
    // a hospital that did not choose the reports feed gets none
    expect(sink(['alerts', 'summaries'])(finished)).toBe(0)
    expect(queued).toEqual([])
    expect(sink(['reports', 'alerts'])(finished)).toBe(4)
    expect(queued.map((q) => q.url)).toEqual(Array(4).fill('http://h1.example/fhir'))
    expect(queued.at(-1)!.idempotencyKey).toMatch(/^fhir:county-a-r1-rpt-[0-9a-f]{16}-v1$/)
    expect(queued[0]!.headers['x-vitalmesh-signature']).toMatch(/^sha256=[0-9a-f]{64}$/)
    expect(audit).toHaveLength(1)
  })
})
