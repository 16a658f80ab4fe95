import pg from 'pg'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'
import { StaleEpochError, type Checkpoint, type CheckpointStore } from './checkpoints.ts'

/**
 * The effects a consumer commits with its checkpoint, on the checkpoint's own transaction: alert
 * rows and their history, outbox rows for a hospital's summaries. They run after the epoch was
 * checked under a row lock, so a node that lost its lease can neither move the position nor
 * write an effect: both commit, or neither.
 */
export type Effects = (tx: pg.PoolClient) => Promise<void>

/** Versioned schema steps of this component (PostgreSQL); never edit a shipped step: add one. */
const STEPS: PgStep[] = [{
  version: 1,
  why: 'partition checkpoints: a consumer\'s state and position in a partition of the reading log, fenced by the lease epoch',
  sql: `CREATE TABLE IF NOT EXISTS partition_checkpoints (
    consumer TEXT NOT NULL, partition INTEGER NOT NULL,
    epoch BIGINT NOT NULL, seq BIGINT NOT NULL, state JSONB,
    PRIMARY KEY (consumer, partition))`,
}]

/**
 * Checkpoints in PostgreSQL, shared by every node of a cluster: the store cluster mode uses
 * (cluster/checkpoints.ts says why not SQLite nor JetStream's key-value store). The epoch check
 * is a `SELECT … FOR UPDATE` of the checkpoint's row in the committing transaction: two nodes
 * that both believe they own a partition serialise on that row, and the one with the lower
 * epoch finds the higher one and rolls back, effects included.
 */
export class PgCheckpointStore<S = unknown> implements CheckpointStore<S> {
  private constructor (readonly pool: pg.Pool) {}

  /** Connects and applies the schema steps not applied yet (one advisory lock: several nodes may start at once). */
  static async open<S = unknown> (connectionString: string, opts: { max?: number } = {}): Promise<PgCheckpointStore<S>> {
    return new PgCheckpointStore<S>(await pgOpen(connectionString, opts.max ?? 4, 'cluster-checkpoints', STEPS))
  }

  async open (consumer: string, partition: number, epoch: number): Promise<{ seq: number, state: S } | undefined> {
    return await this.tx(async (c) => {
      await c.query('INSERT INTO partition_checkpoints (consumer, partition, epoch, seq, state) VALUES ($1, $2, $3, 0, NULL) ON CONFLICT DO NOTHING', [consumer, partition, epoch])
      const row = await this.locked(c, consumer, partition)
      if (row.epoch > epoch) throw new StaleEpochError(consumer, partition, epoch, row.epoch)
      await c.query('UPDATE partition_checkpoints SET epoch = $3 WHERE consumer = $1 AND partition = $2', [consumer, partition, epoch])
      return row.state == null ? undefined : { seq: row.seq, state: row.state }
    })
  }

  async commit (cp: Checkpoint<S>, effects?: Effects): Promise<void> {
    if (!effects) {
      // One statement, one round trip (a transaction of four was most of a node's PostgreSQL work, every
      // 100 ms per partition and consumer): the UPDATE locks the row, and a concurrent commit's UPDATE
      // waits for it and checks the epoch again against what committed, so the fence holds as with FOR UPDATE
      const r = await this.pool.query('UPDATE partition_checkpoints SET seq = $3, state = $4 WHERE consumer = $1 AND partition = $2 AND epoch = $5 AND seq <= $3',
        [cp.consumer, cp.partition, cp.seq, JSON.stringify(cp.state), cp.epoch])
      if (r.rowCount === 1) return
      // refused: say why, as the transaction below would
      const row = (await this.pool.query<{ epoch: string, seq: string }>('SELECT epoch, seq FROM partition_checkpoints WHERE consumer = $1 AND partition = $2', [cp.consumer, cp.partition])).rows[0]
      const epoch = row ? Number(row.epoch) : 0
      if (epoch !== cp.epoch) throw new StaleEpochError(cp.consumer, cp.partition, cp.epoch, epoch)
      throw new Error(`checkpoint of ${cp.consumer}/${cp.partition} would move back from ${row!.seq} to ${cp.seq}`)
    }
    await this.tx(async (c) => {
      const row = await this.locked(c, cp.consumer, cp.partition)
      if (row.epoch !== cp.epoch) throw new StaleEpochError(cp.consumer, cp.partition, cp.epoch, row.epoch)
      // a position that goes back would mean the runner consumed something twice
      if (cp.seq < row.seq) throw new Error(`checkpoint of ${cp.consumer}/${cp.partition} would move back from ${row.seq} to ${cp.seq}`)
      if (effects) await effects(c)
      await c.query('UPDATE partition_checkpoints SET seq = $3, state = $4 WHERE consumer = $1 AND partition = $2', [cp.consumer, cp.partition, cp.seq, JSON.stringify(cp.state)])
    })
  }

  /**
   * The position of a consumer that no longer runs (its checkpoint was left by an earlier version), or undefined
   * when it has none in this partition. Throws StaleEpochError when a higher epoch than `epoch` has claimed it.
   */
  async retiredPosition (consumer: string, partition: number, epoch: number): Promise<number | undefined> {
    const row = (await this.pool.query<{ epoch: string, seq: string }>('SELECT epoch, seq FROM partition_checkpoints WHERE consumer = $1 AND partition = $2', [consumer, partition])).rows[0]
    if (row === undefined) return undefined
    if (Number(row.epoch) > epoch) throw new StaleEpochError(consumer, partition, epoch, Number(row.epoch))
    return Number(row.seq)
  }

  /** Deletes a retired consumer's checkpoint, unless a higher epoch than `epoch` claimed it since. */
  async forget (consumer: string, partition: number, epoch: number): Promise<void> {
    await this.pool.query('DELETE FROM partition_checkpoints WHERE consumer = $1 AND partition = $2 AND epoch <= $3', [consumer, partition, epoch])
  }

  /** Every checkpoint of a consumer (tests, tools). */
  async all (consumer: string): Promise<Checkpoint<S>[]> {
    const r = await this.pool.query<{ partition: number, epoch: string, seq: string, state: S | null }>('SELECT partition, epoch, seq, state FROM partition_checkpoints WHERE consumer = $1 ORDER BY partition', [consumer])
    return r.rows.map((x) => ({ consumer, partition: x.partition, epoch: Number(x.epoch), seq: Number(x.seq), state: x.state as S }))
  }

  async close (): Promise<void> { await this.pool.end() }

  private async locked (c: pg.PoolClient, consumer: string, partition: number): Promise<{ epoch: number, seq: number, state: S | null }> {
    const r = await c.query<{ epoch: string, seq: string, state: S | null }>('SELECT epoch, seq, state FROM partition_checkpoints WHERE consumer = $1 AND partition = $2 FOR UPDATE', [consumer, partition])
    const row = r.rows[0]
    // BIGINT comes back as a string; epochs and stream sequences stay far below 2^53
    return row ? { epoch: Number(row.epoch), seq: Number(row.seq), state: row.state } : { epoch: 0, seq: 0, state: null }
  }

  private async tx<T> (f: (c: pg.PoolClient) => Promise<T>): Promise<T> { return await pgTransaction(this.pool, f) }
}
