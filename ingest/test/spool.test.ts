import { describe, expect, it } from 'vitest'
import { openDatabase, silentLogger, type StoredReading } from '../../core/index.ts'
import fc from 'fast-check'
import { Spool, Drain, EmbeddedStore, type TelemetryStore } from '../index.ts'
import { SeqSet } from '../seqset.ts'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'
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

  it('remember: seqs marked as fed elsewhere (a cluster node taking a partition over) are duplicates when they come again', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10 })
    spool.remember(1, 5)
    spool.remember(1, 3)
    expect(await spool.appendAsync(req(1, [3, 4, 5, 6]))).toEqual({ accepted: 2, duplicates: 2 })
    expect(spool.read(0, 10).map((r) => r.seq)).toEqual([4, 6])
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
    await waitFor('the drain to retry', () => store.writes > 1, 3000)
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
    await waitFor('both appends held', () => spool.pressure().full && spool.pressure().held === 2) // full: the flush ran and held them
    const heldSince = Date.now()
    // the drain tried twice more and failed: still no PUBACK (each attempt could have freed space)
    const writes = store.writes
    await waitFor('two more failed drain attempts', () => store.writes >= writes + 2, 3000)
    expect(released).toBe(0) // the spool is full and the store is down: no PUBACK
    expect(spool.pressure()).toMatchObject({ rows: 10, full: true, held: 2 })
    expect(spool.stats.backpressureEpisodes).toBe(1)
    const heldForMs = Date.now() - heldSince
    store.down = false
    await Promise.all(held)
    await drain.idle()
    expect(spool.stats.backpressureMs).toBeGreaterThanOrEqual(heldForMs)
    expect((await store.queryRange('r1', 0, 1e9, 100)).length).toBe(13)
    drain.stop()
  })

  it('bounds by bytes as well', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10, maxBytes: 1024 })
    await spool.appendAsync(req(1, Array.from({ length: 20 }, (_, i) => i)))
    let done = false
    void spool.appendAsync(req(1, [100])).then(() => { done = true })
    await waitFor('the append to be held', () => spool.pressure().full && spool.pressure().held === 1) // full: its flush ran and held it
    expect(done).toBe(false)
    expect(spool.pressure().bytes).toBeGreaterThanOrEqual(1024)
    spool.ack('store', spool.read(0, 100).at(-1)!.id)
    await waitFor('the held append to be released', () => done, 3000)
  })
})

describe('de-duplication', () => {
  it('SeqSet answers like a plain set of every seq added, whatever the order', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400 }), (seqs) => {
      const set = new SeqSet([], 1000)
      const plain = new Set<number>()
      for (const q of seqs) {
        expect(set.has(q)).toBe(plain.has(q))
        if (!set.has(q)) { set.add(q); plain.add(q) }
      }
      for (let q = 0; q <= 301; q++) expect(set.has(q)).toBe(plain.has(q))
      const back = SeqSet.fromBuffer(set.toBuffer())
      for (let q = 0; q <= 301; q++) expect(back.has(q)).toBe(plain.has(q))
    }))
  })

  it('SeqSet keeps a counting device in one interval and bounds the intervals of a device with many gaps', () => {
    const counting = new SeqSet()
    for (let q = 1e15; q < 1e15 + 10_000; q++) counting.add(q)
    expect(counting.intervals).toBe(1)
    expect(counting.has(1e15 + 9_999)).toBe(true)
    const gappy = new SeqSet([], 4)
    for (const q of [10, 20, 30, 40, 50]) gappy.add(q)
    expect(gappy.intervals).toBe(4)
    expect(gappy.has(15)).toBe(true) // the oldest gap was joined: a seq in it now counts as a duplicate
    expect(gappy.has(25)).toBe(false)
  })

  it('still refuses every seq it accepted after a restart, whether or not a checkpoint was written', async () => {
    const file = join(tempDir(), 's.db')
    let spool = new Spool(openDatabase(file), silentLogger(), { deadLetterMax: 10 })
    await spool.appendAsync(req(1, [1, 2, 3]))
    spool.ack('store', spool.read(0, 100).at(-1)!.id) // caught up: checkpoint, rows deleted
    expect(spool.stats.dedupCheckpoints).toBe(1)
    expect(spool.size()).toBe(0)
    await spool.appendAsync(req(1, [4, 5]))
    await spool.appendAsync(req(2, [7]))
    // a new Spool on the same file stands for a restart after a crash (no close, no checkpoint of 4, 5, 7)
    spool = new Spool(openDatabase(file), silentLogger(), { deadLetterMax: 10 })
    expect(await spool.appendAsync(req(1, [1, 2, 3, 4, 5, 6]))).toEqual({ accepted: 1, duplicates: 5 })
    expect(await spool.appendAsync(req(2, [7, 8]))).toEqual({ accepted: 1, duplicates: 1 })
    expect(spool.read(0, 100).map((r) => [r.deviceId, r.seq])).toEqual([['d1', 4], ['d1', 5], ['d2', 7], ['d1', 6], ['d2', 8]])
  })

  it('keeps rows until the checkpoint covers them while a consumer lags', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10, dedupCheckpointMs: 60_000 })
    spool.addConsumer('forwarder')
    await spool.appendAsync(req(1, [1, 2]))
    const first = spool.read(0, 100).at(-1)!.id
    spool.ack('forwarder', first)
    spool.ack('store', first) // both consumers at the head: checkpoint and delete
    expect(spool.size()).toBe(0)
    await spool.appendAsync(req(1, [3]))
    await spool.appendAsync(req(1, [4]))
    const [third] = spool.read(first, 1)
    spool.ack('store', spool.read(0, 100).at(-1)!.id)
    spool.ack('forwarder', third!.id) // consumers past seq 3 but not at the head, checkpoint not due: nothing deleted
    expect(spool.stats.dedupCheckpoints).toBe(1)
    expect(spool.size()).toBe(2)
  })

  it('a drain with ackEveryMs (the reading log\'s) writes its cursor at most that often, sends every row once, and leaves the cursor at the head when idle', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10, drainCursor: 'log' })
    const sent: number[] = []
    let failOn10 = true
    // the write of seq 10 fails once: the retry reads the spool from the position the sink confirmed, not from the cursor written
    const drain = new Drain(spool, {
      kind: 'log',
      write: async (rows) => { if (failOn10 && rows.some((r) => r.seq === 10)) { failOn10 = false; throw new Error('log unreachable') } for (const r of rows) sent.push(r.seq) },
    }, silentLogger(), { cursor: 'log', batch: 100, intervalMs: 0, ackEveryMs: 60_000, maxBackoffMs: 20 })
    let acks = 0
    const ack = spool.ack.bind(spool)
    spool.ack = (...a) => { acks++; ack(...a) }
    const batches: number[] = []
    drain.onDrained((rows) => batches.push(rows.length))
    drain.start()
    // 20 commits, each confirmed by the sink as its own batch
    for (let i = 1; i <= 20; i++) { await spool.appendAsync(req(1, [i])); await waitFor('the batch confirmed', () => batches.length >= i) }
    expect(sent).toEqual([...Array(20).keys()].map((i) => i + 1))
    expect(acks).toBe(1) // the first batch; the others wait for ackEveryMs
    await drain.idle()
    expect(spool.cursor('log')).toBe(spool.head())
    expect(spool.size()).toBe(0)
    drain.stop()
  })

  it('a consumer that checkpoints itself may acknowledge from inside its consume (the forwarder\'s checkpoint slice)', async () => {
    const spool = new Spool(openDatabase(':memory:'), silentLogger(), { deadLetterMax: 10 })
    const errors: unknown[] = []
    let acked = 0
    spool.attach({
      name: 'forwarder', checkpointsItself: true,
      // consume runs inside the consumers' transaction: SQLite refuses a change of synchronous there
      consume: (rows) => { try { spool.ack('forwarder', rows.at(-1)!.id); acked = rows.at(-1)!.id } catch (err) { errors.push(err) } },
    })
    await spool.appendAsync(req(1, [1, 2]))
    await waitFor('the consumer fed', () => acked > 0 || errors.length > 0)
    expect(errors).toEqual([])
    expect(spool.cursor('forwarder')).toBe(acked)
  })

  it('moves a database of the row-per-reading format to messages and seq ranges', async () => {
    const file = join(tempDir(), 's.db')
    const db = openDatabase(file)
    db.exec(`CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, resident_id TEXT NOT NULL, seq INTEGER NOT NULL,
        ts INTEGER NOT NULL, hr REAL, sys REAL, dia REAL, activity TEXT, motion INTEGER, confidence REAL);
      CREATE TABLE seen (device_key INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (device_key, seq)) WITHOUT ROWID;
      CREATE TABLE devices (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
      INSERT INTO devices VALUES (1, 'd1');
      INSERT INTO seen VALUES (1, 1), (1, 2), (1, 3);
      INSERT INTO spool (id, device_id, resident_id, seq, ts, hr, sys, dia, activity, motion, confidence) VALUES (7, 'd1', 'r1', 3, 1003, NULL, 120, 80, 'rest', 1, 0.5);`)
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    expect(spool.read(0, 10)).toEqual([{ id: 7, deviceId: 'd1', residentId: 'r1', seq: 3, ts: 1003, sys: 120, dia: 80, activity: 'rest', motion: true, confidence: 0.5 }])
    expect(await spool.appendAsync(req(1, [1, 2, 3, 4]))).toEqual({ accepted: 1, duplicates: 3 })
    expect(spool.read(7, 10).map((r) => r.id)).not.toContain(7)
  })
})

describe('cursor consumers (one contract for everything downstream of the PUBACK)', () => {
  const flushed = (spool: Spool) => spool.consumersIdle(5000)

  it('hand each consumer the committed records in order; state and cursor commit together; one that throws stops only itself and resumes from its cursor', async () => {
    const db = openDatabase(':memory:')
    db.exec('CREATE TABLE seen_by_a (seq INTEGER); CREATE TABLE seen_by_b (seq INTEGER)')
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    let breakB = true
    const committedA: number[] = []
    spool.attach({ name: 'a', consume: (rows) => { for (const r of rows) db.prepare('INSERT INTO seen_by_a VALUES (?)').run(r.seq) }, committed: () => committedA.push(1) })
    spool.attach({
      name: 'b',
      consume: (rows) => {
        for (const r of rows) db.prepare('INSERT INTO seen_by_b VALUES (?)').run(r.seq)
        if (breakB) throw new Error('bug in b') // after writing: the rows must not stay
      },
    })
    // appends (PUBACKs) go on while b fails
    for (let i = 1; i <= 5; i++) expect(await spool.appendAsync(req(1, [i]))).toEqual({ accepted: 1, duplicates: 0 })
    await waitFor('a consumed all', () => (db.prepare('SELECT count(*) AS n FROM seen_by_a').get() as { n: number }).n === 5)
    const b = await waitFor('b failing', () => spool.consumerStatus().find((c) => c.name === 'b' && c.failing))
    expect(b.failing).toMatchObject({ code: 'VM_CONSUMER_FAILED', message: 'bug in b' })
    expect((db.prepare('SELECT count(*) AS n FROM seen_by_b').get() as { n: number }).n).toBe(0) // rolled back with its cursor
    expect(spool.cursor('b')).toBe(0)
    expect(spool.size()).toBe(5) // kept for b
    breakB = false
    await waitFor('b caught up after its retry', () => spool.consumerStatus().find((c) => c.name === 'b' && !c.failing && c.lagRecords === 0), 5000)
    expect(db.prepare('SELECT seq FROM seen_by_b ORDER BY rowid').all().map((r) => (r as { seq: number }).seq)).toEqual([1, 2, 3, 4, 5])
    expect(committedA.length).toBeGreaterThan(0)
    await flushed(spool)
    spool.ack('store', spool.consumerStatus().find((c) => c.name === 'b')!.position) // the store's drain, which keeps its own loop
    expect(spool.size()).toBe(0) // every consumer is past them: they leave the spool
  })

  it('an urgent consumer (alerting) commits and sends its effects before the other consumers of the same pump do their work', async () => {
    const db = openDatabase(':memory:')
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    const order: string[] = []
    // without urgency the alert's effects would wait for the windows' work, whichever consumer is attached first
    spool.attach({ name: 'windows', consume: () => { order.push('windows consume') }, committed: () => order.push('windows committed') })
    spool.attach({ name: 'alerting', urgent: true, consume: () => { order.push('alerting consume') }, committed: () => order.push('alerting committed') })
    await spool.appendAsync(req(1, [1]))
    await flushed(spool)
    expect(order).toEqual(['alerting consume', 'alerting committed', 'windows consume', 'windows committed'])
  })

  it('an urgent consumer takes a commit\'s readings in the turn of the commit, also right after a pump: no wait for the pump\'s spacing', async () => {
    const db = openDatabase(':memory:')
    const spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    const alerting: number[] = []
    const windows: number[] = []
    spool.attach({ name: 'windows', consume: (rows) => { for (const r of rows) windows.push(r.seq) } })
    spool.attach({ name: 'alerting', urgent: true, consume: (rows) => { for (const r of rows) alerting.push(r.seq) } })
    await spool.appendAsync(req(1, [1]))
    expect(alerting).toEqual([1])
    await flushed(spool)
    // the pump just ran: the windows wait a few milliseconds for the next one, alerting does not
    await spool.appendAsync(req(1, [2]))
    expect(alerting).toEqual([1, 2])
    expect(windows).toEqual([1])
    await flushed(spool)
    expect(windows).toEqual([1, 2])
  })

  it('after a restart a consumer is fed from its cursor: nothing it committed is repeated, nothing after it is skipped', async () => {
    const dir = tempDir()
    const file = join(dir, 'spool.db')
    let db = openDatabase(file)
    db.exec('CREATE TABLE got (seq INTEGER)')
    let spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    spool.attach({ name: 'c', consume: (rows) => { for (const r of rows) db.prepare('INSERT INTO got VALUES (?)').run(r.seq) } })
    for (let i = 1; i <= 3; i++) await spool.appendAsync(req(1, [i]))
    await flushed(spool)
    spool.stopConsumers()
    // committed while nobody consumes (the process is going down)
    await spool.appendAsync(req(1, [4]))
    db.close()
    db = openDatabase(file)
    spool = new Spool(db, silentLogger(), { deadLetterMax: 10 })
    spool.attach({ name: 'c', consume: (rows) => { for (const r of rows) db.prepare('INSERT INTO got VALUES (?)').run(r.seq) } })
    await flushed(spool)
    expect(db.prepare('SELECT seq FROM got ORDER BY rowid').all().map((r) => (r as { seq: number }).seq)).toEqual([1, 2, 3, 4])
    db.close()
  })
})

describe('the cluster feed after a crash (discardAfter)', () => {
  it('drops the records no consumer had and forgets their seqs, so the log can deliver them again; what was consumed stays a duplicate, across a restart too', async () => {
    const file = join(tempDir(), 'feed.db')
    let db = openDatabase(file)
    let spool = new Spool(db, silentLogger(), { deadLetterMax: 10, drainCursor: 'alerting' })
    await spool.appendAsync(req(1, [1, 2, 3]))
    const judged = spool.head()
    spool.ack('alerting', judged)
    await spool.appendAsync(req(1, [4, 5]))
    await spool.appendAsync(req(2, [9]))
    expect(spool.discardAfter(judged)).toBe(3)
    expect(spool.head()).toBe(judged)
    expect(spool.read(judged, 100)).toEqual([])
    // the log delivers 4, 5 and 9 again: taken; 1-3 were judged: duplicates
    expect(await spool.appendAsync(req(1, [3, 4, 5]))).toEqual({ accepted: 2, duplicates: 1 })
    expect(spool.read(judged, 100).map((r) => r.seq)).toEqual([4, 5])
    spool.stopConsumers()
    db.close()
    // and after a restart the de-duplication state is the same
    db = openDatabase(file)
    spool = new Spool(db, silentLogger(), { deadLetterMax: 10, drainCursor: 'alerting' })
    expect(await spool.appendAsync(req(1, [2, 5]))).toEqual({ accepted: 0, duplicates: 2 })
    expect(await spool.appendAsync(req(2, [9]))).toEqual({ accepted: 1, duplicates: 0 })
    spool.stopConsumers()
    db.close()
  })

  it('SeqSet.remove splits, trims and drops intervals', () => {
    const s = new SeqSet([1, 10, 20, 20])
    s.remove(5); s.remove(1); s.remove(10); s.remove(20); s.remove(30)
    expect([2, 3, 4, 6, 9].every((x) => s.has(x))).toBe(true)
    expect([1, 5, 10, 20, 30].some((x) => s.has(x))).toBe(false)
    expect(s.intervals).toBe(2)
  })
})
