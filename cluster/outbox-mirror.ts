import pg from 'pg'
import { migrate, type Clock, type DB, type Logger, type Migration } from '../core/index.ts'
import type { OutboxEntry } from '../forwarder/index.ts'
import { Notes, Shipper, dropTriggers, installTriggers } from './link-state.ts'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * The cluster's outbox: what a node queued for a hospital, an institution or the parent region
 * is delivered even if that node dies and does not come back.
 *
 * Each node queues into its own outbox (forwarder/outbox.ts), in the transaction of the change
 * that caused the message, and delivers from there, as a single node does. A trigger notes every
 * message queued, delivered or set aside (`outbox_mirror_outbox`), and the node ships it to
 * `cluster_outbox` in PostgreSQL, keyed by its idempotency key (every 250 ms, and before a
 * partition's position commits, with the alerts), together with a heartbeat of the node
 * (`cluster_outbox_nodes`). A node that has not been seen for `deadAfterMs` is taken for dead:
 * the rescuer (the owner of partition 0, one node at a time) takes its undelivered messages into
 * its own outbox, with the same idempotency key, and delivers them with its breakers and back-off
 * (`taken_by`). The dead node, when it comes back, first marks what was taken from it as
 * delivered, before its outbox starts. A message it delivered just before it died and had not
 * shipped yet is delivered again by the rescuer: receivers drop the repeat by its key.
 */
const STEPS: PgStep[] = [{
  version: 1,
  why: "every node's outbox messages (by idempotency key), and when each node was last seen, so a dead node's undelivered messages are delivered by another",
  sql: `
    CREATE TABLE IF NOT EXISTS cluster_outbox (
      idempotency_key TEXT PRIMARY KEY, source TEXT NOT NULL, sink TEXT NOT NULL, url TEXT NOT NULL, headers JSONB NOT NULL, body TEXT NOT NULL,
      created_at BIGINT NOT NULL, delivered_at BIGINT, dead_at BIGINT, taken_by TEXT);
    CREATE INDEX IF NOT EXISTS cluster_outbox_undelivered ON cluster_outbox (source) WHERE delivered_at IS NULL AND dead_at IS NULL AND taken_by IS NULL;
    CREATE TABLE IF NOT EXISTS cluster_outbox_nodes (source TEXT PRIMARY KEY, seen_at BIGINT NOT NULL);`,
}]

export const OUTBOX_MIRROR_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: outbox messages queued or delivered on this node that the cluster's outbox may not have yet (triggers fill it)",
  up: 'CREATE TABLE IF NOT EXISTS outbox_mirror_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, outbox_id INTEGER NOT NULL)',
}]

const TRIGGERS = ['outbox_mirror_ins', 'outbox_mirror_upd']

interface LocalRow { id: number, sink: string, url: string, headers: string, body: string, idempotency_key: string, created_at: number, delivered_at: number | null, dead_at: number | null }

export interface OutboxMirrorOptions {
  db: DB
  pool: pg.Pool
  clock: Clock
  logger: Logger
  /** this node's name in the cluster's shared logs */
  source: string
  /** queues a message into this node's outbox (in the caller's transaction); false when its key is there already */
  enqueue(e: OutboxEntry): boolean
  /** is this node the rescuer now (it owns partition 0)? */
  rescuer(): boolean
  /** a node not seen this long is taken for dead (default 15 s: three lease lengths) */
  deadAfterMs?: number
  intervalMs?: number
}

export class OutboxMirror extends Shipper {
  private readonly s
  private seenAt = 0
  readonly stats = { shipped: 0, rescued: 0, takenElsewhere: 0 }

  private constructor (private readonly o: OutboxMirrorOptions) {
    super(o.logger, {
      failing: "cannot ship this node's outbox to the cluster's in PostgreSQL; if this node dies, what it queued since waits for it",
      back: "outbox shipped to the cluster's again",
      notOk: 'outbox not shipped',
    }, o.intervalMs)
    migrate(o.db, 'outbox-mirror', OUTBOX_MIRROR_MIGRATIONS)
    installTriggers(o.db, {
      outbox_mirror_ins: 'CREATE TRIGGER outbox_mirror_ins AFTER INSERT ON outbox BEGIN INSERT INTO outbox_mirror_outbox (outbox_id) VALUES (NEW.id); END',
      outbox_mirror_upd: 'CREATE TRIGGER outbox_mirror_upd AFTER UPDATE OF delivered_at, dead_at ON outbox BEGIN INSERT INTO outbox_mirror_outbox (outbox_id) VALUES (NEW.id); END',
    })
    this.s = {
      notes: new Notes<{ id: number, outbox_id: number }>(o.db, 'outbox_mirror_outbox', 'outbox_id'),
      row: o.db.prepare<[number], LocalRow>('SELECT id, sink, url, headers, body, idempotency_key, created_at, delivered_at, dead_at FROM outbox WHERE id = ?'),
      takenElsewhere: o.db.prepare('UPDATE outbox SET delivered_at = ?, last_error = ? WHERE idempotency_key = ? AND delivered_at IS NULL'),
    }
  }

  static async open (o: Omit<OutboxMirrorOptions, 'pool'> & { postgresUrl: string }): Promise<OutboxMirror> {
    return new OutboxMirror({ ...o, pool: await pgOpen(o.postgresUrl, 2, 'cluster-outbox', STEPS) })
  }

  /** A node not in a cluster notes nothing: the triggers an earlier cluster start left are dropped. */
  static uninstall (db: DB): void { dropTriggers(db, TRIGGERS) }

  /**
   * Before this node's outbox starts: what another node took over while this one was gone is
   * delivered (by that node), so this one does not send it again.
   */
  async reconcile (): Promise<number> {
    const r = await this.o.pool.query<{ idempotency_key: string, taken_by: string }>('SELECT idempotency_key, taken_by FROM cluster_outbox WHERE source = $1 AND taken_by IS NOT NULL AND taken_by <> $1', [this.o.source])
    const now = this.o.clock.now()
    let n = 0
    this.o.db.transaction(() => { for (const x of r.rows) n += this.s.takenElsewhere.run(now, `delivered by ${x.taken_by} while this node was gone`, x.idempotency_key).changes })()
    if (n) { this.stats.takenElsewhere += n; this.o.logger.info({ messages: n }, 'outbox messages another node delivered while this one was gone are marked delivered here') }
    return n
  }

  protected async ship (): Promise<void> {
    const now = this.o.clock.now()
    if (now - this.seenAt >= 2000) {
      await this.o.pool.query('INSERT INTO cluster_outbox_nodes (source, seen_at) VALUES ($1, $2) ON CONFLICT (source) DO UPDATE SET seen_at = excluded.seen_at', [this.o.source, now])
      this.seenAt = now
    }
    this.stats.shipped += await this.s.notes.ship(async (rows) => {
      const messages = new Map<number, LocalRow>()
      for (const r of rows) { const m = this.s.row.get(r.outbox_id); if (m) messages.set(m.id, m) }
      await pgTransaction(this.o.pool, async (c) => {
        for (const m of messages.values()) {
          // the first node to ship a key owns it; a rescuer's copy only says it was delivered
          await c.query(`INSERT INTO cluster_outbox (idempotency_key, source, sink, url, headers, body, created_at, delivered_at, dead_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (idempotency_key) DO UPDATE SET delivered_at = coalesce(cluster_outbox.delivered_at, excluded.delivered_at), dead_at = excluded.dead_at`,
          [m.idempotency_key, this.o.source, m.sink, m.url, m.headers, m.body, m.created_at, m.delivered_at, m.dead_at])
        }
      })
      return messages.size
    })
  }

  /** The rescuer's round: the undelivered messages of nodes not seen for `deadAfterMs` go into this node's outbox. */
  async rescue (): Promise<number> {
    const now = this.o.clock.now()
    const deadAfter = this.o.deadAfterMs ?? 15_000
    return await pgTransaction(this.o.pool, async (c) => {
      const r = await c.query<{ idempotency_key: string, source: string, sink: string, url: string, headers: Record<string, string>, body: string }>(`
        SELECT o.idempotency_key, o.source, o.sink, o.url, o.headers, o.body FROM cluster_outbox o JOIN cluster_outbox_nodes n ON n.source = o.source
        WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.taken_by IS NULL AND o.source <> $1 AND n.seen_at < $2
        ORDER BY o.created_at LIMIT 500 FOR UPDATE OF o SKIP LOCKED`, [this.o.source, now - deadAfter])
      if (r.rows.length === 0) return 0
      // into this node's outbox first: if that fails nothing is marked taken, and the next round tries again
      this.o.db.transaction(() => { for (const m of r.rows) this.o.enqueue({ sink: m.sink, url: m.url, headers: m.headers, body: m.body, idempotencyKey: m.idempotency_key }) })()
      await c.query('UPDATE cluster_outbox SET taken_by = $1 WHERE idempotency_key = ANY($2::text[])', [this.o.source, r.rows.map((m) => m.idempotency_key)])
      this.stats.rescued += r.rows.length
      this.o.logger.warn({ messages: r.rows.length, from: [...new Set(r.rows.map((m) => m.source))] }, 'outbox messages of a node not seen for a while taken over for delivery')
      return r.rows.length
    })
  }

  protected override async afterShip (): Promise<void> { if (this.o.rescuer()) await this.rescue() }

  override async stop (): Promise<void> {
    await super.stop()
    await this.o.pool.end().catch(() => {})
  }

  summary (): Record<string, unknown> { return { ...this.stats, problem: this.link.current } }
}
