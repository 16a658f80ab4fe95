import { describe, expect, it } from 'vitest'
import { atomically, openDatabase } from '../index.ts'

describe('atomically', () => {
  it('commits what the function wrote, rolls all of it back when it throws, and nests as a savepoint', () => {
    const db = openDatabase(':memory:')
    db.exec('CREATE TABLE t (v INTEGER)')
    const ins = db.prepare('INSERT INTO t VALUES (?)')
    const values = () => db.prepare('SELECT v FROM t ORDER BY v').all().map((r) => (r as { v: number }).v)
    expect(atomically(db, () => { ins.run(1); return 'done' })).toBe('done')
    expect(() => atomically(db, () => { ins.run(2); throw new Error('boom') })).toThrow('boom')
    expect(values()).toEqual([1])
    // an inner failure that the outer function catches undoes only the inner writes
    atomically(db, () => {
      ins.run(3)
      try { atomically(db, () => { ins.run(4); throw new Error('inner') }) } catch { /* handled */ }
      ins.run(5)
    })
    expect(values()).toEqual([1, 3, 5])
    // one connection's transactions never run on another's
    const other = openDatabase(':memory:')
    other.exec('CREATE TABLE t (v INTEGER)')
    atomically(other, () => other.prepare('INSERT INTO t VALUES (9)').run())
    expect(values()).toEqual([1, 3, 5])
    expect(other.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 1 })
    expect(db.inTransaction).toBe(false)
  })
})
