import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { openDatabase, silentLogger, ManualClock, type DB } from '../../core/index.ts'
import { Spool } from '../../ingest/index.ts'
import { AlertBook, BUILTIN_RULE_SETS, RuleSetDocSchema } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'

const T0 = Date.UTC(2026, 10, 2, 8, 0)
const sets = BUILTIN_RULE_SETS.filter((d) => d.id === 'acc-aha-2017')

function book (db: DB, clock: ManualClock, checkpoint = { checkpointMs: 0, checkpointSlice: 10 }) {
  return new AlertBook({
    db, clock, logger: silentLogger(), activeRuleSets: () => sets,
    resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: 'en', hospitalId: null }), overrides: () => new Map(),
    hospitalEndpoint: () => undefined, enqueueWebhook: () => {},
    // a checkpoint writes 10 bytes of timelines per consumer transaction, i.e. one resident: most residents wait for a later slice
    options: { tickMs: 1000, escalateAfterS: 900, renotifyS: { critical: 0, warning: 0, info: 0 }, ...checkpoint },
  })
}

/**
 * Timelines are checkpointed a slice at a time (a checkpoint of every busy resident at once
 * stalled the event loop). After a crash in the middle of a checkpoint, every resident's
 * timeline holds each of its readings exactly once: those written by a slice after the
 * cursor are not placed again, the others are rebuilt from the spool.
 */
describe('timeline checkpoints in slices', () => {
  it('a crash between slices loses no reading and places none twice', async () => {
    const dir = tempDir()
    const db = openDatabase(join(dir, 'a.db'))
    const clock = new ManualClock(T0)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    const a = book(db, clock)
    a.attachTo(spool)
    let seq = 0
    for (let round = 0; round < 6; round++) {
      // the 8 residents in one commit, so one consumer transaction (one slice: one resident) has 8 to write
      await Promise.all(Array.from({ length: 8 }, async (_, r) => {
        const readings = Array.from({ length: 4 }, () => { const s = seq++; return { seq: s, ts: T0 + s * 1000, sys: 120 + (s % 9), dia: 78 } })
        await spool.appendAsync({ deviceKey: r + 1, deviceId: `d${r}`, residentId: `r${r}`, readings })
      }))
      await spool.consumersIdle()
      clock.advance(1000)
    }
    const seen = (b: AlertBook, id: string) => (b as unknown as { stateOf(id: string): { tl: { readings: { seq: number }[] } } }).stateOf(id).tl.readings.map((x) => x.seq)
    const before = Array.from({ length: 8 }, (_, r) => seen(a, `r${r}`))
    // some residents' timelines were written after the cursor, some not at all: the crash comes now (no stop)
    const saved = db.prepare<[], { resident_id: string, pos: number }>('SELECT resident_id, pos FROM alert_timelines').all()
    const cursor = spool.cursor('alerting-timeline')
    expect(saved.some((s) => s.pos > cursor)).toBe(true)
    expect(saved.length).toBeLessThan(8 + 1)
    spool.stopConsumers()
    // a new process on the same files
    const db2 = openDatabase(join(dir, 'a.db'))
    const spool2 = new Spool(db2, silentLogger(), { deadLetterMax: 10 })
    const b = book(db2, clock)
    b.attachTo(spool2)
    const after = Array.from({ length: 8 }, (_, r) => seen(b, `r${r}`))
    expect(after).toEqual(before)
    for (const t of after) expect(new Set(t).size).toBe(t.length)
    expect(after.flat().length).toBe(seq)
    spool2.stopConsumers()
  })

  it('under steady load a checkpoint ends: each resident is written once per checkpoint interval, not in every transaction', async () => {
    const db = openDatabase(join(tempDir(), 'a.db'))
    const clock = new ManualClock(T0)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    const a = book(db, clock, { checkpointMs: 5000, checkpointSlice: 10 })
    a.attachTo(spool)
    const writes = new Map<string, number>()
    const store = (a as unknown as { store: { saveTimeline(id: string, ...rest: unknown[]): number } }).store
    const save = store.saveTimeline.bind(store)
    store.saveTimeline = (id, ...rest) => { writes.set(id, (writes.get(id) ?? 0) + 1); return save(id, ...rest) }
    let seq = 0
    // every resident changes in every transaction, for 4 s and then past the next interval
    const round = async (): Promise<void> => {
      await Promise.all(Array.from({ length: 8 }, async (_, r) => {
        const readings = Array.from({ length: 4 }, () => { const s = seq++; return { seq: s, ts: T0 + s * 100, sys: 120 + (s % 9), dia: 78 } })
        await spool.appendAsync({ deviceKey: r + 1, deviceId: `d${r}`, residentId: `r${r}`, readings })
      }))
      await spool.consumersIdle()
      clock.advance(100)
    }
    for (let i = 0; i < 40; i++) await round()
    // one checkpoint began at the first transaction and wrote each resident once, in slices
    expect([...writes.values()].every((n) => n === 1)).toBe(true)
    expect(writes.size).toBe(8)
    for (let i = 0; i < 20; i++) await round() // past 5 s: the next checkpoint
    expect([...writes.values()].every((n) => n === 2)).toBe(true)
    expect(spool.cursor('alerting-timeline')).toBeGreaterThan(0)
    spool.stopConsumers()
  })
})

describe('a failure inside alerting', () => {
  it('loses no reading from the timelines: what was consumed since their checkpoint is placed again from the spool', async () => {
    const db = openDatabase(join(tempDir(), 'a.db'))
    const clock = new ManualClock(T0)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    // no checkpoint of the timelines during the test: everything consumed lives in memory and the spool
    const a = book(db, clock, { checkpointMs: 3_600_000, checkpointSlice: 1 << 20 })
    a.attachTo(spool)
    const seen = (id: string) => (a as unknown as { stateOf(id: string): { tl: { readings: { seq: number }[] } } }).stateOf(id).tl.readings.map((x) => x.seq)
    let seq = 0
    const send = async () => {
      const readings = Array.from({ length: 3 }, () => { const s = seq++; return { seq: s, ts: T0 + s * 1000, sys: 120 + (s % 9), dia: 78 } })
      await spool.appendAsync({ deviceKey: 1, deviceId: 'd0', residentId: 'r0', readings })
      await spool.consumersIdle()
    }
    for (let i = 0; i < 3; i++) await send()
    expect(seen('r0')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    // a bug in alerting: the next transaction throws after its readings were placed
    const consume = a.consume.bind(a)
    let bug = true
    a.consume = (rows) => { consume(rows); if (bug) { bug = false; throw new Error('bug in a rule') } }
    await send() // retried from alerting's cursor after its back-off, then it catches up
    expect(spool.consumerStatus().find((c) => c.name === 'alerting')).toMatchObject({ failures: 1, failing: null, lagRecords: 0 })
    expect(seen('r0')).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    await send()
    expect(seen('r0')).toEqual(Array.from({ length: 15 }, (_, i) => i))
    spool.stopConsumers()
  })
})

describe('when a resident was last seen', () => {
  it('survives a crash between timeline checkpoints: lost contact counts from the last reading, not from the last checkpoint', async () => {
    const dir = tempDir()
    const silent = RuleSetDocSchema.parse({ id: 'rs', version: '1.0.0', publisher: 'p', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules: [{ id: 'silent', title: 'No data', kind: 'noData', severity: 'warning', forS: 3600 }] })
    const start = (db: DB, clock: ManualClock, sent: string[]) => {
      const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
      const b = new AlertBook({
        db, clock, logger: silentLogger(), activeRuleSets: () => [silent],
        resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: 'en', hospitalId: null }), overrides: () => new Map(),
        hospitalEndpoint: () => undefined, enqueueWebhook: () => {},
        // the first transaction checkpoints the timelines, the next ones do not (an hour between checkpoints)
        options: { tickMs: 1000, escalateAfterS: 900, renotifyS: { critical: 0, warning: 0, info: 0 }, checkpointMs: 3_600_000 },
      })
      b.setNotifier({ alert: (a, delivered) => { sent.push(`${a.ruleKey} ${a.state}`); delivered() }, status: () => {} })
      b.attachTo(spool)
      return { spool, b }
    }
    const clock = new ManualClock(T0)
    const sent: string[] = []
    const one = start(openDatabase(join(dir, 'a.db')), clock, sent)
    const at = (minute: number) => T0 + minute * 60_000
    await one.spool.appendAsync({ deviceKey: 1, deviceId: 'd0', residentId: 'r0', readings: [{ seq: 1, ts: at(0), hr: 70 }] })
    await one.spool.consumersIdle()
    clock.set(at(30))
    await one.spool.appendAsync({ deviceKey: 1, deviceId: 'd0', residentId: 'r0', readings: [{ seq: 2, ts: at(30), hr: 71 }] })
    await one.spool.consumersIdle()
    one.spool.stopConsumers() // the process dies here: no stop, no checkpoint after minute 0
    const two = start(openDatabase(join(dir, 'a.db')), clock, sent)
    clock.set(at(61))
    two.b.tick()
    two.b.flushDelivered()
    expect(sent).toEqual([]) // 31 minutes since the reading at minute 30
    clock.set(at(91))
    two.b.tick()
    two.b.flushDelivered()
    expect(sent).toEqual(['rs/silent open'])
    two.spool.stopConsumers()
  })
})
