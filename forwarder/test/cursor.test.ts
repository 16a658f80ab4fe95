import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ManualClock, openDatabase, silentLogger, type DB } from '../../core/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { Spool } from '../../ingest/index.ts'
import { Aggregator, parseWindow } from '../index.ts'

const H = parseWindow('1h')
const T0 = Date.UTC(2026, 0, 1)

function aggregator (db: DB, spool: Spool | undefined, clock: ManualClock, checkpoint: { checkpointMs?: number, checkpointSlice?: number } = {}): Aggregator {
  return new Aggregator({
    ...checkpoint,
    db, clock, logger: silentLogger(), windows: [H], latenessMs: 0, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
    ...(spool ? { spool } : {}),
    resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: null, researchConsent: false }), alertsIn: () => 0, sinks: [],
  })
}

function tables (db: DB): string[] {
  return db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all().map((r) => r.name)
}

describe('the forwarder\'s spool cursor', () => {
  it('moves only through the spool, in the transaction of the window state; a crash in between loses both', async () => {
    const file = join(tempDir(), 'a.db')
    const db = openDatabase(file)
    const clock = new ManualClock(T0 + 60_000)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    const a = aggregator(db, spool, clock)
    spool.attach({ name: 'forwarder', checkpointsItself: true, consume: (rows) => a.prepare(rows) })
    await spool.appendAsync({ deviceKey: 1, deviceId: 'd1', residentId: 'r1', readings: [{ seq: 1, ts: T0, hr: 70 }] })
    await spool.consumersIdle()
    const first = spool.read(0, 10).at(-1)!.id

    // the cursor write fails: the window state of the same checkpoint is rolled back with it
    const commitCursor = spool.commitCursor.bind(spool)
    spool.commitCursor = () => { throw new Error('disk gone') }
    expect(() => a.checkpoint()).toThrow('disk gone')
    expect(db.prepare('SELECT count(*) AS n FROM summary_windows').get()).toEqual({ n: 0 })
    expect(spool.cursor('forwarder')).toBe(0)

    spool.commitCursor = commitCursor
    a.stop()
    // after the "crash", the reading is replayed from the spool and checkpointed with the cursor
    const b = aggregator(db, spool, clock)
    b.checkpoint()
    expect(spool.cursor('forwarder')).toBe(first)
    expect(db.prepare<[], { resident_id: string, state: string }>('SELECT resident_id, state FROM summary_windows').all().map((r) => [r.resident_id, JSON.parse(r.state).hr.n])).toEqual([['r1', 1]])
    spool.stopConsumers()
    db.close()
  })

  it('is refused outside a transaction: it commits with the consumer\'s state or not at all', () => {
    const db = openDatabase(':memory:')
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    expect(() => spool.commitCursor('forwarder', 1)).toThrow(/inside the transaction/)
    db.transaction(() => { spool.commitCursor('forwarder', 1) })()
    expect(spool.cursor('forwarder')).toBe(1)
  })

  it('is not kept without a spool: the aggregator creates no cursor table', () => {
    const db = openDatabase(':memory:')
    const a = aggregator(db, undefined, new ManualClock(T0 + 60_000))
    a.prepare([{ residentId: 'r1', seq: 1, ts: T0, hr: 70 }])
    a.checkpoint()
    expect(tables(db)).not.toContain('cursors')
    expect(tables(db)).toContain('summary_windows')
  })

  it('checkpoints windows a slice at a time; a crash between slices loses no reading and counts none twice', async () => {
    const file = join(tempDir(), 'a.db')
    const db = openDatabase(file)
    const clock = new ManualClock(T0 + 60_000)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    // two windows per consumer transaction, a checkpoint always due: most windows wait for later slices
    const a = aggregator(db, spool, clock, { checkpointMs: 0, checkpointSlice: 2 })
    spool.attach({ name: 'forwarder', checkpointsItself: true, consume: (rows) => a.prepare(rows) })
    let seq = 0
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 8 }, async (_, r) => {
        await spool.appendAsync({ deviceKey: r + 1, deviceId: `d${r}`, residentId: `r${r}`, readings: [{ seq: seq++, ts: T0 + round * 1000, hr: 70 }] })
      }))
      await spool.consumersIdle()
    }
    // some windows were written after the cursor (their position is past it), others not yet
    const saved = db.prepare<[], { state: string }>('SELECT state FROM summary_windows').all().map((r) => JSON.parse(r.state) as { pos: number, hr: { n: number } })
    const cursor = spool.cursor('forwarder')
    expect(saved.some((w) => w.pos > cursor)).toBe(true)
    expect(saved.some((w) => w.hr.n < 5)).toBe(true)
    // crash: no stop(), no full checkpoint
    spool.stopConsumers()
    const db2 = openDatabase(file)
    const spool2 = new Spool(db2, silentLogger(), { deadLetterMax: 10 })
    const b = aggregator(db2, spool2, clock)
    b.checkpoint()
    const counts = db2.prepare<[], { resident_id: string, state: string }>('SELECT resident_id, state FROM summary_windows ORDER BY resident_id').all().map((r) => [r.resident_id, (JSON.parse(r.state) as { hr: { n: number } }).hr.n])
    expect(counts).toEqual(Array.from({ length: 8 }, (_, r) => [`r${r}`, 5]))
    spool2.stopConsumers()
    db.close(); db2.close()
  })
})

describe('a failure inside the forwarder\'s windows', () => {
  it('counts no reading twice: the windows go back to their checkpoint and are fed again from their cursor', async () => {
    const db = openDatabase(join(tempDir(), 'a.db'))
    const clock = new ManualClock(T0 + 60_000)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    let bug = false
    const a = new Aggregator({
      db, clock, logger: silentLogger(), windows: [H], latenessMs: 0, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' }, spool,
      checkpointMs: 3_600_000, // no periodic checkpoint during the test: the folded readings live in memory
      resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: null, researchConsent: false }), alertsIn: () => 0, sinks: [],
      // looked up for a resident's first reading in a window: the registry fails once, for r2
      timeZone: (id) => { if (bug && id === 'r2') { bug = false; throw new Error('registry unavailable') } return 'UTC' },
    })
    spool.attach({ name: 'forwarder', checkpointsItself: true, consume: (rows) => a.prepare(rows), failed: () => a.failed() })
    const append = (deviceKey: number, residentId: string, seq: number) =>
      spool.appendAsync({ deviceKey, deviceId: `d-${residentId}`, residentId, readings: [{ seq, ts: T0 + seq * 1000, hr: 70 + seq }] })
    await append(1, 'r1', 1)
    await spool.consumersIdle()
    bug = true
    // one commit: r1's reading is folded, then r2's lookup throws in the same batch
    await Promise.all([append(1, 'r1', 2), append(2, 'r2', 3)])
    await spool.consumersIdle()
    expect(spool.consumerStatus().find((c) => c.name === 'forwarder')).toMatchObject({ failures: 1, failing: null, lagRecords: 0 })
    a.checkpoint()
    const counts = db.prepare<[], { resident_id: string, state: string }>('SELECT resident_id, state FROM summary_windows ORDER BY resident_id').all()
      .map((r) => [r.resident_id, JSON.parse(r.state).hr.n])
    expect(counts).toEqual([['r1', 2], ['r2', 1]])
    spool.stopConsumers()
    db.close()
  })
})
