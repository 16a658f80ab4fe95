import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { openDatabase, silentLogger, ManualClock, type DB } from '../../core/index.ts'
import { Spool } from '../../ingest/index.ts'
import { AlertBook, BUILTIN_RULE_SETS } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'

const T0 = Date.UTC(2026, 10, 2, 8, 0)
const sets = BUILTIN_RULE_SETS.filter((d) => d.id === 'acc-aha-2017')

function book (db: DB, clock: ManualClock) {
  return new AlertBook({
    db, clock, logger: silentLogger(), activeRuleSets: () => sets,
    resident: (id) => ({ id, birthYear: 1960, conditions: [], region: 'c1', language: 'en', hospitalId: null }), overrides: () => new Map(),
    hospitalEndpoint: () => undefined, enqueueWebhook: () => {},
    // a checkpoint writes 10 readings' worth of timelines per consumer transaction: most residents wait for a later slice
    options: { tickMs: 1000, escalateAfterS: 900, renotifyS: { critical: 0, warning: 0, info: 0 }, checkpointMs: 0, checkpointSlice: 10 },
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
      for (let r = 0; r < 8; r++) {
        const readings = Array.from({ length: 4 }, () => { const s = seq++; return { seq: s, ts: T0 + s * 1000, sys: 120 + (s % 9), dia: 78 } })
        await spool.appendAsync({ deviceKey: r + 1, deviceId: `d${r}`, residentId: `r${r}`, readings })
      }
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
})
