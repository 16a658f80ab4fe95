import { createHash } from 'node:crypto'
import type { Transaction } from 'better-sqlite3'
import { migrate, type Clock, type DB, type Migration } from '../core/index.ts'

export interface AuditEntry {
  seq: number, at: number, actor: string, action: string, subject: string, detail: unknown, prevHash: string, hash: string
  /** in a cluster's chain (cluster/audit-chain.ts): the node whose audit trail recorded it, and its seq there */
  node?: string, nodeSeq?: number
}

/** the link of a chain's first entry */
export const GENESIS = '0'.repeat(64)

function entryHash (prevHash: string, e: { seq: number, at: number, actor: string, action: string, subject: string, detail: string }): string {
  return createHash('sha256').update(prevHash).update('\n').update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.subject, e.detail])).digest('hex')
}

/** What the API reads of an audit trail: this node's (AuditLog), or the cluster's one chain in PostgreSQL. */
export interface AuditTrail {
  list(afterSeq: number, limit: number): AuditEntry[] | Promise<AuditEntry[]>
  aboutSubject(subject: string, opts: { exceptActor?: string, beforeSeq?: number, limit: number }): AuditEntry[] | Promise<AuditEntry[]>
  verify(): ChainCheck | Promise<ChainCheck>
}

export interface ChainCheck { ok: boolean, entries: number, brokenAt?: number, reason?: string }

/** A stored entry as a chain check reads it: detail as stored (JSON text), hash links as stored. */
export interface StoredLink { seq: number, prev_hash: string, hash: string }

/**
 * Checks a chain a page at a time, in order: `page` reports the first entry that is missing,
 * does not link to the one before, or whose content does not match its hash (`hashOf(prevHash,
 * entry)`); `done` says the chain held. One walk for this node's trail (synchronous pages) and
 * the cluster's (pages read from PostgreSQL).
 */
export class ChainWalk<R extends StoredLink> {
  private prev = GENESIS
  private expectSeq = 1
  private n = 0
  constructor (private readonly hashOf: (prevHash: string, r: R) => string) {}

  page (rows: readonly R[]): ChainCheck | undefined {
    for (const r of rows) {
      if (r.seq !== this.expectSeq) return { ok: false, entries: this.n, brokenAt: this.expectSeq, reason: `entry ${this.expectSeq} is missing` }
      if (r.prev_hash !== this.prev) return { ok: false, entries: this.n, brokenAt: r.seq, reason: 'it does not link to the entry before it' }
      if (this.hashOf(this.prev, r) !== r.hash) return { ok: false, entries: this.n, brokenAt: r.seq, reason: 'its content does not match its hash' }
      this.prev = r.hash
      this.expectSeq++
      this.n++
    }
    return undefined
  }

  done (): ChainCheck { return { ok: true, entries: this.n } }
}

export type AuditAction =
  | 'api-key.created' | 'api-key.revoked'
  | 'rule-set.published' | 'rule-set.activated' | 'rule-set.deactivated'
  | 'hospital.registered' | 'hospital.feeds' | 'institution.registered' | 'resident.updated' | 'resident.consent'
  | 'override.set'
  | 'export.fhir' | 'export.fhir-alert' | 'export.fhir-measurements' | 'export.research' | 'export.rollup'
  | 'pull.research' | 'pull.readings' | 'pull.summaries'
  | 'pull.alerts' | 'pull.alert-history' | 'pull.profile' | 'pull.overrides' | 'pull.patients' | 'live.open' | 'live.watch'
  | 'resident.registered' | 'device.registered'
  | 'outbox.redrive'
  | (string & {})

/** The audit trail's table (component 'audit'). Never edit a shipped step: add one. */
export const AUDIT_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'the hash-chained audit trail, append-only by triggers that refuse UPDATE and DELETE',
    up: `
      CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
        detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
  },
  {
    version: 2,
    why: '"who read my data": a resident\'s access log reads the entries about one subject, newest first',
    up: 'CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject, seq)',
  },
]

/**
 * The audit trail: append-only (triggers refuse UPDATE and DELETE) and hash-chained, each
 * entry storing the hash of the one before, so changing or removing an entry breaks every
 * hash after it and `verify` names the first entry that does not match.
 */
export class AuditLog implements AuditTrail {
  private readonly s
  private readonly appendTx: Transaction<(actor: string, action: AuditAction, subject: string, detail: unknown) => AuditEntry>

  constructor (private readonly db: DB, private readonly clock: Clock) {
    migrate(db, 'audit', AUDIT_MIGRATIONS)
    this.s = {
      insert: db.prepare('INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      last: db.prepare<[], { seq: number, hash: string }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
      // newest first; the actor test is on a prefix without LIKE, whose _ and % ids may contain
      bySubject: db.prepare<[string, number, string, number, string, number], { seq: number, at: number, actor: string, action: string, subject: string, detail: string, prev_hash: string, hash: string }>(
        'SELECT * FROM audit WHERE subject = ? AND seq < ? AND actor <> ? AND substr(actor, 1, ?) <> ? ORDER BY seq DESC LIMIT ?'),
      page: db.prepare<[number, number], { seq: number, at: number, actor: string, action: string, subject: string, detail: string, prev_hash: string, hash: string }>('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?'),
    }
    this.appendTx = db.transaction((actor: string, action: AuditAction, subject: string, detail: unknown): AuditEntry => {
      const last = this.s.last.get() ?? { seq: 0, hash: GENESIS }
      const e = { seq: last.seq + 1, at: this.clock.now(), actor, action, subject, detail: JSON.stringify(detail) }
      const hash = entryHash(last.hash, e)
      this.s.insert.run(e.seq, e.at, e.actor, e.action, e.subject, e.detail, last.hash, hash)
      return { ...e, detail, prevHash: last.hash, hash }
    })
  }

  /**
   * Appends an entry; call inside the transaction of the change it records when there is one.
   * The chain's head is read from the database each time (one indexed row), not kept in memory:
   * a head in memory ran ahead of the table when the transaction of an entry rolled back (the
   * next entry left a gap) and fell behind it when another process on the file (the CLI)
   * appended (the next entry's seq was taken: the append threw).
   */
  append (actor: string, action: AuditAction, subject: string, detail: unknown = {}): AuditEntry {
    // IMMEDIATE when on its own: another process's append waits for this one instead of reading the same head
    return this.appendTx.immediate(actor, action, subject, detail)
  }

  list (afterSeq: number, limit: number): AuditEntry[] {
    return this.s.page.all(afterSeq, limit).map((r) => ({ seq: r.seq, at: r.at, actor: r.actor, action: r.action, subject: r.subject, detail: JSON.parse(r.detail) as unknown, prevHash: r.prev_hash, hash: r.hash }))
  }

  /**
   * Entries about one subject, newest first, before `beforeSeq`, leaving out those whose actor
   * is `exceptActor` itself (`resident:<id>`) or one of its keys (`resident:<id>:<key id>`).
   */
  aboutSubject (subject: string, opts: { exceptActor?: string, beforeSeq?: number, limit: number }): AuditEntry[] {
    const except = opts.exceptActor ?? '\u0000'
    return this.s.bySubject.all(subject, opts.beforeSeq ?? Number.MAX_SAFE_INTEGER, except, except.length + 1, except + ':', opts.limit)
      .map((r) => ({ seq: r.seq, at: r.at, actor: r.actor, action: r.action, subject: r.subject, detail: JSON.parse(r.detail) as unknown, prevHash: r.prev_hash, hash: r.hash }))
  }

  /** Recomputes the chain; reports the first entry whose content or link does not match. */
  verify (): ChainCheck {
    const walk = new ChainWalk<StoredLink & Parameters<typeof entryHash>[1]>(entryHash)
    for (let after = 0; ;) {
      const rows = this.s.page.all(after, 1000)
      if (rows.length === 0) return walk.done()
      const broken = walk.page(rows)
      if (broken) return broken
      after = rows[rows.length - 1]!.seq
    }
  }
}
