import { describe, expect, it } from 'vitest'
import { ManualClock, openDatabase, silentLogger } from '../../core/index.ts'
import { Aggregator, parseWindow, type ClosedWindow } from '../index.ts'

/**
 * Cluster mode moves a resident between nodes when its partition moves (a node died, or the
 * partitions were rebalanced). Only the node that judges the resident now sends its windows,
 * and that node rebuilds the open ones from the reading log: the hospital gets one summary per
 * window, over every reading of it, not two partial ones.
 */
const H = parseWindow('1h')
const T0 = Date.UTC(2026, 0, 1, 8)
const R = 'resident-moved'

function node (clock: ManualClock, owns: Set<string>): { a: Aggregator, sent: ClosedWindow[] } {
  const sent: ClosedWindow[] = []
  const a = new Aggregator({
    db: openDatabase(':memory:'), clock, logger: silentLogger(), windows: [H], latenessMs: 60_000, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
    resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: 'h1', researchConsent: false }), alertsIn: () => 0,
    sinks: [{ name: 'hospital', emit: (w) => { sent.push(w) } }],
    owns: (id) => owns.has(id),
  })
  return { a, sent }
}

const hr = (seq: number, minute: number, value: number, residentId = R): { seq: number, ts: number, hr: number, residentId: string } => ({ seq, ts: T0 + minute * 60_000, hr: value, residentId })

describe('a resident whose partition moves to another node', () => {
  it('gets one summary per window, over every reading, sent by the node that judges it when the window closes', () => {
    const clock = new ManualClock(T0 + 20 * 60_000)
    const onX = new Set([R, 'stays-on-x'])
    const x = node(clock, onX)
    const y = node(clock, new Set([R]))
    // node y judged the resident once before, and kept a window of it that is stale by now
    y.a.prepare([hr(1, 1, 200)])
    // node x judges it now: two readings of the 08:00 window
    x.a.prepare([hr(2, 5, 60), hr(3, 10, 70), hr(1, 10, 99, 'stays-on-x')])
    // x loses the partition (or dies and comes back); y takes it over: the log's readings up to where the partition resumes, then the feed
    onX.delete(R)
    y.a.takeOver((id) => id === R, [hr(2, 5, 60), hr(3, 10, 70)])
    y.a.prepare([hr(4, 30, 80)])
    // x still holds its window of the resident; the window closes on both nodes
    clock.set(T0 + H.ms + 60_000 + 1)
    x.a.tick()
    y.a.tick()
    const mine = (sent: ClosedWindow[]): { residentId: string, count: number, mean: number | null }[] =>
      sent.flatMap((w) => w.changed).map((c) => ({ residentId: c.residentId, count: c.hr.count, mean: c.hr.mean }))
    // y: the three readings of the window (the stale 200 dropped); x: only the resident it still judges
    expect(mine(y.sent)).toEqual([{ residentId: R, count: 3, mean: 70 }])
    expect(mine(x.sent)).toEqual([{ residentId: 'stays-on-x', count: 1, mean: 99 }])
  })

  it('a window that closed while the partition had no owner is sent by the node that took it over; one that closed before is not sent again', () => {
    // the 08:00 window closed (end + lateness) 3 s ago: after the node judging the resident died, before the takeover
    const clock = new ManualClock(T0 + H.ms + 60_000 + 3_000)
    const y = node(clock, new Set([R]))
    y.a.takeOver((id) => id === R, [hr(1, 50, 90), hr(2, 65, 100)], clock.now() - 15_000)
    y.a.tick()
    const windows = y.sent.map((w) => ({ start: w.start, readings: w.changed.map((c) => c.hr.count) }))
    expect(windows).toEqual([{ start: T0, readings: [1] }])
    // an older window (07:00, closed long before) is left to the node that sent it then
    const z = node(clock, new Set([R]))
    z.a.takeOver((id) => id === R, [hr(3, -30, 80)], clock.now() - 15_000)
    z.a.tick()
    expect(z.sent).toEqual([])
  })
})
