import { describe, expect, it } from 'vitest'
import { openDatabase, silentLogger, type StoredReading } from '../../core/index.ts'
import { Spool, Drain, EmbeddedStore, type TelemetryStore } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { join } from 'node:path'

const req = (deviceKey: number, seqs: number[]) => ({ deviceKey, deviceId: `d${deviceKey}`, residentId: 'r1', readings: seqs.map((seq) => ({ seq, ts: 1000 + seq, hr: 70 })) })

describe('spool', () => {
  it('commits the appends of one event-loop turn in one transaction, and drops duplicate seqs per device', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10 })
    const results = await Promise.all([spool.appendAsync(req(1, [1, 2])), spool.appendAsync(req(1, [2, 3])), spool.appendAsync(req(2, [1]))])
    expect(spool.stats.commits).toBe(1)
    expect(results).toEqual([{ accepted: 2, duplicates: 0 }, { accepted: 1, duplicates: 1 }, { accepted: 1, duplicates: 0 }])
    expect(await spool.appendAsync(req(1, [1, 2, 3]))).toEqual({ accepted: 0, duplicates: 3 })
    expect(spool.size()).toBe(4)
  })

  it('never reuses an id after the drain emptied it (the cursor would skip readings)', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10 })
    await spool.appendAsync(req(1, [1]))
    const [first] = spool.read(0, 10)
    spool.ack('store', first!.id)
    await spool.appendAsync(req(1, [2]))
    expect(spool.read(spool.cursor('store'), 10).map((r) => r.seq)).toEqual([2])
  })
})

class FlakyStore implements TelemetryStore {
  readonly kind = 'flaky'
  down = true
  writes = 0
  constructor (private readonly inner: TelemetryStore) {}
  async write (rows: readonly StoredReading[]) {
    this.writes++
    if (this.down) throw new Error('connection refused')
    return this.inner.write(rows)
  }
  queryRange (r: string, f: number, t: number, l: number) { return this.inner.queryRange(r, f, t, l) }
  aggregate (r: string, f: number, t: number, w: number) { return this.inner.aggregate(r, f, t, w) }
  async ping () {}
  async close () { await this.inner.close() }
}

describe('drain', () => {
  it('keeps readings in the spool while the store fails, then delivers each exactly once', async () => {
    const dir = tempDir()
    const spool = new Spool(openDatabase(join(dir, 's.db')), silentLogger(), { deadLetterMax: 10 })
    const store = new FlakyStore(new EmbeddedStore(join(dir, 't.db')))
    const drain = new Drain(spool, store, silentLogger(), { batch: 3, intervalMs: 5, maxBackoffMs: 20 })
    drain.start()
    await spool.appendAsync(req(1, [1, 2, 3, 4, 5, 6, 7]))
    await new Promise((r) => setTimeout(r, 100))
    expect(store.writes).toBeGreaterThan(1) // it retried
    expect(spool.size()).toBe(7)
    store.down = false
    await drain.idle()
    expect(spool.size()).toBe(0)
    expect((await store.queryRange('r1', 0, 1e9, 100)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
    drain.stop()
  })
})

describe('spool bound and back-pressure', () => {
  it('holds appends (PUBACKs) while the spool is full, releases them as the drain frees space, and drops nothing', async () => {
    const dir = tempDir()
    const spool = new Spool(openDatabase(join(dir, 's.db')), silentLogger(), { deadLetterMax: 10, maxRows: 10 })
    const store = new FlakyStore(new EmbeddedStore(join(dir, 't.db')))
    const drain = new Drain(spool, store, silentLogger(), { batch: 4, intervalMs: 5, maxBackoffMs: 20 })
    drain.start()
    await spool.appendAsync(req(1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
    let released = 0
    const held = [spool.appendAsync(req(1, [11, 12])), spool.appendAsync(req(2, [1]))].map((p) => p.then(() => { released++ }))
    await new Promise((r) => setTimeout(r, 100))
    expect(released).toBe(0) // the spool is full and the store is down: no PUBACK
    expect(spool.pressure()).toMatchObject({ rows: 10, full: true, held: 2 })
    expect(spool.stats.backpressureEpisodes).toBe(1)
    store.down = false
    await Promise.all(held)
    await drain.idle()
    expect(spool.stats.backpressureMs).toBeGreaterThan(50)
    expect((await store.queryRange('r1', 0, 1e9, 100)).length).toBe(13)
    drain.stop()
  })

  it('bounds by bytes as well', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10, maxBytes: 1024 })
    await spool.appendAsync(req(1, Array.from({ length: 20 }, (_, i) => i)))
    let done = false
    void spool.appendAsync(req(1, [100])).then(() => { done = true })
    await new Promise((r) => setTimeout(r, 30))
    expect(done).toBe(false)
    expect(spool.pressure().bytes).toBeGreaterThanOrEqual(1024)
    spool.ack('store', spool.read(0, 100).at(-1)!.id)
    await new Promise((r) => setTimeout(r, 30))
    expect(done).toBe(true)
  })
})
