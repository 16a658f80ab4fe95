import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ManualClock, openDatabase, silentLogger, type DB } from '../../core/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { Spool } from '../../ingest/index.ts'
import { Aggregator, parseWindow } from '../index.ts'

const H = parseWindow('1h')
const T0 = Date.UTC(2026, 0, 1)

function aggregator (db: DB, spool: Spool | undefined, clock: ManualClock): Aggregator {
  return new Aggregator({
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
})
