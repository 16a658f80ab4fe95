import { describe, expect, it } from 'vitest'
import { ManualClock, openDatabase, silentLogger, type StoredReading } from '../../core/index.ts'
import { Aggregator, parseWindow, type ClosedWindow } from '../../forwarder/index.ts'
import { WindowRebuilds } from '../window-rebuild.ts'
import type { LogEntry } from '../log.ts'

/**
 * A node that takes a partition over rebuilds its residents' open summary windows from the
 * reading log while the partition goes on (cluster/window-rebuild.ts): a day of a busy
 * partition is minutes of reading, and the residents' alerts must not wait for it. The log here
 * is the partition's entries in an array, handed over a batch at a time as JetStreamLog.scan
 * does; the windows are the real Aggregator's.
 */
const H = parseWindow('1h')
const T0 = Date.UTC(2026, 0, 1, 8)
const R = 'resident-moved'

const reading = (seq: number, minute: number, hr: number): StoredReading => ({ deviceId: 'watch-1', residentId: R, seq, ts: T0 + minute * 60_000, hr })

function setup (entries: LogEntry[], opts: { failAfter?: number } = {}) {
  const clock = new ManualClock(T0 + 40 * 60_000)
  const sent: ClosedWindow[] = []
  const aggregator = new Aggregator({
    db: openDatabase(':memory:'), clock, logger: silentLogger(), windows: [H], latenessMs: 60_000, retainMs: 7 * 86400_000, region: { id: 'county-a', level: 'county' },
    resident: () => ({ region: 'county-a', birthYear: 1960, hospitalId: 'h1', researchConsent: false }), alertsIn: () => 0,
    sinks: [{ name: 'hospital', emit: (w) => { sent.push(w) } }],
  })
  // each batch waits for `next()`: the test decides when the log answers
  const gates: (() => void)[] = []
  // the test waiting for the scan to ask for its next batch
  let gateWaiting: (() => void) | undefined
  let served = 0
  let failed = false
  const scan = async (_p: number, from: { sinceMs: number } | { afterSeq: number }, upToSeq: number, each: (e: LogEntry[]) => void): Promise<number> => {
    let at = 'afterSeq' in from ? entries.findIndex((e) => e.streamSeq > from.afterSeq) : 0
    if (at < 0) at = entries.length
    for (; at < entries.length && entries[at]!.streamSeq <= upToSeq; at += 2) {
      await new Promise<void>((resolve) => { gates.push(resolve); gateWaiting?.() })
      if (opts.failAfter !== undefined && served === opts.failAfter && !failed) { failed = true; throw new Error('timeout') }
      each(entries.slice(at, Math.min(at + 2, entries.length)).filter((e) => e.streamSeq <= upToSeq))
      served++
    }
    return 0
  }
  const rebuilds = new WindowRebuilds({ log: { scan }, windows: aggregator, logger: silentLogger(), retryMs: 1 })
  // answers the scan's next request for a batch: once it asks, or not at all if the rebuild ended meanwhile
  const next = async (): Promise<void> => {
    if (gates.length === 0) await Promise.race([new Promise<void>((resolve) => { gateWaiting = resolve }), rebuilds.idle()])
    gateWaiting = undefined
    gates.shift()?.()
    await new Promise((r) => setImmediate(r))
  }
  return { clock, aggregator, sent, rebuilds, next }
}

const counts = (sent: ClosedWindow[]): number[] => sent.flatMap((w) => w.changed).map((c) => c.hr.count)
const mean = (sent: ClosedWindow[]): (number | null)[] => sent.flatMap((w) => w.changed).map((c) => c.hr.mean)

describe('rebuilding a taken-over partition\'s summary windows while it goes on', () => {
  const log: LogEntry[] = [1, 2, 3, 4, 5, 6].map((seq) => ({ partition: 3, streamSeq: 10 + seq, reading: reading(seq, seq * 5, 60 + seq * 10) }))

  it('folds the log\'s readings and the feed\'s in any order, and no window closes before the rebuild is done', async () => {
    const t = setup(log)
    t.rebuilds.start(3, (id) => id === R, 16, 0, t.clock.now())
    expect(t.rebuilds.partitions()).toEqual([3])
    // the partition goes on: a reading after the takeover point comes through the feed before the log's are read
    t.aggregator.prepare([reading(7, 38, 130)])
    await t.next()
    // the 08:00 window is due now, but part of its readings are still in the log: it waits
    t.clock.set(T0 + H.ms + 60_000 + 1)
    t.aggregator.tick()
    expect(t.sent).toEqual([])
    await t.next(); await t.next()
    await t.rebuilds.idle()
    expect(t.rebuilds.partitions()).toEqual([])
    t.aggregator.tick()
    // every reading once: six from the log, one from the feed
    expect(counts(t.sent)).toEqual([7])
    expect(mean(t.sent)).toEqual([(70 + 80 + 90 + 100 + 110 + 120 + 130) / 7])
    expect(t.rebuilds.stats).toMatchObject({ started: 1, done: 1, readings: 6 })
  })

  it('a reading the log holds twice (its device sent it again after the duplicate window) is folded once', async () => {
    const twice: LogEntry[] = [...log.slice(0, 3), { ...log[1]!, streamSeq: 14 }, ...log.slice(3).map((e) => ({ ...e, streamSeq: e.streamSeq + 1 }))]
    const t = setup(twice)
    t.rebuilds.start(3, (id) => id === R, 17, 0, t.clock.now())
    for (let i = 0; i < 20 && t.rebuilds.partitions().length > 0; i++) await t.next()
    t.clock.set(T0 + H.ms + 60_000 + 1)
    t.aggregator.tick()
    expect(counts(t.sent)).toEqual([6])
    expect(t.rebuilds.stats.readings).toBe(7) // entries read; readings folded: six
  })

  it('a failed read goes on after the last entry folded: nothing counted twice, nothing missed', async () => {
    const t = setup(log, { failAfter: 1 })
    t.rebuilds.start(3, (id) => id === R, 16, 0, t.clock.now())
    // the log answers until the rebuild is done (three batches, one of them twice)
    for (let i = 0; i < 20 && t.rebuilds.partitions().length > 0; i++) await t.next()
    expect(t.rebuilds.partitions()).toEqual([])
    t.clock.set(T0 + H.ms + 60_000 + 1)
    t.aggregator.tick()
    expect(counts(t.sent)).toEqual([6])
    expect(t.rebuilds.stats).toMatchObject({ done: 1, retries: 1, readings: 6 })
  })

  it('stops when the partition moves on, drops the part it rebuilt, and windows close again', async () => {
    const t = setup(log)
    t.rebuilds.start(3, (id) => id === R, 16, 0, t.clock.now())
    await t.next()
    const stopped = t.rebuilds.stop(3)
    await t.next()
    await stopped
    expect(t.rebuilds.stats).toMatchObject({ stopped: 1, done: 0 })
    t.clock.set(T0 + H.ms + 60_000 + 1)
    t.aggregator.tick()
    // the two readings folded before the stop are gone with the window: the partition's new owner sends it whole
    expect(counts(t.sent)).toEqual([])
    // and the windows of other residents close again
    t.aggregator.prepare([{ ...reading(1, 61, 70), residentId: 'another' }])
    t.clock.set(T0 + 2 * H.ms + 60_000 + 1)
    t.aggregator.tick()
    expect(counts(t.sent)).toEqual([1])
  })
})
