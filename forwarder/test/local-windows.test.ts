import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ManualClock, openDatabase, silentLogger, type DB } from '../../core/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { Spool } from '../../ingest/index.ts'
import { Aggregator, checkRollup, FORWARDER_MIGRATIONS, parseWindow, researchPayload, windowAt, type ClosedWindow } from '../index.ts'
import { migrate } from '../../core/index.ts'

const D = parseWindow('1d')
const H = parseWindow('1h')
const iso = (b: { start: number, end: number }): [string, string, number] => [new Date(b.start).toISOString(), new Date(b.end).toISOString(), (b.end - b.start) / 3600_000]
const at = (s: string): number => Date.parse(s)

describe('window bounds in the resident\'s zone (golden)', () => {
  it('Asia/Shanghai: a day runs from local midnight, 16:00 UTC, to the next; the last second before it and midnight itself fall on either side', () => {
    const tz = 'Asia/Shanghai'
    expect(iso(windowAt(D, at('2026-03-01T15:59:59.999Z'), tz))).toEqual(['2026-02-28T16:00:00.000Z', '2026-03-01T16:00:00.000Z', 24])
    expect(iso(windowAt(D, at('2026-03-01T16:00:00.000Z'), tz))).toEqual(['2026-03-01T16:00:00.000Z', '2026-03-02T16:00:00.000Z', 24])
    // hours stay UTC hours: +08:00 is a whole hour
    expect(iso(windowAt(H, at('2026-03-01T15:59:59Z'), tz))).toEqual(['2026-03-01T15:00:00.000Z', '2026-03-01T16:00:00.000Z', 1])
  })

  it('Europe/Berlin: the spring-forward day has 23 hours, the fall-back day 25; hours are UTC hours on both', () => {
    const tz = 'Europe/Berlin'
    expect(iso(windowAt(D, at('2026-03-29T12:00:00Z'), tz))).toEqual(['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z', 23])
    expect(iso(windowAt(D, at('2026-03-29T21:59:59Z'), tz))[0]).toBe('2026-03-28T23:00:00.000Z')
    expect(iso(windowAt(D, at('2026-03-29T22:00:00Z'), tz))).toEqual(['2026-03-29T22:00:00.000Z', '2026-03-30T22:00:00.000Z', 24])
    expect(iso(windowAt(D, at('2026-10-25T12:00:00Z'), tz))).toEqual(['2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z', 25])
    // 02:30 local happens twice on the fall-back day; both hours are their own UTC hour
    expect(iso(windowAt(H, at('2026-10-25T00:30:00Z'), tz))).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z', 1])
    expect(iso(windowAt(H, at('2026-10-25T01:30:00Z'), tz))).toEqual(['2026-10-25T01:00:00.000Z', '2026-10-25T02:00:00.000Z', 1])
  })

  it('America/New_York: the spring-forward day has 23 hours (05:00 UTC to 04:00 UTC)', () => {
    expect(iso(windowAt(D, at('2026-03-08T15:00:00Z'), 'America/New_York'))).toEqual(['2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z', 23])
    expect(iso(windowAt(D, at('2026-11-01T15:00:00Z'), 'America/New_York'))).toEqual(['2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z', 25])
  })

  it('zones off the whole hour: hour windows run from local hh:00 (Kolkata +05:30, Kathmandu +05:45); 15-minute windows stay UTC\'s', () => {
    expect(iso(windowAt(H, at('2026-03-01T10:10:00Z'), 'Asia/Kolkata'))).toEqual(['2026-03-01T09:30:00.000Z', '2026-03-01T10:30:00.000Z', 1])
    expect(iso(windowAt(H, at('2026-03-01T10:10:00Z'), 'Asia/Kathmandu'))).toEqual(['2026-03-01T09:15:00.000Z', '2026-03-01T10:15:00.000Z', 1])
    expect(iso(windowAt(parseWindow('15m'), at('2026-03-01T10:10:00Z'), 'Asia/Kolkata'))[0]).toBe('2026-03-01T10:00:00.000Z')
    expect(iso(windowAt(D, at('2026-03-01T10:10:00Z'), 'Asia/Kolkata'))).toEqual(['2026-02-28T18:30:00.000Z', '2026-03-01T18:30:00.000Z', 24])
  })

  it('UTC (and a node without zones) keeps the windows of before', () => {
    expect(iso(windowAt(D, at('2026-03-01T23:59:59Z'), 'UTC'))).toEqual(['2026-03-01T00:00:00.000Z', '2026-03-02T00:00:00.000Z', 24])
    // 2d windows count local days from 1970-01-01: every resident of a zone has the same ones
    expect(iso(windowAt(parseWindow('2d'), at('2026-03-02T05:00:00Z'), 'UTC'))).toEqual(['2026-03-02T00:00:00.000Z', '2026-03-04T00:00:00.000Z', 48])
  })
})

interface Node { db: DB, spool: Spool, a: Aggregator, sent: ClosedWindow[] }

/** A node with a spool: readings go in through the spool, and a "crash" reopens the database without a stop(). */
function node (file: string, clock: ManualClock, zones: Record<string, string>, sent: ClosedWindow[] = []): Node {
  const db = openDatabase(file)
  const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
  const a = new Aggregator({
    db, spool, clock, logger: silentLogger(), windows: [H, D], latenessMs: 600_000, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
    resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: null, researchConsent: true }),
    timeZone: (id) => zones[id] ?? 'Asia/Shanghai', alertsIn: () => 0,
    sinks: [{ name: 'test', emit: (w) => { sent.push(w) } }],
  })
  spool.attach({ name: 'forwarder', checkpointsItself: true, consume: (rows) => a.prepare(rows) })
  return { db, spool, a, sent }
}

async function publish (n: Node, residentId: string, readings: { seq: number, ts: number, hr: number, sys?: number, dia?: number }[]): Promise<void> {
  // one device per resident: the spool recognises a resend by (device, seq)
  await n.spool.appendAsync({ deviceKey: [...residentId].reduce((h, c) => h * 31 + c.charCodeAt(0), 7) % 1e6, deviceId: `dev-${residentId}`, residentId, readings })
  await n.spool.consumersIdle()
}

const days = (sent: ClosedWindow[]): [string, string, string, number][] =>
  sent.filter((w) => w.kind === '1d').map((w) => [w.timeZone, new Date(w.start).toISOString(), new Date(w.end).toISOString(), w.all.reduce((s, r) => s + r.hr.n, 0)])

describe('daily windows of the aggregator in local time (golden)', () => {
  it('Asia/Shanghai across midnight: two days split at 16:00 UTC, each closed after its own end, the roll-up names its zone and passes the parent\'s check', async () => {
    const clock = new ManualClock(at('2026-03-01T15:00:00Z'))
    const n = node(join(tempDir(), 'a.db'), clock, {})
    await publish(n, 'r1', [
      { seq: 1, ts: at('2026-03-01T15:30:00Z'), hr: 70 },
      { seq: 2, ts: at('2026-03-01T15:59:59.999Z'), hr: 71 }, // 23:59:59.999 local
      { seq: 3, ts: at('2026-03-01T16:00:00Z'), hr: 72 }, // 00:00 local, the next day
      { seq: 4, ts: at('2026-03-01T16:30:00Z'), hr: 73 },
    ])
    clock.set(at('2026-03-01T16:09:59Z')) // the day ended, its lateness (10 min) has not
    n.a.tick()
    expect(days(n.sent)).toEqual([])
    clock.set(at('2026-03-01T16:10:00Z'))
    n.a.tick()
    expect(days(n.sent)).toEqual([['Asia/Shanghai', '2026-02-28T16:00:00.000Z', '2026-03-01T16:00:00.000Z', 2]])
    const day = n.sent.find((w) => w.kind === '1d')!
    expect(day.rollup.window).toEqual({ kind: '1d', start: at('2026-02-28T16:00:00Z'), end: at('2026-03-01T16:00:00Z'), timeZone: 'Asia/Shanghai' })
    expect(checkRollup(day.rollup, [H, D]).ok).toBe(true)
    // the same window without its zone is not a day of UTC's: a parent refuses it
    expect(checkRollup({ ...day.rollup, window: { kind: '1d', start: day.start, end: day.end } }, [H, D])).toMatchObject({ ok: false, message: expect.stringMatching(/not the start of a 1d window in UTC/) })
    expect(researchPayload(day, { id: 'inst', pseudonymKey: 'k' }, 1).window).toEqual({ kind: '1d', start: '2026-02-28T16:00:00.000Z', end: '2026-03-01T16:00:00.000Z', timeZone: 'Asia/Shanghai' })
    // hours are UTC hours: the hour 15:00-16:00 UTC closed with two readings
    expect(n.sent.filter((w) => w.kind === '1h').map((w) => [new Date(w.start).toISOString(), w.timeZone, w.all[0]!.hr.n])).toEqual([['2026-03-01T15:00:00.000Z', 'Asia/Shanghai', 2]])
    expect(n.a.residentSummaries('r1', '1d', 0, Infinity).map((s) => [new Date(s.window.start).toISOString(), new Date(s.window.end).toISOString(), s.hr.count])).toEqual([
      ['2026-02-28T16:00:00.000Z', '2026-03-01T16:00:00.000Z', 2], ['2026-03-01T16:00:00.000Z', '2026-03-02T16:00:00.000Z', 2],
    ])
    n.a.stop(); n.spool.stopConsumers(); n.db.close()
  })

  it('Europe/Berlin across the fall-back change: one 25-hour day, not closed at start + 24 h; a crash in the middle of it loses and doubles nothing', async () => {
    const file = join(tempDir(), 'b.db')
    const clock = new ManualClock(at('2026-10-24T22:00:00Z'))
    const zones = { r1: 'Europe/Berlin' }
    const sent: ClosedWindow[] = []
    let n = node(file, clock, zones, sent)
    // a reading every 30 minutes of the local day 2026-10-25: 50 of them (25 hours)
    const ts = Array.from({ length: 50 }, (_, i) => at('2026-10-24T22:00:00Z') + i * 1800_000)
    await publish(n, 'r1', ts.slice(0, 20).map((t, i) => ({ seq: i + 1, ts: t, hr: 60 + i })))
    clock.set(at('2026-10-25T09:00:00Z'))
    n.a.checkpoint() // the first 20 are checkpointed with the cursor
    await publish(n, 'r1', ts.slice(20, 30).map((t, i) => ({ seq: i + 21, ts: t, hr: 80 + i })))
    // crash: no stop(), no checkpoint; the 10 readings since are only in the spool
    n.spool.stopConsumers(); n.db.close()
    n = node(file, clock, zones, sent)
    await publish(n, 'r1', ts.slice(30).map((t, i) => ({ seq: i + 31, ts: t, hr: 90 + i })))
    clock.set(at('2026-10-25T22:10:00Z')) // start + 24 h + lateness: a UTC-length day would close now
    n.a.tick()
    expect(days(sent)).toEqual([])
    clock.set(at('2026-10-25T23:10:00Z'))
    n.a.tick()
    expect(days(sent)).toEqual([['Europe/Berlin', '2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z', 50]])
    const day = sent.find((w) => w.kind === '1d')!
    expect(day.all[0]!.hr.min).toBe(60)
    expect(checkRollup(day.rollup, [H, D]).ok).toBe(true)
    // every hour of the 25 closed once, with its two readings
    const hours = sent.filter((w) => w.kind === '1h')
    expect(hours).toHaveLength(25)
    expect(new Set(hours.map((w) => w.start)).size).toBe(25)
    expect(hours.every((w) => w.all[0]!.hr.n === 2 && w.end - w.start === 3600_000)).toBe(true)
    n.a.stop(); n.spool.stopConsumers(); n.db.close()
  })

  it('America/New_York spring-forward: a 23-hour day beside a Shanghai resident of the same region, each in its own zone\'s day', async () => {
    const clock = new ManualClock(at('2026-03-08T05:00:00Z'))
    const n = node(join(tempDir(), 'c.db'), clock, { ny: 'America/New_York' })
    await publish(n, 'ny', [{ seq: 1, ts: at('2026-03-08T05:00:00Z'), hr: 70 }, { seq: 2, ts: at('2026-03-09T03:59:59Z'), hr: 71 }, { seq: 3, ts: at('2026-03-09T04:00:00Z'), hr: 72 }])
    await publish(n, 'sh', [{ seq: 1, ts: at('2026-03-08T05:00:00Z'), hr: 80 }])
    clock.set(at('2026-03-09T04:10:00Z'))
    n.a.checkpoint() // a window period is due once its state is written (tick writes it every few seconds)
    n.a.tick()
    expect(days(n.sent)).toEqual([
      ['Asia/Shanghai', '2026-03-07T16:00:00.000Z', '2026-03-08T16:00:00.000Z', 1],
      ['America/New_York', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z', 2],
    ])
    n.a.stop(); n.spool.stopConsumers(); n.db.close()
  })

  it('reads the window state of before local windows (no end, no zone) as the UTC windows they were', () => {
    const db = openDatabase(join(tempDir(), 'old.db'))
    migrate(db, 'forwarder', FORWARDER_MIGRATIONS.slice(0, 1))
    const start = at('2026-03-01T00:00:00Z')
    db.prepare('INSERT INTO summary_windows (kind, start, resident_id, state, dirty) VALUES (?, ?, ?, ?, 1)').run('1d', start, 'r1',
      JSON.stringify({ residentId: 'r1', kind: '1d', start, hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 70: 1 } }, sys: { n: 0, min: null, max: null, sum: 0, bins: {} }, dia: { n: 0, min: null, max: null, sum: 0, bins: {} }, cats: {}, bpIn: 0, hrIn: 1 }))
    db.prepare('INSERT INTO summary_groups (kind, start, dirty) VALUES (?, ?, 1)').run('1d', start)
    const clock = new ManualClock(at('2026-03-02T00:09:00Z'))
    const sent: ClosedWindow[] = []
    const a = new Aggregator({
      db, clock, logger: silentLogger(), windows: [D], latenessMs: 600_000, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
      resident: () => undefined, timeZone: () => 'Asia/Shanghai', alertsIn: () => 0, sinks: [{ name: 'test', emit: (w) => { sent.push(w) } }],
    })
    expect(a.tick()).toBe(0)
    clock.set(at('2026-03-02T00:10:00Z'))
    expect(a.tick()).toBe(1)
    expect(days(sent)).toEqual([['UTC', '2026-03-01T00:00:00.000Z', '2026-03-02T00:00:00.000Z', 1]])
    expect(sent[0]!.rollup.window).toEqual({ kind: '1d', start, end: start + D.ms })
    db.close()
  })
})
