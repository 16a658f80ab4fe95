import type { DB } from '../core/index.ts'
import { migrate, VitalmeshError, type Migration } from '../core/index.ts'
import { RuleSetDocSchema, type RuleSetDoc } from './ruleset.ts'
import { BUILTIN_RULE_SETS, DEFAULT_ACTIVE } from './builtin.ts'

export interface RuleSetVersion { id: string, version: string, publishedBy: string, publishedAt: number, active: boolean }

/** The rule-set tables (component 'rule-sets'). Never edit a shipped step: add one. */
export const RULE_SET_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'published rule-set versions (kept forever), the active version of each, and who published or (de)activated what',
    up: `
      CREATE TABLE IF NOT EXISTS rule_sets (
        id TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL, published_by TEXT NOT NULL, published_at INTEGER NOT NULL,
        PRIMARY KEY (id, version));
      CREATE TABLE IF NOT EXISTS rule_set_active (
        id TEXT PRIMARY KEY, version TEXT NOT NULL, activated_by TEXT NOT NULL, activated_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS rule_set_events (
        id TEXT NOT NULL, version TEXT NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL, at INTEGER NOT NULL);`,
  },
]

/** Every published version is kept; at most one version of each rule set is active. */
export class RuleSetStore {
  private readonly s
  private listeners: (() => void)[] = []

  constructor (private readonly db: DB) {
    migrate(db, 'rule-sets', RULE_SET_MIGRATIONS)
    this.s = {
      insert: db.prepare('INSERT OR IGNORE INTO rule_sets (id, version, doc, published_by, published_at) VALUES (?, ?, ?, ?, ?)'),
      get: db.prepare<[string, string], { doc: string }>('SELECT doc FROM rule_sets WHERE id = ? AND version = ?'),
      list: db.prepare<[], { id: string, version: string, published_by: string, published_at: number, active: number }>(
        'SELECT r.id, r.version, r.published_by, r.published_at, (a.version IS NOT NULL) AS active FROM rule_sets r LEFT JOIN rule_set_active a ON a.id = r.id AND a.version = r.version ORDER BY r.id, r.published_at'),
      active: db.prepare<[], { doc: string }>('SELECT r.doc FROM rule_set_active a JOIN rule_sets r ON r.id = a.id AND r.version = a.version ORDER BY a.id'),
      activate: db.prepare('INSERT INTO rule_set_active (id, version, activated_by, activated_at) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET version = excluded.version, activated_by = excluded.activated_by, activated_at = excluded.activated_at'),
      deactivate: db.prepare('DELETE FROM rule_set_active WHERE id = ?'),
      event: db.prepare('INSERT INTO rule_set_events (id, version, event, actor, at) VALUES (?, ?, ?, ?, ?)'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM rule_set_active'),
      anyEvent: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM rule_set_events'),
    }
    const now = Date.now()
    const fresh = this.s.anyEvent.get()!.n === 0
    for (const doc of BUILTIN_RULE_SETS) {
      if (this.s.insert.run(doc.id, doc.version, JSON.stringify(doc), 'builtin', now).changes) this.s.event.run(doc.id, doc.version, 'published', 'builtin', now)
    }
    if (fresh) for (const id of DEFAULT_ACTIVE) this.activate(id, BUILTIN_RULE_SETS.find((d) => d.id === id)!.version, 'builtin')
  }

  onChange (f: () => void): void { this.listeners.push(f) }

  publish (input: unknown, publishedBy: string): RuleSetDoc {
    const parsed = RuleSetDocSchema.safeParse(input)
    if (!parsed.success) {
      throw new VitalmeshError('VM_INVALID_RULE_SET', parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || 'document'}: ${i.message}`).join('; '))
    }
    const doc = parsed.data
    const now = Date.now()
    if (this.s.insert.run(doc.id, doc.version, JSON.stringify(doc), publishedBy, now).changes === 0) {
      throw new VitalmeshError('VM_CONFLICT', `rule set ${doc.id} version ${doc.version} is already published; publish a new version`)
    }
    this.s.event.run(doc.id, doc.version, 'published', publishedBy, now)
    return doc
  }

  get (id: string, version: string): RuleSetDoc | undefined {
    const row = this.s.get.get(id, version)
    return row && (JSON.parse(row.doc) as RuleSetDoc)
  }

  list (): RuleSetVersion[] {
    return this.s.list.all().map((r) => ({ id: r.id, version: r.version, publishedBy: r.published_by, publishedAt: r.published_at, active: r.active === 1 }))
  }

  active (): RuleSetDoc[] {
    return this.s.active.all().map((r) => JSON.parse(r.doc) as RuleSetDoc)
  }

  activate (id: string, version: string, actor: string): void {
    if (!this.get(id, version)) throw new VitalmeshError('VM_NOT_FOUND', `rule set ${id} version ${version} is not published`)
    const now = Date.now()
    this.db.transaction(() => {
      this.s.activate.run(id, version, actor, now)
      this.s.event.run(id, version, 'activated', actor, now)
    })()
    for (const f of this.listeners) f()
  }

  deactivate (id: string, actor: string): void {
    const now = Date.now()
    const changes = this.db.transaction(() => {
      const c = this.s.deactivate.run(id).changes
      if (c) this.s.event.run(id, '', 'deactivated', actor, now)
      return c
    })()
    if (!changes) throw new VitalmeshError('VM_NOT_FOUND', `rule set ${id} is not active`)
    for (const f of this.listeners) f()
  }
}
