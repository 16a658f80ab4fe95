import { createHash } from 'node:crypto'
import pg from 'pg'
import type { Logger } from '../core/index.ts'
import { ChainWalk, GENESIS, type AuditEntry, type AuditLog, type AuditTrail, type ChainCheck } from '../registry/index.ts'
import { Shipper, readShipped } from './link-state.ts'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * The cluster's audit trail: one hash chain in PostgreSQL that holds every node's entries.
 *
 * Each node keeps recording into its own trail (registry/audit.ts, SQLite), in the transaction
 * of the change it records, so an entry exists exactly when its change does. That trail is this
 * chain's outbox: a shipper (AuditShipper) appends its entries here in the node's order, each
 * batch in one transaction that holds the chain's lock, links every entry to the chain's head
 * and records which node and which of its entries it came from. So:
 * - there is one chain, in one order, whichever node an operator, a hospital or the forwarder
 *   acted on, and `verify` checks all of it;
 * - a node never ships an entry twice (the node's position is in the chain itself, `node_seq`,
 *   read in the same locked transaction), whatever crashed when;
 * - while PostgreSQL is unreachable the node goes on recording, and ships once it is back.
 * Reads on any node first ship what that node has recorded, so a node reads its own writes.
 *
 * A node ships as the source name it keeps in its database (cluster/node-source.ts), not as its
 * node id, which defaults to host name and process id and changes at every start. Each shipped entry
 * keeps the node's own hash of it: a second node shipping as the same source (a copied data
 * directory) has other entries at the same positions, and the shipper refuses to go on.
 */

/** The chain's tables in PostgreSQL (component 'cluster-audit'); never edit a shipped step: add one. */
const STEPS: PgStep[] = [{
  version: 1,
  why: "the cluster's audit trail: every node's entries in one hash chain, append-only",
  sql: `
    CREATE TABLE IF NOT EXISTS cluster_audit (
      seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL,
      source TEXT NOT NULL, source_seq BIGINT NOT NULL, source_hash TEXT NOT NULL,
      prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (source, source_seq));
    CREATE INDEX IF NOT EXISTS cluster_audit_subject ON cluster_audit (subject, seq);
    CREATE OR REPLACE FUNCTION cluster_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    DROP TRIGGER IF EXISTS cluster_audit_no_change ON cluster_audit;
    CREATE TRIGGER cluster_audit_no_change BEFORE UPDATE OR DELETE ON cluster_audit FOR EACH ROW EXECUTE FUNCTION cluster_audit_append_only();
    DROP TRIGGER IF EXISTS cluster_audit_no_truncate ON cluster_audit;
    CREATE TRIGGER cluster_audit_no_truncate BEFORE TRUNCATE ON cluster_audit FOR EACH STATEMENT EXECUTE FUNCTION cluster_audit_append_only();`,
}]

function twoSources (source: string, seq: number): string {
  return `the cluster's audit chain has entry ${seq} of source ${source}, and it is not this node's: two nodes ship as one source (was a data directory copied?); give the copy's node_source row a source of its own`
}

interface Row { seq: string, at: string, actor: string, action: string, subject: string, detail: string, source: string, source_seq: string, source_hash: string, prev_hash: string, hash: string }

/**
 * PostgreSQL's text holds no NUL character, which a SQLite trail may (an id in a path): one entry
 * it refused would stop the node's shipping for good. The chain keeps U+FFFD in its place, and
 * its hash covers what it keeps. (The detail is JSON, where NUL is escaped already.)
 */
function pgText (s: string): string { return s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s }

/** The entry's hash covers where it came from too: moving an entry to another node's name breaks the chain. */
function chainHash (prevHash: string, e: { seq: number, at: number, actor: string, action: string, subject: string, detail: string, source: string, sourceSeq: number }): string {
  return createHash('sha256').update(prevHash).update('\n')
    .update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.subject, e.detail, e.source, e.sourceSeq])).digest('hex')
}

// BIGINT comes back as a string; sequence numbers and milliseconds stay far below 2^53
function fromRow (r: Row): AuditEntry {
  return {
    seq: Number(r.seq), at: Number(r.at), actor: r.actor, action: r.action, subject: r.subject, detail: JSON.parse(r.detail) as unknown,
    prevHash: r.prev_hash, hash: r.hash, node: r.source, nodeSeq: Number(r.source_seq),
  }
}

const linkOf = (r: Row): { seq: number, prev_hash: string, hash: string, row: Row } => ({ seq: Number(r.seq), prev_hash: r.prev_hash, hash: r.hash, row: r })

export class ClusterAuditChain {
  private constructor (readonly pool: pg.Pool) {}

  static async open (connectionString: string): Promise<ClusterAuditChain> {
    return new ClusterAuditChain(await pgOpen(connectionString, 3, 'cluster-audit', STEPS))
  }

  /** The last entry of `source` in the chain (seq 0: none yet) and the source's own hash of it. */
  async shippedUpTo (source: string): Promise<{ seq: number, hash: string | null }> {
    const r = await this.pool.query<{ source_seq: string, source_hash: string }>('SELECT source_seq, source_hash FROM cluster_audit WHERE source = $1 ORDER BY source_seq DESC LIMIT 1', [source])
    const row = r.rows[0]
    return row ? { seq: Number(row.source_seq), hash: row.source_hash } : { seq: 0, hash: null }
  }

  /**
   * Appends a source's entries (its own seq order, as its trail lists them) after the chain's
   * head, in one transaction under the chain's lock; the ones the chain has already are skipped.
   * Returns the source's last seq in the chain.
   */
  async append (source: string, entries: readonly AuditEntry[]): Promise<number> {
    return await pgTransaction(this.pool, async (c) => {
      // one appender at a time across the cluster: two heads read at once would fork the chain
      await c.query("SELECT pg_advisory_xact_lock(hashtext('vitalmesh-cluster-audit'))")
      const last = (await c.query<{ source_seq: string, source_hash: string }>('SELECT source_seq, source_hash FROM cluster_audit WHERE source = $1 ORDER BY source_seq DESC LIMIT 1', [source])).rows[0]
      const upTo = last ? Number(last.source_seq) : 0
      // the chain's last entry of this source must be this trail's: a copy of a node's data
      // directory has the same entries up to the copy and its own after, which would otherwise be
      // taken for entries shipped already and dropped without a word
      const mine = entries.find((e) => e.seq === upTo)?.hash ?? entries.find((e) => e.seq === upTo + 1)?.prevHash
      if (last && mine !== undefined && mine !== last.source_hash) throw new Error(twoSources(source, upTo))
      const fresh = entries.filter((e) => e.seq > upTo)
      if (fresh.length === 0) return upTo
      if (fresh[0]!.seq !== upTo + 1) throw new Error(`audit entries of ${source} would leave a gap: the chain has them up to ${upTo}, the next given is ${fresh[0]!.seq}`)
      const head = (await c.query<{ seq: string, hash: string }>('SELECT seq, hash FROM cluster_audit ORDER BY seq DESC LIMIT 1')).rows[0]
      let seq = head ? Number(head.seq) : 0
      let prev = head?.hash ?? GENESIS
      const values: unknown[] = []
      const tuples: string[] = []
      for (const e of fresh) {
        seq++
        const x = { at: e.at, actor: pgText(e.actor), action: pgText(e.action), subject: pgText(e.subject), detail: JSON.stringify(e.detail) }
        const hash = chainHash(prev, { seq, ...x, source, sourceSeq: e.seq })
        const b = values.length
        tuples.push(`(${Array.from({ length: 11 }, (_, i) => `$${b + i + 1}`).join(', ')})`)
        values.push(seq, x.at, x.actor, x.action, x.subject, x.detail, source, e.seq, e.hash, prev, hash)
        prev = hash
      }
      await c.query(`INSERT INTO cluster_audit (seq, at, actor, action, subject, detail, source, source_seq, source_hash, prev_hash, hash) VALUES ${tuples.join(', ')}`, values)
      return fresh[fresh.length - 1]!.seq
    })
  }

  async list (afterSeq: number, limit: number): Promise<AuditEntry[]> {
    const r = await this.pool.query<Row>('SELECT * FROM cluster_audit WHERE seq > $1 ORDER BY seq LIMIT $2', [afterSeq, limit])
    return r.rows.map(fromRow)
  }

  /** As AuditLog.aboutSubject: newest first, without the entries of `exceptActor` and of its keys. */
  async aboutSubject (subject: string, opts: { exceptActor?: string, beforeSeq?: number, limit: number }): Promise<AuditEntry[]> {
    const except = opts.exceptActor === undefined ? null : pgText(opts.exceptActor)
    const r = await this.pool.query<Row>(
      'SELECT * FROM cluster_audit WHERE subject = $1 AND seq < $2 AND ($3::text IS NULL OR (actor <> $3 AND left(actor, $4) <> $5)) ORDER BY seq DESC LIMIT $6',
      [pgText(subject), opts.beforeSeq ?? Number.MAX_SAFE_INTEGER, except, (except?.length ?? 0) + 1, `${except ?? ''}:`, opts.limit])
    return r.rows.map(fromRow)
  }

  async verify (): Promise<ChainCheck> {
    const walk = new ChainWalk<ReturnType<typeof linkOf>>((prev, l) => chainHash(prev, {
      seq: l.seq, at: Number(l.row.at), actor: l.row.actor, action: l.row.action, subject: l.row.subject, detail: l.row.detail, source: l.row.source, sourceSeq: Number(l.row.source_seq),
    }))
    for (let after = 0; ;) {
      const rows = (await this.pool.query<Row>('SELECT * FROM cluster_audit WHERE seq > $1 ORDER BY seq LIMIT 1000', [after])).rows.map(linkOf)
      if (rows.length === 0) return walk.done()
      const broken = walk.page(rows)
      if (broken) return broken
      after = rows[rows.length - 1]!.seq
    }
  }

  async close (): Promise<void> { await this.pool.end() }
}

export interface AuditShipperOptions {
  local: Pick<AuditLog, 'list'>
  chain: ClusterAuditChain
  source: string
  logger: Logger
  /** how often the trail is looked at for new entries (default 250 ms) */
  intervalMs?: number
  /** entries per transaction (default 500) */
  batch?: number
}

/**
 * Ships this node's audit trail to the cluster's chain, a batch per transaction, in its order.
 * `flush` ships what is recorded now (reads call it first); a timer ships the rest.
 */
export class AuditShipper extends Shipper implements AuditTrail {
  private upTo: number | undefined
  readonly stats = { shipped: 0 }

  constructor (private readonly o: AuditShipperOptions) {
    super(o.logger, {
      failing: "cannot ship the audit trail to the cluster's chain in PostgreSQL; entries wait here and are shipped once it can",
      back: "audit trail shipped to the cluster's chain again",
      notOk: 'audit trail not shipped',
    }, o.intervalMs)
  }

  protected async ship (): Promise<void> {
    if (this.upTo === undefined) {
      const at = await this.o.chain.shippedUpTo(this.o.source)
      const mine = at.seq > 0 ? this.o.local.list(at.seq - 1, 1)[0] : undefined
      if (at.seq > 0 && mine?.hash !== at.hash) {
        throw new Error(twoSources(this.o.source, at.seq))
      }
      this.upTo = at.seq
    }
    for (;;) {
      const entries = this.o.local.list(this.upTo, this.o.batch ?? 500)
      if (entries.length === 0) return
      const upTo = await this.o.chain.append(this.o.source, entries)
      this.stats.shipped += upTo - this.upTo
      this.upTo = upTo
    }
  }

  /** What operators see (/v1/stats). */
  summary (): Record<string, unknown> { return { source: this.o.source, shippedTo: this.upTo ?? null, shipped: this.stats.shipped, problem: this.link.current } }

  // reads: the cluster's chain, after shipping what this node recorded (a node reads its own writes)
  private async fresh<T> (read: () => Promise<T>): Promise<T> { return await readShipped("the cluster's audit trail", async () => { await this.flush() }, read) }


  async list (afterSeq: number, limit: number): Promise<AuditEntry[]> { return await this.fresh(async () => await this.o.chain.list(afterSeq, limit)) }
  async aboutSubject (subject: string, opts: { exceptActor?: string, beforeSeq?: number, limit: number }): Promise<AuditEntry[]> { return await this.fresh(async () => await this.o.chain.aboutSubject(subject, opts)) }
  async verify (): Promise<ChainCheck> { return await this.fresh(async () => await this.o.chain.verify()) }
}
