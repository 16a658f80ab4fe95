import type { Logger, StoredReading } from '../core/index.ts'
import { SeqSet } from '../ingest/seqset.ts'
import type { JetStreamLog, LogEntry } from './log.ts'

/**
 * The first copy of each reading (device and seq) among `readings`, noting them in `seen`. The log
 * holds a reading twice when its device sent it again after JetStream's duplicate window (2 min:
 * its PUBACK was lost, and it reached another node later): a node's feed drops the second copy by
 * seq, and what is read back from the log at a takeover must drop it too, or the windows and
 * the rules' timelines count it twice.
 */
export function firstCopies (seen: Map<string, SeqSet>, readings: readonly StoredReading[]): StoredReading[] {
  const out: StoredReading[] = []
  for (const r of readings) {
    let set = seen.get(r.deviceId)
    // no bound that matters: what is read back is a day of a partition at most, its gaps few
    if (!set) seen.set(r.deviceId, set = new SeqSet([], 1_000_000))
    if (set.has(r.seq)) continue
    set.add(r.seq)
    out.push(r)
  }
  return out
}

/**
 * The summary windows a node rebuilds when it takes a partition over, read back from the
 * reading log while the partition goes on (cluster mode).
 *
 * A day's window reaches back to the resident's local midnight: for a busy partition that is
 * millions of readings, minutes of reading, and the partition's residents must not wait that
 * long for their alerts (the takeover reads only the rules' minutes of look-back before the
 * partition resumes). Windows are sums, extremes and counts, so the readings read back and the
 * ones the feed brings meanwhile may be folded in any order; until the rebuild is done no
 * window closes (Aggregator.beginTakeOver), so none is sent with part of its readings.
 *
 * A reading the log holds twice (`firstCopies`) is folded once.
 *
 * A failed read (NATS moved a leader, a timeout) goes on from the last entry folded, after a
 * back-off. A rebuild stops when the partition moves on: the windows it made are dropped again
 * (`drop`), so that this node's copy of them, shipped to PostgreSQL, cannot overwrite the new
 * owner's.
 */
export interface WindowRebuildDeps {
  log: Pick<JetStreamLog, 'scan'>
  /** Aggregator.beginTakeOver / foldPast / endTakeOver */
  windows: {
    beginTakeOver(theirs: (residentId: string) => boolean): void
    foldPast(past: readonly StoredReading[], closedSince: number): void
    endTakeOver(readings: number): void
    /** drops the open windows of `theirs` (a rebuild that stopped part-way) */
    drop(theirs: (residentId: string) => boolean): void
  }
  logger: Logger
  /** the back-off after a failed read, doubled up to 8× (default 500 ms) */
  retryMs?: number
}

class Stopped extends Error {}

interface Rebuild { stopped: boolean, wake: () => void, done: Promise<void> }

export class WindowRebuilds {
  private readonly running = new Map<number, Rebuild>()
  readonly stats = { started: 0, done: 0, stopped: 0, retries: 0, readings: 0 }

  constructor (private readonly d: WindowRebuildDeps) {}

  /** Partitions whose windows are being rebuilt now (/v1/stats). */
  partitions (): number[] { return [...this.running.keys()].sort((a, b) => a - b) }

  /**
   * Drops the open windows of the partition's residents (`theirs`) and rebuilds them from the
   * entries that reached the log since `sinceMs`, up to `upToSeq` (where the partition resumes).
   * Windows that closed before `closedSince` are left as they were (Aggregator.takeOver).
   */
  start (partition: number, theirs: (residentId: string) => boolean, upToSeq: number, sinceMs: number, closedSince: number): void {
    if (this.running.has(partition)) throw new Error(`the windows of partition ${partition} are being rebuilt already`)
    this.d.windows.beginTakeOver(theirs)
    this.stats.started++
    const r: Rebuild = { stopped: false, wake: () => {}, done: Promise.resolve() }
    this.running.set(partition, r)
    r.done = this.run(r, partition, theirs, upToSeq, sinceMs, closedSince).finally(() => { if (this.running.get(partition) === r) this.running.delete(partition) })
  }

  /** Stops the partition's rebuild, if one is under way, and resolves once it stopped. */
  async stop (partition: number): Promise<void> {
    const r = this.running.get(partition)
    if (!r) return
    r.stopped = true
    r.wake()
    await r.done
  }

  /** Resolves once no rebuild is under way (tests). */
  async idle (): Promise<void> {
    await Promise.all([...this.running.values()].map(async (r) => await r.done))
  }

  private async run (r: Rebuild, partition: number, theirs: (residentId: string) => boolean, upToSeq: number, sinceMs: number, closedSince: number): Promise<void> {
    const t0 = Date.now()
    let from: { sinceMs: number } | { afterSeq: number } = { sinceMs }
    let readings = 0
    const seen = new Map<string, SeqSet>()
    try {
      for (let failures = 0; ; failures++) {
        try {
          await this.d.log.scan(partition, from, upToSeq, (entries: LogEntry[]) => {
            if (r.stopped) throw new Stopped()
            this.d.windows.foldPast(firstCopies(seen, entries.map((e) => e.reading)), closedSince)
            readings += entries.length
            from = { afterSeq: entries[entries.length - 1]!.streamSeq }
          })
          break
        } catch (err) {
          if (r.stopped) break
          this.stats.retries++
          const waitMs = (this.d.retryMs ?? 500) * 2 ** Math.min(3, failures)
          this.d.logger.warn({ err, code: 'VM_STORE_UNAVAILABLE', partition, readings, retryInMs: waitMs }, `reading partition ${partition} back from the log for its summary windows failed; it goes on from where it stopped`)
          await new Promise<void>((resolve) => { const t = setTimeout(resolve, waitMs); r.wake = () => { clearTimeout(t); resolve() } })
          if (r.stopped) break
        }
      }
    } finally {
      if (r.stopped) {
        // part of the windows: the partition's next owner rebuilds them whole
        this.d.windows.drop(theirs)
        this.stats.stopped++
        this.d.logger.info({ partition, readings }, 'rebuild of the summary windows stopped: the partition moved on')
      } else {
        this.stats.done++
        this.d.logger.info({ partition, readings, ms: Date.now() - t0 }, 'summary windows of the partition\'s residents rebuilt from the reading log')
      }
      this.stats.readings += readings
      this.d.windows.endTakeOver(readings)
    }
  }
}
