import { describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { ManualClock, openDatabase, silentLogger, type Logger } from '../../core/index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { Aggregator, checkRollup, parseWindow, type RegionRollup } from '../index.ts'

const H = parseWindow('1h')
const T0 = Date.UTC(2026, 0, 1)

function valid (over: Partial<RegionRollup> = {}): RegionRollup {
  return {
    schema: 'vitalmesh.region-rollup/1', region: 'county-a', level: 'county', window: { kind: '1h', start: T0, end: T0 + H.ms }, version: 1, residents: 2,
    hr: { n: 2, min: 70, max: 80, sum: 150, bins: { 70: 1, 80: 1 } }, sys: { n: 1, min: 120, max: 120, sum: 120, bins: { 120: 1 } }, dia: { n: 1, min: 80, max: 80, sum: 80, bins: { 80: 1 } },
    bpCategories: { elevated: 1 }, children: [], ...over,
  }
}

function aggregator (opts: { rollupK?: number, logger?: Logger } = {}) {
  const db = openDatabase(join(tempDir(), 'a.db'))
  const clock = new ManualClock(T0)
  const sent: RegionRollup[] = []
  const a = new Aggregator({
    db, clock, logger: opts.logger ?? silentLogger(), windows: [H], latenessMs: 0, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
    ...(opts.rollupK !== undefined ? { rollupK: opts.rollupK } : {}),
    resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: null, researchConsent: false }), alertsIn: () => 0,
    sinks: [{ name: 'parent', emit: (w) => { sent.push(w.rollup) } }],
  })
  return { a, db, clock, sent }
}

describe('roll-up check', () => {
  it('accepts what the aggregator sends', () => {
    expect(checkRollup(valid(), [H]).ok).toBe(true)
  })

  it('refuses histogram keys that are not whole values within the metric\'s plausibility bounds, bad counts and misaligned windows', () => {
    const bad: [string, RegionRollup][] = [
      ['key abc', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { abc: 1 } } })],
      ['key 2e9', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 2000000000: 1 } } })],
      ['key out of bounds', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 301: 1 } } })],
      ['key 70.5', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { '70.5': 1 } } })],
      ['key 070', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { '070': 1 } } })],
      ['negative count', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 70: -1 } } })],
      ['fractional count', valid({ hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 70: 0.5 } } })],
      ['huge count', valid({ hr: { n: 1e20, min: 70, max: 70, sum: 70e20, bins: { 70: 1e20 } } })],
      ['n not the histogram', valid({ hr: { n: 3, min: 70, max: 80, sum: 150, bins: { 70: 1, 80: 1 } } })],
      ['misaligned start', valid({ window: { kind: '1h', start: T0 + 1, end: T0 + 1 + H.ms } })],
      ['wrong end', valid({ window: { kind: '1h', start: T0, end: T0 + 1 } })],
      ['unknown window', valid({ window: { kind: '7m', start: 0, end: 420_000 } })],
      ['categories not sys.n', valid({ bpCategories: { elevated: 5 } })],
      ['negative residents', valid({ residents: -1 })],
    ]
    for (const [what, body] of bad) expect([what, checkRollup(body, [H]).ok]).toEqual([what, false])
  })
})

describe('aggregator and stored roll-ups', () => {
  it('skips (and logs) a stored child roll-up that does not pass the check, instead of failing the window', () => {
    const warnings: unknown[] = []
    const logger = { ...silentLogger(), warn: (o: unknown) => { warnings.push(o) } } as unknown as Logger
    const { a, db, clock, sent } = aggregator({ logger })
    const good = valid({ region: 'county-b' })
    expect(a.receiveRollup(good)).toBe(true)
    expect(a.receiveRollup(valid({ region: 'county-x', hr: { n: 1, min: 70, max: 70, sum: 70, bins: { abc: 1 } } }))).toBe(false)
    // stored before the check existed: as a parent may still hold
    const bad = valid({ region: 'county-c', hr: { n: 1, min: 70, max: 70, sum: 70, bins: { 2000000000: 1 } } })
    db.prepare('INSERT INTO child_rollups (child, kind, start, version, body, received_at) VALUES (?, ?, ?, ?, ?, ?)').run('county-c', '1h', T0, 1, JSON.stringify(bad), T0)
    db.prepare('INSERT INTO child_rollups (child, kind, start, version, body, received_at) VALUES (?, ?, ?, ?, ?, ?)').run('county-d', '1h', T0, 1, '{not json', T0)
    const agg = a.regionAggregates('1h', T0, T0 + H.ms)
    expect(agg).toHaveLength(1)
    expect(agg[0]!.children.map((c) => c.region)).toEqual(['county-b'])
    clock.advance(2 * H.ms)
    expect(a.tick()).toBe(1)
    expect(sent[0]!.children).toEqual(['county-b'])
    expect(sent[0]!.hr.n).toBe(2)
    expect(warnings.length).toBeGreaterThanOrEqual(2)
  })

  const reading = (residentId: string, seq: number) => ({ residentId, seq, ts: T0 + seq * 1000, hr: 70 + seq, sys: 120, dia: 80 })

  it('leaves its own residents out of a roll-up when they are fewer than rollupK in the window', () => {
    const few = aggregator({ rollupK: 3 })
    few.a.prepare([reading('r1', 1), reading('r2', 2)])
    few.a.receiveRollup(valid({ region: 'county-b' }))
    few.clock.advance(2 * H.ms)
    few.a.tick()
    expect(few.sent[0]).toMatchObject({ residents: 2, suppressed: true, children: ['county-b'] })
    expect(few.sent[0]!.hr.n).toBe(2) // the child's readings only
    // the node keeps its own detail
    expect(few.a.regionAggregates('1h', T0, T0 + H.ms)[0]!.residents).toBe(4)
    expect(few.a.regionAggregates('1h', T0, T0 + H.ms, 3)[0]!.residents).toBe(2)

    const enough = aggregator({ rollupK: 3 })
    enough.a.prepare([reading('r1', 1), reading('r2', 2), reading('r3', 3)])
    enough.clock.advance(2 * H.ms)
    enough.a.tick()
    expect(enough.sent[0]).toMatchObject({ residents: 3 })
    expect(enough.sent[0]!.suppressed).toBeUndefined()
    expect(checkRollup(enough.sent[0], [H]).ok).toBe(true)
  })
})
