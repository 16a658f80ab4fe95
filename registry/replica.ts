import { migrate, type DB, type Migration } from '../core/index.ts'

/**
 * A table of the registry that every node of a cluster shares (cluster/registry-log.ts ships
 * and orders the changes; this file captures and applies them in one node's SQLite).
 */
export interface ReplicatedTable {
  table: string
  /** the natural key: the same row on every node (devices' INTEGER `key` is each node's own) */
  key: readonly string[]
  /** columns that are each node's own observation (presence, the firmware a device reported here) */
  local?: readonly string[]
  /**
   * columns a node takes with a row it does not have yet and never changes afterwards: a
   * credential's later changes travel on the cluster's credential log (registry/credential-sync.ts),
   * which orders rotations and revocations and ends the sessions they concern
   */
  insertOnly?: readonly string[]
  /**
   * insert-only columns that a later image may still set, never unset: a revocation. Both logs
   * then agree (a revocation is final on the credential log too), and a key or device revoked
   * before another node had it arrives there revoked, whichever log is read first
   */
  sticky?: readonly string[]
}

/** In the order a node seeds them: a device's resident before the device (foreign key). */
export const REPLICATED_TABLES: readonly ReplicatedTable[] = [
  { table: 'residents', key: ['id'] },
  { table: 'hospitals', key: ['id'] },
  { table: 'research_institutions', key: ['id'] },
  { table: 'device_models', key: ['model'] },
  { table: 'devices', key: ['id'], local: ['key', 'firmware', 'last_seen_at', 'online'], insertOnly: ['secret_hash', 'revoked_at', 'credentials_changed_at'], sticky: ['revoked_at'] },
  { table: 'api_keys', key: ['id'], insertOnly: ['digest', 'revoked_at'], sticky: ['revoked_at'] },
  { table: 'overrides', key: ['resident_id', 'rule_key'] },
  { table: 'followers', key: ['id'] },
  { table: 'rule_sets', key: ['id', 'version'] },
  { table: 'rule_set_active', key: ['id'] },
]

/** What an application of the log changed, for what holds registry data elsewhere (caches, rule indexes, sessions). */
export interface AppliedChanges {
  tables: Set<string>
  residents: Set<string>
  /** devices this node did not have: a credential change parked for one of them applies now (CredentialSync.deviceAppeared) */
  newDevices: string[]
  /** devices revoked by a row image (a device revoked before this node had it): their sessions end */
  revokedDevices: { id: string, at: number }[]
}

/** One change of a replicated row: its image after the change, or null when it was deleted. */
export interface RowChange { tbl: string, key: string, image: string | null }

// AUTOINCREMENT: ids are never reused once shipped rows leave the outbox, because the log knows a
// node's changes by them (an id used again would be taken for one the log has already)
export const REPLICA_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: the registry's changes made on this node (by the API or the CLI, captured by triggers) until the cluster's log has them, and how far this node has applied the log",
  up: `
    CREATE TABLE IF NOT EXISTS registry_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key TEXT NOT NULL, image TEXT);
    CREATE INDEX IF NOT EXISTS registry_outbox_row ON registry_outbox (tbl, key);
    CREATE TABLE IF NOT EXISTS registry_replication (
      id INTEGER PRIMARY KEY CHECK (id = 1), applying INTEGER NOT NULL DEFAULT 0, position INTEGER NOT NULL DEFAULT 0, seeded INTEGER NOT NULL DEFAULT 0);
    INSERT OR IGNORE INTO registry_replication (id) VALUES (1);`,
}]

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`
const triggerNames = (t: string): string[] => ['ins', 'upd', 'del'].map((k) => `registry_replica_${t}_${k}`)

/**
 * One node's side of the shared registry: triggers put every change of a replicated table into
 * `registry_outbox` (in the transaction of the change, whoever made it: the API, the CLI, while
 * the node was stopped too), and `apply` writes the cluster's changes into the tables with the
 * triggers quiet. Every node applies every change in the log's order, its own included, with the
 * same rule (the row's image replaces it, except insert-only columns of a row it has), so every
 * node ends with the same rows whatever it wrote first. The images are taken when a change is
 * made, not when it is shipped, and a row with a change of this node's still in the outbox is
 * left as it is: that change comes later in the log and wins everywhere.
 */
export class RegistryReplica {
  private readonly s
  private readonly columns = new Map<string, string[]>()
  private readonly upserts = new Map<string, { run(...a: unknown[]): { changes: number } }>()
  private readonly deletes = new Map<string, { run(...a: unknown[]): { changes: number } }>()
  private readonly exists = new Map<string, { get(...a: unknown[]): unknown }>()

  constructor (private readonly db: DB, private readonly tables: readonly ReplicatedTable[] = REPLICATED_TABLES) {
    migrate(db, 'registry-replica', REPLICA_MIGRATIONS)
    for (const t of tables) {
      const cols = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${t.table}')`).all().map((c) => c.name)
      if (cols.length === 0) throw new Error(`registry replication: table ${t.table} does not exist (a component was not constructed before the replica)`)
      this.columns.set(t.table, cols.filter((c) => !(t.local ?? []).includes(c)))
    }
    this.s = {
      state: db.prepare<[], { position: number, seeded: number }>('SELECT position, seeded FROM registry_replication WHERE id = 1'),
      applying: db.prepare('UPDATE registry_replication SET applying = ? WHERE id = 1'),
      position: db.prepare('UPDATE registry_replication SET position = ? WHERE id = 1'),
      seeded: db.prepare('UPDATE registry_replication SET seeded = 1 WHERE id = 1'),
      pending: db.prepare<[number, number], RowChange & { id: number }>('SELECT id, tbl, key, image FROM registry_outbox WHERE id > ? ORDER BY id LIMIT ?'),
      shipped: db.prepare('DELETE FROM registry_outbox WHERE id <= ?'),
      unshipped: db.prepare<[string, string], { id: number }>('SELECT id FROM registry_outbox WHERE tbl = ? AND key = ? LIMIT 1'),
    }
    this.install()
  }

  /** (Re)creates the capturing triggers from the tables' columns as they are now (a migration may have added some). */
  private install (): void {
    this.db.transaction(() => {
      for (const t of this.tables) {
        const cols = this.columns.get(t.table)!
        const image = (row: 'NEW' | 'OLD'): string => `json_object(${cols.map((c) => `'${c}', ${row}.${q(c)}`).join(', ')})`
        const key = (row: 'NEW' | 'OLD'): string => `json_array(${t.key.map((k) => `${row}.${q(k)}`).join(', ')})`
        const quiet = 'WHEN (SELECT applying FROM registry_replication WHERE id = 1) = 0'
        const [ins, upd, del] = triggerNames(t.table)
        for (const n of [ins, upd, del]) this.db.exec(`DROP TRIGGER IF EXISTS ${n}`)
        // an UPDATE that sets only local columns (presence, every few seconds per device) is not a change of the shared registry
        const shared = cols.filter((c) => !t.key.includes(c))
        this.db.exec(`CREATE TRIGGER ${ins} AFTER INSERT ON ${q(t.table)} ${quiet} BEGIN INSERT INTO registry_outbox (tbl, key, image) VALUES ('${t.table}', ${key('NEW')}, ${image('NEW')}); END`)
        this.db.exec(`CREATE TRIGGER ${upd} AFTER UPDATE OF ${shared.map(q).join(', ')} ON ${q(t.table)} ${quiet} BEGIN INSERT INTO registry_outbox (tbl, key, image) VALUES ('${t.table}', ${key('NEW')}, ${image('NEW')}); END`)
        this.db.exec(`CREATE TRIGGER ${del} AFTER DELETE ON ${q(t.table)} ${quiet} BEGIN INSERT INTO registry_outbox (tbl, key, image) VALUES ('${t.table}', ${key('OLD')}, NULL); END`)
      }
    })()
  }

  /** A node not in a cluster captures nothing: its triggers (left by an earlier cluster start) are dropped. */
  static uninstall (db: DB, tables: readonly ReplicatedTable[] = REPLICATED_TABLES): void {
    for (const t of tables) for (const n of triggerNames(t.table)) db.exec(`DROP TRIGGER IF EXISTS ${n}`)
  }

  /**
   * At a node's first start in the cluster, every row it holds goes into its outbox: the cluster's
   * registry gets what this node was provisioned with (rows every node holds already change nothing).
   */
  seedOnce (): number {
    if (this.s.state.get()!.seeded) return 0
    let n = 0
    this.db.transaction(() => {
      for (const t of this.tables) {
        const cols = this.columns.get(t.table)!
        const rows = this.db.prepare<[], { key: string, image: string }>(
          `SELECT json_array(${t.key.map(q).join(', ')}) AS key, json_object(${cols.map((c) => `'${c}', ${q(c)}`).join(', ')}) AS image FROM ${q(t.table)}`).all()
        const add = this.db.prepare('INSERT INTO registry_outbox (tbl, key, image) VALUES (?, ?, ?)')
        for (const r of rows) { add.run(t.table, r.key, r.image); n++ }
      }
      this.s.seeded.run()
    })()
    return n
  }

  /** Changes made here that the cluster's log may not have yet, oldest first. */
  pending (afterId: number, limit: number): (RowChange & { id: number })[] { return this.s.pending.all(afterId, limit) }

  /** The log has the changes up to `id`: they leave the outbox. */
  shipped (id: number): void { this.s.shipped.run(id) }

  /** The log's position up to which this node has applied it. */
  position (): number { return this.s.state.get()!.position }

  /**
   * Applies the log's changes after `position()`, in order, and moves the position, in one
   * transaction with the triggers quiet. Returns what changed, for the caches and rule indexes
   * that hold registry data: tables, residents, and devices new to this node.
   */
  apply (entries: readonly (RowChange & { pos: number })[]): AppliedChanges {
    const out: AppliedChanges = { tables: new Set<string>(), residents: new Set<string>(), newDevices: [], revokedDevices: [] }
    if (entries.length === 0) return out
    this.db.transaction(() => {
      this.s.applying.run(1)
      try {
        for (const e of entries) {
          const t = this.tables.find((x) => x.table === e.tbl)
          // a table this version does not share (a newer node's): skipped, the position moves on
          if (!t) continue
          // a change of this row made here and not shipped yet will follow in the log: it is the row's
          // newer state, which this older one must not overwrite in the meantime (nor the outbox's
          // image of it; every other node applies both, in order, and ends with the same)
          if (this.s.unshipped.get(e.tbl, e.key)) continue
          const key = JSON.parse(e.key) as unknown[]
          if (e.image === null) {
            if (this.deleteOf(t).run(...key).changes === 0) continue
          } else {
            const image = JSON.parse(e.image) as Record<string, unknown>
            // columns this node does not have (a newer node's) are left out; ones it has and the image lacks keep their default
            const cols = this.columns.get(t.table)!.filter((c) => c in image)
            const before = t.table === 'devices' ? this.existsOf(t).get(...key) as { revoked_at: number | null } | undefined : undefined
            if (this.upsertOf(t, cols).run(...cols.map((c) => image[c])).changes === 0) continue
            if (t.table === 'devices') {
              const id = String(key[0])
              if (before === undefined) out.newDevices.push(id)
              else if (before.revoked_at === null && typeof image.revoked_at === 'number') out.revokedDevices.push({ id, at: image.revoked_at })
            }
            if (typeof image.resident_id === 'string') out.residents.add(image.resident_id)
          }
          if (t.table === 'residents') out.residents.add(String(key[0]))
          out.tables.add(t.table)
        }
        this.s.position.run(entries[entries.length - 1]!.pos)
      } finally {
        this.s.applying.run(0)
      }
    })()
    return out
  }

  private upsertOf (t: ReplicatedTable, cols: string[]): { run(...a: unknown[]): { changes: number } } {
    const sig = `${t.table}|${cols.join(',')}`
    let st = this.upserts.get(sig)
    if (!st) {
      const sticky = t.sticky ?? []
      const set = cols.filter((c) => !t.key.includes(c) && (!(t.insertOnly ?? []).includes(c) || sticky.includes(c)))
        .map((c) => ({ c, to: sticky.includes(c) ? `coalesce(${q(t.table)}.${q(c)}, excluded.${q(c)})` : `excluded.${q(c)}` }))
      // only when something changes: a row applied again (a node's own change coming back, the
      // seeds of nodes provisioned alike) reports no change, and re-reads no resident's rules
      const update = set.length
        ? `UPDATE SET ${set.map((x) => `${q(x.c)} = ${x.to}`).join(', ')} WHERE ${set.map((x) => `${x.to} IS NOT ${q(t.table)}.${q(x.c)}`).join(' OR ')}`
        : 'NOTHING'
      st = this.db.prepare(`INSERT INTO ${q(t.table)} (${cols.map(q).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})
        ON CONFLICT (${t.key.map(q).join(', ')}) DO ${update}`)
      this.upserts.set(sig, st)
    }
    return st
  }

  private deleteOf (t: ReplicatedTable): { run(...a: unknown[]): { changes: number } } {
    let st = this.deletes.get(t.table)
    if (!st) this.deletes.set(t.table, st = this.db.prepare(`DELETE FROM ${q(t.table)} WHERE ${t.key.map((k) => `${q(k)} = ?`).join(' AND ')}`))
    return st
  }

  private existsOf (t: ReplicatedTable): { get(...a: unknown[]): unknown } {
    let st = this.exists.get(t.table)
    if (!st) this.exists.set(t.table, st = this.db.prepare(`SELECT ${t.sticky?.length ? t.sticky.map(q).join(', ') : '1'} FROM ${q(t.table)} WHERE ${t.key.map((k) => `${q(k)} = ?`).join(' AND ')}`))
    return st
  }
}
