import { describe, expect, it } from 'vitest'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { openDatabase, silentLogger, WalCheckpointer } from '../index.ts'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'

describe('WAL checkpoints on a worker thread', () => {
  it('copies committed pages into the database file while the app connection no longer checkpoints itself', async () => {
    const file = join(tempDir(), 'c.db')
    const db = openDatabase(file)
    db.exec('CREATE TABLE t (x BLOB)')
    const cp = new WalCheckpointer([db], silentLogger(), { everyMs: 50 })
    cp.start()
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)')
    const blob = Buffer.alloc(4096, 1)
    for (let i = 0; i < 20; i++) db.transaction(() => { for (let k = 0; k < 100; k++) insert.run(blob) })() // about 8 MB through the WAL
    // the app connection does not checkpoint (autocheckpoint 0), so only the worker can move the 2000 blobs into the file.
    // (Asking with wal_checkpoint here would prove nothing: that call itself checkpoints.)
    await waitFor('the worker to move every committed page into the database file', () => statSync(file).size >= 2000 * 4096, 5000)
    await cp.stop()
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000) // the connection checkpoints itself again
    expect((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(2000)
    db.close()
  })
})

describe('the WAL under steady commits', () => {
  it('starts over instead of growing while the app commits every few milliseconds', async () => {
    const file = join(tempDir(), 'w.db')
    const db = openDatabase(file)
    db.exec('CREATE TABLE t (x BLOB)')
    const cp = new WalCheckpointer([db], silentLogger(), { everyMs: 50 })
    cp.start()
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)')
    const del = db.prepare('DELETE FROM t')
    const blob = Buffer.alloc(8000, 1)
    // a spool's life: each commit adds a record and drops the ones before, so the database stays
    // small and only the WAL can grow: 1,000 commits of at least three pages each are more than 12 MB of frames
    let maxWal = 0
    for (let i = 0; i < 1000; i++) {
      db.transaction(() => { del.run(); insert.run(blob) })()
      maxWal = Math.max(maxWal, statSync(file + '-wal').size)
      await new Promise((r) => setImmediate(r)) // the event loop turns between commits, as between group commits
    }
    await cp.stop()
    db.close()
    // without the app's last copy (WalCheckpointer.finish) the WAL never started over and held every frame
    expect(maxWal).toBeLessThan(8 * 1024 * 1024)
  })
})
