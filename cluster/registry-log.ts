import pg from 'pg'
import type { Logger } from '../core/index.ts'
import type { AppliedChanges, RegistryReplica, RowChange } from '../registry/index.ts'
import { LinkState, every } from './link-state.ts'
import { pgListen, pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * The cluster's registry in PostgreSQL: one ordered log of every change to the shared registry
 * tables (residents, devices, API keys, hospitals, institutions, device models, overrides,
 * followers, rule sets), made on whichever node (API or CLI). Each node's SQLite registry is a
 * replica of it (registry/replica.ts): a node's changes go into its outbox in the transaction
 * that made them, are appended here in its order, and every node applies the log in the log's
 * order, its own changes included, so the nodes end with the same rows. Reads stay local and
 * synchronous (a device's CONNECT, the rule engine's look-ups), which is why the registry is
 * replicated rather than read from PostgreSQL on each use.
 *
 * Appends hold one lock, so a position is taken and committed before the next append takes
 * one: a reader that has applied up to position p has seen every append that took a position
 * up to p (with positions from a sequence, a later one could commit first and a reader skip the
 * earlier one for ever). A node's position in its own outbox (`source_id`) is read under the
 * same lock: an outbox shipped twice (a crash before the node noted it) is appended once.
 */
const STEPS: PgStep[] = [{
  version: 1,
  why: "the cluster's registry: every change to the shared registry tables, in the one order every node applies",
  sql: `CREATE TABLE IF NOT EXISTS registry_log (
    pos BIGINT PRIMARY KEY, source TEXT NOT NULL, source_id BIGINT NOT NULL, at BIGINT NOT NULL,
    tbl TEXT NOT NULL, key TEXT NOT NULL, image TEXT, UNIQUE (source, source_id))`,
}]

const REGISTRY_CHANNEL = 'vitalmesh_registry'

export class ClusterRegistryLog {
  private constructor (readonly pool: pg.Pool, private readonly connectionString: string) {}

  static async open (connectionString: string): Promise<ClusterRegistryLog> {
    return new ClusterRegistryLog(await pgOpen(connectionString, 2, 'cluster-registry', STEPS), connectionString)
  }

  /** Calls `appended` when any node appended (and once at each (re)connection of the listener). */
  listen (appended: () => void): ReturnType<typeof pgListen> { return pgListen(this.connectionString, REGISTRY_CHANNEL, appended) }

  /** Appends a node's outbox entries (its id order) after the log's last; returns the node's last id in the log. */
  async append (source: string, entries: readonly (RowChange & { id: number })[], at: number): Promise<number> {
    return await pgTransaction(this.pool, async (c) => {
      await c.query("SELECT pg_advisory_xact_lock(hashtext('vitalmesh-registry-log'))")
      const have = (await c.query<{ n: string | null }>('SELECT max(source_id) AS n FROM registry_log WHERE source = $1', [source])).rows[0]?.n
      const upTo = have == null ? 0 : Number(have)
      const fresh = entries.filter((e) => e.id > upTo)
      if (fresh.length === 0) return upTo
      let pos = Number((await c.query<{ n: string | null }>('SELECT max(pos) AS n FROM registry_log')).rows[0]?.n ?? 0)
      const values: unknown[] = []
      const tuples: string[] = []
      for (const e of fresh) {
        const b = values.length
        tuples.push(`($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7})`)
        values.push(++pos, source, e.id, at, e.tbl, e.key, e.image)
      }
      await c.query(`INSERT INTO registry_log (pos, source, source_id, at, tbl, key, image) VALUES ${tuples.join(', ')}`, values)
      // delivered at the commit: every node's listener reads the log now instead of at its next look
      await c.query(`SELECT pg_notify('${REGISTRY_CHANNEL}', '')`)
      return fresh[fresh.length - 1]!.id
    })
  }

  async read (afterPos: number, limit: number): Promise<(RowChange & { pos: number, source: string })[]> {
    const r = await this.pool.query<{ pos: string, source: string, tbl: string, key: string, image: string | null }>(
      'SELECT pos, source, tbl, key, image FROM registry_log WHERE pos > $1 ORDER BY pos LIMIT $2', [afterPos, limit])
    return r.rows.map((x) => ({ pos: Number(x.pos), source: x.source, tbl: x.tbl, key: x.key, image: x.image }))
  }

  async close (): Promise<void> { await this.pool.end() }
}

export interface RegistrySyncOptions {
  replica: RegistryReplica
  log: ClusterRegistryLog
  source: string
  clock: { now(): number }
  logger: Logger
  /** after changes were applied here: caches and rule indexes that hold registry data */
  applied?(changes: AppliedChanges): void
  /** how often this node's outbox is looked at (default 100 ms) */
  intervalMs?: number
  /** how often the log is read without a notification from PostgreSQL (default 5000 ms; a lost NOTIFY is read within this) */
  readEveryMs?: number
}

/**
 * Keeps one node's registry in step with the cluster's: ships the node's outbox to the log, then
 * applies the log from the node's position. The outbox (this node's SQLite) is looked at every
 * `intervalMs`; the log (PostgreSQL) is read when a node appended to it (LISTEN/NOTIFY), and
 * every `readEveryMs` in case a notification was lost. Idle, a node sends PostgreSQL nothing.
 */
export class RegistrySync {
  private timer: { stop(): void } | undefined
  private running: Promise<void> | undefined
  private again = false
  private listener: ReturnType<ClusterRegistryLog['listen']> | undefined
  /** the log has (or may have) entries this node has not read */
  private unread = true
  private readAt = 0
  private readonly link: LinkState
  readonly stats = { shipped: 0, applied: 0 }

  constructor (private readonly o: RegistrySyncOptions) {
    this.link = new LinkState(o.logger, {
      failing: "cannot ship or apply the cluster's registry changes (PostgreSQL); this node's changes wait in its outbox",
      back: 'registry in step with the cluster again',
      notOk: 'registry not in step with the cluster',
    })
  }

  /** Ships and applies until nothing is left; a call during a pass is served by that pass, which goes round once more. */
  async sync (): Promise<void> {
    if (this.running) { this.again = true; return await this.running }
    this.running = (async () => { do { this.again = false; await this.pass() } while (this.again) })()
    try { await this.link.watch(this.running) } finally { this.running = undefined }
  }

  private async pass (): Promise<void> {
    // ship first: an entry of this node's that is still in its outbox is then in the log before what follows is applied
    for (let out = this.o.replica.pending(0, 500); out.length > 0; out = this.o.replica.pending(0, 500)) {
      await this.o.log.append(this.o.source, out, this.o.clock.now())
      this.o.replica.shipped(out[out.length - 1]!.id)
      this.stats.shipped += out.length
    }
    // a notification during the read below is not lost: it sets `unread` again
    this.unread = false
    this.readAt = this.o.clock.now()
    try {
      for (let log = await this.o.log.read(this.o.replica.position(), 500); log.length > 0; log = await this.o.log.read(this.o.replica.position(), 500)) {
        const changes = this.o.replica.apply(log)
        this.stats.applied += log.length
        this.o.applied?.(changes)
      }
    } catch (err) {
      this.unread = true
      throw err
    }
  }

  /** A change was made through this node: sync now rather than at the next interval. */
  kick (): void { this.sync().catch(() => {}) }

  start (): void {
    const seeded = this.o.replica.seedOnce()
    if (seeded) this.o.logger.info({ rows: seeded }, "this node's registry goes into the cluster's registry (first start in the cluster)")
    this.listener = this.o.log.listen(() => { this.unread = true; this.kick() })
    // a pass when there is something to ship or to read: idle, PostgreSQL hears nothing from this node
    const due = (): boolean => this.unread || this.o.replica.pending(0, 1).length > 0 || this.o.clock.now() - this.readAt >= (this.o.readEveryMs ?? 5000)
    this.timer = every(this.o.intervalMs ?? 100, async () => { if (due()) await this.sync() })
  }

  /** Resolves once this node hears the log's notifications (after start). */
  async listening (): Promise<void> { await this.listener?.ready }

  async stop (): Promise<void> {
    this.timer?.stop()
    await this.listener?.close()
    await this.running?.catch(() => {})
  }

  /** 'ok', or why the registry is not in step (/readyz). */
  status (): string { return this.link.status() }

  summary (): Record<string, unknown> { return { source: this.o.source, position: this.o.replica.position(), ...this.stats, problem: this.link.current } }
}
