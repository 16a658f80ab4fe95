import { describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { addColumns, migrate, schemaVersion, VitalmeshError, type DB, type Migration } from '../index.ts'

const STEPS: Migration[] = [
  { version: 1, why: 'notes as the constructor created them', up: 'CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)' },
  { version: 2, why: 'notes have an author', up: addColumns('notes', { author: "TEXT NOT NULL DEFAULT 'nobody'" }) },
  { version: 3, why: 'notes by author', up: 'CREATE INDEX IF NOT EXISTS notes_author ON notes(author)' },
]

function columns (db: DB, table: string): string[] {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name)
}

function rows (db: DB, component: string): { version: number, why: string }[] {
  return db.prepare<[string], { version: number, why: string }>('SELECT version, why FROM schema_migrations WHERE component = ? ORDER BY version').all(component)
}

function codeOf (fn: () => unknown): string | undefined {
  try { fn() } catch (e) { return e instanceof VitalmeshError ? e.code : `not a VitalmeshError: ${String(e)}` }
  return undefined
}

describe('migrate', () => {
  it('creates a fresh database step by step, each with its why, and does nothing the second time', () => {
    const db = new Database(':memory:')
    expect(schemaVersion(db, 'notes')).toBe(0)
    expect(migrate(db, 'notes', STEPS)).toEqual({ component: 'notes', from: 0, to: 3, applied: [1, 2, 3] })
    expect(columns(db, 'notes')).toEqual(['id', 'body', 'author'])
    expect(rows(db, 'notes')).toEqual(STEPS.map((s) => ({ version: s.version, why: s.why })))
    expect(migrate(db, 'notes', STEPS).applied).toEqual([])
    expect(schemaVersion(db, 'notes')).toBe(3)
    // components are independent
    expect(migrate(db, 'other', [{ version: 1, why: 'x', up: 'CREATE TABLE x (a)' }]).applied).toEqual([1])
    expect(schemaVersion(db, 'notes')).toBe(3)
  })

  it('upgrades a database made by the old constructor (table and added column there, no versions)', () => {
    const db = new Database(':memory:')
    // what the constructor did before migrations: CREATE TABLE IF NOT EXISTS, then ensureColumns
    db.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL); ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'nobody'")
    db.prepare('INSERT INTO notes (body, author) VALUES (?, ?)').run('kept', 'ann')
    expect(migrate(db, 'notes', STEPS).applied).toEqual([1, 2, 3])
    expect(columns(db, 'notes')).toEqual(['id', 'body', 'author'])
    expect(db.prepare('SELECT body, author FROM notes').all()).toEqual([{ body: 'kept', author: 'ann' }])
  })

  it('upgrades an older version of the old constructor (the column still missing)', () => {
    const db = new Database(':memory:')
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)')
    db.prepare('INSERT INTO notes (body) VALUES (?)').run('kept')
    migrate(db, 'notes', STEPS)
    expect(db.prepare('SELECT body, author FROM notes').all()).toEqual([{ body: 'kept', author: 'nobody' }])
  })

  it('applies only the steps after the version the database has', () => {
    const db = new Database(':memory:')
    migrate(db, 'notes', STEPS.slice(0, 1))
    expect(columns(db, 'notes')).toEqual(['id', 'body'])
    expect(migrate(db, 'notes', STEPS)).toMatchObject({ from: 1, to: 3, applied: [2, 3] })
  })

  it('refuses a downgrade: the database has a newer version than the code knows', () => {
    const db = new Database(':memory:')
    migrate(db, 'notes', STEPS)
    let err: unknown
    try { migrate(db, 'notes', STEPS.slice(0, 2)) } catch (e) { err = e }
    expect(err).toBeInstanceOf(VitalmeshError)
    expect((err as VitalmeshError).code).toBe('VM_SCHEMA_INVALID')
    expect((err as Error).message).toMatch(/version 3 of notes.*up to version 2.*newer/)
    expect(schemaVersion(db, 'notes')).toBe(3)
  })

  it('refuses versions that do not increase strictly, before touching the database', () => {
    const db = new Database(':memory:')
    expect(codeOf(() => migrate(db, 'notes', [STEPS[1]!, STEPS[0]!]))).toBe('VM_SCHEMA_INVALID')
    expect(codeOf(() => migrate(db, 'notes', [STEPS[0]!, { ...STEPS[1]!, version: 1 }]))).toBe('VM_SCHEMA_INVALID')
    expect(codeOf(() => migrate(db, 'notes', [{ ...STEPS[0]!, version: 0 }]))).toBe('VM_SCHEMA_INVALID')
    expect(codeOf(() => migrate(db, 'notes', [{ ...STEPS[0]!, version: 1.5 }]))).toBe('VM_SCHEMA_INVALID')
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'notes'").get()).toBeUndefined()
  })

  it('refuses a step slipped in below the database version, and a shipped step that was removed', () => {
    const db = new Database(':memory:')
    const three: Migration = { version: 3, why: 'notes by body', up: 'CREATE INDEX notes_body ON notes(body)' }
    migrate(db, 'notes', [STEPS[0]!, three])
    expect(codeOf(() => migrate(db, 'notes', [STEPS[0]!, STEPS[1]!, three]))).toBe('VM_SCHEMA_INVALID')
    expect(codeOf(() => migrate(db, 'notes', [STEPS[0]!, { ...three, version: 4 }]))).toBe('VM_SCHEMA_INVALID')
    expect(columns(db, 'notes')).toEqual(['id', 'body'])
  })

  it('rolls a failing step back whole: no partial table, no version row, earlier steps kept', () => {
    const db = new Database(':memory:')
    const failing: Migration[] = [
      STEPS[0]!,
      { version: 2, why: 'half done', up: 'CREATE TABLE half (a); INSERT INTO half VALUES (1); INSERT INTO nowhere VALUES (1)' },
    ]
    expect(() => migrate(db, 'notes', failing)).toThrow(/nowhere/)
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined()
    expect(rows(db, 'notes').map((r) => r.version)).toEqual([1])
    // a function step that throws after its DDL rolls back likewise
    const fn: Migration = { version: 2, why: 'throws', up: (d) => { d.exec("CREATE TABLE half (a); ALTER TABLE notes ADD COLUMN author TEXT"); throw new Error('boom') } }
    expect(() => migrate(db, 'notes', [STEPS[0]!, fn])).toThrow('boom')
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get()).toBeUndefined()
    expect(columns(db, 'notes')).toEqual(['id', 'body'])
    expect(schemaVersion(db, 'notes')).toBe(1)
    // the fixed step then applies
    expect(migrate(db, 'notes', STEPS).applied).toEqual([2, 3])
  })

  it('nests in a caller\'s transaction as a savepoint', () => {
    const db = new Database(':memory:')
    db.transaction(() => { migrate(db, 'notes', STEPS) })()
    expect(schemaVersion(db, 'notes')).toBe(3)
  })
})
