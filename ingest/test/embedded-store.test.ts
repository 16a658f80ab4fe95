import { describe, expect, it } from 'vitest'
import { openDatabase } from '../../core/index.ts'
import { join } from 'node:path'
import { EmbeddedStore } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { storeContract } from './store-contract.ts'

storeContract('embedded', async () => new EmbeddedStore(join(tempDir(), 'telemetry.db')))
storeContract('embedded, writes on their own thread', async () => new EmbeddedStore(join(tempDir(), 'telemetry.db'), { writeOnThread: true }))

describe('embedded store file of an earlier version', () => {
  it('moves a rowid readings table into the keyed layout, keeping every reading', async () => {
    const file = join(tempDir(), 'telemetry.db')
    const db = openDatabase(file)
    db.exec(`CREATE TABLE readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, resident_id TEXT NOT NULL, ts INTEGER NOT NULL,
        hr REAL, sys REAL, dia REAL, activity TEXT, motion INTEGER, confidence REAL, PRIMARY KEY (device_id, seq));
      CREATE INDEX readings_resident_ts ON readings(resident_id, ts);
      INSERT INTO readings VALUES ('d1', 1, 'r1', 1000, 70, NULL, NULL, 'rest', 0, 0.9), ('d1', 2, 'r1', 2000, NULL, 120, 80, NULL, NULL, NULL);`)
    db.close()
    const store = new EmbeddedStore(file)
    expect(await store.queryRange('r1', 0, 10_000, 10)).toEqual([
      { deviceId: 'd1', residentId: 'r1', seq: 1, ts: 1000, hr: 70, activity: 'rest', motion: false, confidence: 0.9 },
      { deviceId: 'd1', residentId: 'r1', seq: 2, ts: 2000, sys: 120, dia: 80 },
    ])
    await store.write([{ deviceId: 'd1', residentId: 'r1', seq: 2, ts: 2000, sys: 120, dia: 80 }])
    expect((await store.queryRange('r1', 0, 10_000, 10)).length).toBe(2)
    await store.close()
  })
})

describe('the embedded store\'s writer thread', () => {
  it('rejects the writes in flight when its thread dies, and the next write starts a new one: nothing is lost once retried', async () => {
    const store = new EmbeddedStore(join(tempDir(), 'telemetry.db'), { writeOnThread: true })
    const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ deviceId: 'd1', residentId: 'r1', seq: from + i, ts: 1000 + from + i, hr: 60 + (i % 40) }))
    await store.write(rows(0, 100))
    const writer = (store as unknown as { writer: { worker?: { terminate(): Promise<number> } } }).writer
    // the thread is killed while a big batch is in flight: that write rejects (the drain retries it)
    const inFlight = store.write(rows(100, 50_000))
    await writer.worker!.terminate()
    await expect(inFlight).rejects.toThrow(/writer thread exited/)
    await store.write(rows(100, 50_000)) // the retry, on a new thread; re-writes are idempotent
    expect((await store.queryRange('r1', 0, Number.MAX_SAFE_INTEGER, 100_000)).length).toBe(50_100)
    await store.close()
    await expect(store.write(rows(0, 1))).rejects.toThrow(/closed/)
  })
})

describe('the writer thread outside the project directory', () => {
  it('writes when the node was started from another working directory (an eval\'d worker resolves modules from there)', async () => {
    const { spawnSync } = await import('node:child_process')
    const { writeFileSync } = await import('node:fs')
    const dir = tempDir()
    const script = join(dir, 'write.mts') // ESM, for its top-level await
    writeFileSync(script, `import { EmbeddedStore } from ${JSON.stringify(join(import.meta.dirname, '..', 'index.ts'))}
const s = new EmbeddedStore(${JSON.stringify(join(dir, 't.db'))}, { writeOnThread: true })
await s.write([{ deviceId: 'd1', residentId: 'r1', seq: 1, ts: 1000, hr: 70 }])
console.log(JSON.stringify(await s.queryRange('r1', 0, 10_000, 10)))
await s.close()
`)
    const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), script], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
    expect(r.stderr).not.toMatch(/Cannot find module/)
    expect(JSON.parse(r.stdout.trim())).toEqual([{ deviceId: 'd1', residentId: 'r1', seq: 1, ts: 1000, hr: 70 }])
  })
})
