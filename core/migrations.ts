import type { DB } from './sqlite.ts'
import { VitalmeshError } from './errors.ts'

/**
 * One change of a component's schema. `version`s of a component increase strictly; a step
 * that has shipped is never edited or removed (databases out there have run it): a change
 * is a new step after the last one, with a `why` that says what it is for.
 */
export interface Migration {
  version: number
  why: string
  /** SQL (may hold several statements) or a function for what SQL alone cannot say */
  up: string | ((db: DB) => void)
}

export interface MigrateResult { component: string, from: number, to: number, applied: number[] }

function invalid (message: string): VitalmeshError {
  return new VitalmeshError('VM_SCHEMA_INVALID', message)
}

/**
 * Brings a component's tables to the newest version its code knows: each pending step runs
 * in a transaction together with its row in `schema_migrations` (a savepoint when the caller
 * is in a transaction already), so a step that throws leaves neither its tables nor its
 * version behind. Refuses (VM_SCHEMA_INVALID) a database written by a newer version of the
 * component (a downgrade), steps whose versions do not increase strictly, and a database that
 * ran a step the code no longer has.
 */
export function migrate (db: DB, component: string, steps: readonly Migration[]): MigrateResult {
  for (let i = 0; i < steps.length; i++) {
    const v = steps[i]!.version
    if (!Number.isInteger(v) || v < 1) throw invalid(`migrations of ${component}: version ${String(v)} is not a positive integer`)
    if (i > 0 && v <= steps[i - 1]!.version) throw invalid(`migrations of ${component}: versions must increase strictly (${steps[i - 1]!.version} is followed by ${v})`)
  }
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL, version INTEGER NOT NULL, why TEXT NOT NULL, applied_at INTEGER NOT NULL,
    PRIMARY KEY (component, version))`)
  const done = new Set(db.prepare<[string], { version: number }>('SELECT version FROM schema_migrations WHERE component = ?').all(component).map((r) => r.version))
  const from = done.size ? Math.max(...done) : 0
  const known = steps.length ? steps[steps.length - 1]!.version : 0
  if (from > known) {
    throw invalid(`the database holds version ${from} of ${component}'s tables, this code knows up to version ${known}: it was written by a newer vitalmesh (a downgrade is not supported; run the newer version or restore a backup)`)
  }
  const versions = new Set(steps.map((s) => s.version))
  for (const v of done) if (!versions.has(v)) throw invalid(`the database ran migration ${v} of ${component}, which this code does not have (a shipped step was removed or renumbered)`)
  for (const s of steps) {
    if (s.version < from && !done.has(s.version)) throw invalid(`migration ${s.version} of ${component} is older than the database's version ${from} but was never run there: add new steps after the last one`)
  }
  const record = db.prepare('INSERT INTO schema_migrations (component, version, why, applied_at) VALUES (?, ?, ?, ?)')
  const ran = db.prepare<[string, number], { n: number }>('SELECT count(*) AS n FROM schema_migrations WHERE component = ? AND version = ?')
  const applied: number[] = []
  for (const s of steps) {
    if (done.has(s.version)) continue
    // IMMEDIATE: another process on the same file (the CLI next to the server) waits, then
    // finds the step done instead of running it twice
    const ok = db.transaction(() => {
      if (ran.get(component, s.version)!.n > 0) return false
      if (typeof s.up === 'string') db.exec(s.up)
      else s.up(db)
      record.run(component, s.version, s.why, Date.now())
      return true
    }).immediate()
    if (ok) applied.push(s.version)
  }
  return { component, from, to: Math.max(from, known), applied }
}

/** The component's newest applied version (0: none). */
export function schemaVersion (db: DB, component: string): number {
  const t = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get()!.n
  if (t === 0) return 0
  return db.prepare<[string], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations WHERE component = ?').get(component)!.v ?? 0
}

/**
 * A step body that adds columns a table lacks: idempotent, so it is also right on a database
 * where an earlier version added them already (the `ensureColumns` of before migrations).
 */
export function addColumns (table: string, columns: Record<string, string>): (db: DB) => void {
  return (db) => {
    const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name))
    for (const [name, type] of Object.entries(columns)) {
      if (!have.has(name)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${name} ${type}`)
    }
  }
}
