import { migrate, openDatabase, type DB, type Migration } from '../core/index.ts'

/**
 * Where a partition consumer's state is committed together with the partition's position
 * (the stream sequence of the last entry it consumed), so that whichever node owns the
 * partition next resumes exactly there: nothing consumed twice, nothing skipped.
 *
 * Every commit carries the epoch of the lease under which it was made (cluster/partitions.ts:
 * the KV revision that won the lease, which only grows). `open` raises the partition's epoch,
 * and a commit under a lower one is refused: a node that lost its lease while it was paused
 * (GC, a stalled disk, a partition from the NATS cluster) cannot overwrite what the new owner
 * committed, however late it wakes up. Leases decide who should work; the epoch decides whose
 * work counts.
 *
 * Cluster mode keeps this in PostgreSQL (cluster/pg-checkpoints.ts), not in SQLite (one node's disk, which the next
 * owner cannot read) nor in JetStream's key-value store: an effect a consumer keeps in
 * PostgreSQL commits in the checkpoint's transaction, fenced by the epoch in that same
 * transaction (`commit(cp, effects)`), and what must be there before a position passes the
 * readings behind it (the alerts they raised, cluster/alert-mirror.ts) is written before the
 * commit, in the same database the next owner reads. The KV store has no transaction across
 * keys and limits a value's size, which rule timelines and windows outgrow. Those timelines and
 * windows are derived from readings, so they are each node's cache, rebuilt from the log by
 * the node that takes a partition over (README, "Where the processing state lives").
 * The SQLite store here serves one machine: the tests' processes, and the embedded mode if it
 * ever runs partitions.
 */
export interface CheckpointStore<S = unknown> {
  /**
   * Claims the partition's checkpoint for `epoch` and returns it (undefined: never committed).
   * Throws StaleEpochError when a higher epoch has claimed it already.
   */
  open(consumer: string, partition: number, epoch: number): Promise<{ seq: number, state: S } | undefined>
  /** Commits state and position; throws StaleEpochError when the partition was claimed by a higher epoch since `open`. */
  commit(cp: Checkpoint<S>): Promise<void>
}

export interface Checkpoint<S = unknown> {
  consumer: string
  partition: number
  /** the stream sequence of the last entry the state includes */
  seq: number
  state: S
  epoch: number
}

export class StaleEpochError extends Error {
  constructor (consumer: string, partition: number, epoch: number, current: number) {
    super(`partition ${partition} of ${consumer} belongs to epoch ${current}, not ${epoch}: another node owns it now`)
    this.name = 'StaleEpochError'
  }
}

function checkForward (cp: Checkpoint, seq: number): void {
  // a position that goes back would mean the runner consumed something twice
  if (cp.seq < seq) throw new Error(`checkpoint of ${cp.consumer}/${cp.partition} would move back from ${seq} to ${cp.seq}`)
}

/** In memory, for unit tests; states are copied through JSON as a database would store them. */
export class MemoryCheckpointStore<S = unknown> implements CheckpointStore<S> {
  private readonly rows = new Map<string, { epoch: number, seq: number, state: string | null }>()

  async open (consumer: string, partition: number, epoch: number): Promise<{ seq: number, state: S } | undefined> {
    const k = `${consumer}\u0000${partition}`
    const row = this.rows.get(k)
    if (row && row.epoch > epoch) throw new StaleEpochError(consumer, partition, epoch, row.epoch)
    this.rows.set(k, { epoch, seq: row?.seq ?? 0, state: row?.state ?? null })
    return row?.state == null ? undefined : { seq: row.seq, state: JSON.parse(row.state) as S }
  }

  async commit (cp: Checkpoint<S>): Promise<void> {
    const row = this.rows.get(`${cp.consumer}\u0000${cp.partition}`)
    if (!row || row.epoch !== cp.epoch) throw new StaleEpochError(cp.consumer, cp.partition, cp.epoch, row?.epoch ?? 0)
    checkForward(cp, row.seq)
    row.seq = cp.seq
    row.state = JSON.stringify(cp.state)
  }
}

export const CHECKPOINT_MIGRATIONS: Migration[] = [{
  version: 1,
  why: 'partition checkpoints: a consumer\'s state and position in a partition of the reading log, fenced by the lease epoch',
  up: `CREATE TABLE IF NOT EXISTS partition_checkpoints (
    consumer TEXT NOT NULL, partition INTEGER NOT NULL,
    epoch INTEGER NOT NULL, seq INTEGER NOT NULL, state TEXT,
    PRIMARY KEY (consumer, partition))`,
}]

/**
 * In a SQLite file: several processes of one machine may share it (WAL, busy timeout), which
 * is what the failover tests do. Each call is one short transaction.
 */
export class SqliteCheckpointStore<S = unknown> implements CheckpointStore<S> {
  readonly db: DB
  private readonly s

  constructor (file: string) {
    this.db = openDatabase(file)
    migrate(this.db, 'cluster-checkpoints', CHECKPOINT_MIGRATIONS)
    const get = this.db.prepare<[string, number], { epoch: number, seq: number, state: string | null }>('SELECT epoch, seq, state FROM partition_checkpoints WHERE consumer = ? AND partition = ?')
    const claim = this.db.prepare('INSERT INTO partition_checkpoints (consumer, partition, epoch, seq, state) VALUES (?, ?, ?, 0, NULL) ON CONFLICT (consumer, partition) DO UPDATE SET epoch = excluded.epoch')
    const save = this.db.prepare('UPDATE partition_checkpoints SET seq = ?, state = ? WHERE consumer = ? AND partition = ? AND epoch = ?')
    this.s = {
      // IMMEDIATE: the read and the write hold the write lock together, so two processes cannot both see a lower epoch
      open: this.db.transaction((consumer: string, partition: number, epoch: number) => {
        const row = get.get(consumer, partition)
        if (row && row.epoch > epoch) throw new StaleEpochError(consumer, partition, epoch, row.epoch)
        claim.run(consumer, partition, epoch)
        return row
      }).immediate,
      commit: this.db.transaction((cp: Checkpoint<S>) => {
        const row = get.get(cp.consumer, cp.partition)
        if (!row || row.epoch !== cp.epoch) throw new StaleEpochError(cp.consumer, cp.partition, cp.epoch, row?.epoch ?? 0)
        checkForward(cp, row.seq)
        save.run(cp.seq, JSON.stringify(cp.state), cp.consumer, cp.partition, cp.epoch)
      }).immediate,
    }
  }

  async open (consumer: string, partition: number, epoch: number): Promise<{ seq: number, state: S } | undefined> {
    const row = this.s.open(consumer, partition, epoch)
    return row?.state == null ? undefined : { seq: row.seq, state: JSON.parse(row.state) as S }
  }

  async commit (cp: Checkpoint<S>): Promise<void> {
    this.s.commit(cp)
  }

  /** Every checkpoint of a consumer (tests, tools). */
  all (consumer: string): Checkpoint<S>[] {
    return this.db.prepare<[string], { partition: number, epoch: number, seq: number, state: string | null }>('SELECT partition, epoch, seq, state FROM partition_checkpoints WHERE consumer = ? ORDER BY partition').all(consumer)
      .map((r) => ({ consumer, partition: r.partition, epoch: r.epoch, seq: r.seq, state: (r.state == null ? null : JSON.parse(r.state)) as S }))
  }

  close (): void { this.db.close() }
}
