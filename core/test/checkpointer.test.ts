import { describe, expect, it } from 'vitest'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { openDatabase, silentLogger, WalCheckpointer } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'

describe('WAL checkpoints on a worker thread', () => {
  it('copies committed pages into the database file while the app connection no longer checkpoints itself', async () => {
    const file = join(tempDir(), 'c.db')
    const db = openDatabase(file)
    db.exec('CREATE TABLE t (x BLOB)')
    const cp = new WalCheckpointer([db], silentLogger(), 50)
    cp.start()
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)')
    const blob = Buffer.alloc(4096, 1)
    for (let i = 0; i < 20; i++) db.transaction(() => { for (let k = 0; k < 100; k++) insert.run(blob) })() // about 8 MB through the WAL
    const before = statSync(file).size
    await new Promise((r) => setTimeout(r, 400))
    expect(statSync(file).size).toBeGreaterThan(before + 4_000_000) // the worker moved the pages into the file
    // nothing is left for a checkpoint to do: [busy, frames in the WAL, frames checkpointed]
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number, log: number, checkpointed: number }[]
    expect(r!.log).toBe(r!.checkpointed)
    await cp.stop()
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000) // the connection checkpoints itself again
    expect((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(2000)
    db.close()
  })
})
