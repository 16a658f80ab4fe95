import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { connect, type NatsConnection } from 'nats'
import { startNatsCluster, type NatsCluster } from '../../test/helpers/nats.ts'
import { ROOT, tempDir, waitFor } from '../../test/helpers/proc.ts'
import type { StoredReading } from '../../core/index.ts'
import { JetStreamLog } from '../log.ts'
import { MemoryCheckpointStore, SqliteCheckpointStore, StaleEpochError } from '../checkpoints.ts'
import { ConsumerRunner, PartitionOwner, fairShare, leaseBucket, leaseKey, nodeKey, plan, type Lease } from '../partitions.ts'
import { recorder, type SeqState } from './fixtures/partition-node.ts'

describe('plan (pure)', () => {
  const base = { node: 'a', partitions: 8, now: 1000, held: new Set<number>() }
  const none: (Lease | undefined)[] = new Array(8).fill(undefined)

  it('claims up to a fair share, ceil(N / live nodes)', () => {
    expect(fairShare(8, 3)).toBe(3)
    expect(plan({ ...base, leases: none, liveNodes: [] }).claim).toHaveLength(8)
    expect(plan({ ...base, leases: none, liveNodes: ['a', 'b'] }).claim).toHaveLength(4)
    expect(plan({ ...base, leases: none, liveNodes: ['b', 'c'] }).claim).toHaveLength(3)
  })

  it('claims only free or expired partitions, never a live lease', () => {
    const leases = none.map((_, p): Lease | undefined => p < 4 ? { node: 'b', expiresAt: 2000 } : p < 6 ? { node: 'c', expiresAt: 999 } : undefined)
    const { claim } = plan({ ...base, leases, liveNodes: ['b'] })
    expect(claim.sort()).toEqual([4, 5, 6, 7])
  })

  it('sheds what is above its share when a node joins, keeping the partitions it prefers', () => {
    const held = new Set([0, 1, 2, 3, 4, 5, 6, 7])
    const r = plan({ ...base, held, leases: none, liveNodes: ['a', 'b'] })
    expect(r.release).toHaveLength(4)
    expect(r.claim).toEqual([])
    // and two nodes, each preferring differently, claim mostly different partitions
    const a = plan({ ...base, node: 'a', leases: none, liveNodes: ['a', 'b'] }).claim
    const b = plan({ ...base, node: 'b', leases: none, liveNodes: ['a', 'b'] }).claim
    expect(a.filter((p) => b.includes(p)).length).toBeLessThan(4)
  })
})

describe('checkpoint stores fence older epochs', () => {
  for (const [name, make] of [['memory', () => new MemoryCheckpointStore<number>()], ['sqlite', () => new SqliteCheckpointStore<number>(join(tempDir('vm-cp-'), 'cp.db'))]] as const) {
    it(`${name}: a node that lost its lease cannot commit over the new owner`, async () => {
      const s = make()
      expect(await s.open('c', 3, 10)).toBeUndefined()
      await s.commit({ consumer: 'c', partition: 3, epoch: 10, seq: 5, state: 42 })
      // the new owner (a higher lease revision) claims the partition and resumes from seq 5
      expect(await s.open('c', 3, 17)).toEqual({ seq: 5, state: 42 })
      await expect(s.commit({ consumer: 'c', partition: 3, epoch: 10, seq: 9, state: 43 })).rejects.toBeInstanceOf(StaleEpochError)
      await expect(s.open('c', 3, 10)).rejects.toBeInstanceOf(StaleEpochError)
      await s.commit({ consumer: 'c', partition: 3, epoch: 17, seq: 9, state: 44 })
      expect(await s.open('c', 3, 18)).toEqual({ seq: 9, state: 44 })
      // a position never moves back
      await expect(s.commit({ consumer: 'c', partition: 3, epoch: 18, seq: 8, state: 0 })).rejects.toThrow(/move back/)
    })
  }
})

const reading = (residentId: string, deviceId: string, seq: number): StoredReading => ({ residentId, deviceId, seq, ts: 1_700_000_000_000 + seq * 1000, hr: 70 })

const last = <T>(xs: T[], f: (x: T) => boolean): T => { const x = [...xs].reverse().find(f); if (x === undefined) throw new Error('no such event'); return x }

interface NodeEvent { t: number, ev: string, p?: number, epoch?: number, fromSeq?: number, seq?: number, why?: string }

/** A partition node as a child process (fixtures/partition-node.ts), with the events it reported. */
function startNode (id: string, env: Record<string, string>): { proc: ChildProcess, events: NodeEvent[], owned: () => Set<number>, output: () => string } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'cluster/test/fixtures/partition-node.ts')], {
    cwd: ROOT, env: { ...process.env, ...env, NODE_ID: id }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  const events: NodeEvent[] = []
  let buf = ''; let err = ''
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    const lines = buf.split('\n'); buf = lines.pop()!
    for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as NodeEvent)
  })
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-5000) })
  const owned = (): Set<number> => {
    const s = new Set<number>()
    for (const e of events) { if (e.ev === 'acquire') s.add(e.p!); if (e.ev === 'release') s.delete(e.p!) }
    return s
  }
  return { proc, events, owned, output: () => err }
}

describe('partition ownership on a 3-node nats-server cluster', () => {
  let cluster: NatsCluster
  let nc: NatsConnection
  const children: ChildProcess[] = []

  beforeAll(async () => {
    cluster = await startNatsCluster()
    nc = await connect({ servers: cluster.servers })
  })
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await nc?.close()
    await cluster?.stop()
  })

  it('two owners split the partitions; one that stops hands its partitions over at once', async () => {
    const js = nc.jetstream()
    const kv = await leaseBucket(js, { bucket: 'split_test', replicas: 3 })
    const mk = (node: string): Promise<PartitionOwner> => PartitionOwner.start({ kv, node, partitions: 8, onAcquire: () => {}, onRelease: () => {} })
    const a = await mk('a')
    expect(a.owned()).toHaveLength(8) // alone: everything
    const b = await mk('b')
    // a sees b's heartbeat, sheds to its share; b claims what a released
    await waitFor('a 4/4 split', () => a.owned().length === 4 && b.owned().length === 4, 10_000, 20)
    expect([...a.owned(), ...b.owned()].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    const t0 = Date.now()
    await b.stop()
    await waitFor('a owns all again', () => a.owned().length === 8, 10_000, 20)
    console.log(`graceful handover of 4 partitions: ${Date.now() - t0} ms`)
    await a.stop()
  })

  it('an owner whose lease was taken over stops processing that partition at its next renewal', async () => {
    const kv = await leaseBucket(nc.jetstream(), { bucket: 'lost_test', replicas: 3 })
    const released: { p: number, why: string }[] = []
    const a = await PartitionOwner.start({ kv, node: 'a', partitions: 2, onAcquire: () => {}, onRelease: (p, why) => { released.push({ p, why }) } })
    expect(a.owned()).toEqual([0, 1])
    // as if a's renewals had stalled past expiry and another node had claimed partition 1
    await kv.put(leaseKey(1), JSON.stringify({ node: 'z', expiresAt: Date.now() + 60_000 }))
    await waitFor('a releases partition 1', () => released.length > 0, 5_000, 20)
    expect(released).toEqual([{ p: 1, why: 'lost' }])
    expect(a.owned()).toEqual([0])
    await a.stop()
    // a lost lease is not deleted on stop: it belongs to z
    expect((await kv.get(leaseKey(1)))?.json<Lease>().node).toBe('z')
  })

  it('kill -9 of an owner under load: the other takes its partitions within 10 s and resumes from the checkpoint, nothing lost or repeated', async () => {
    const partitions = 8
    const log = await JetStreamLog.open(nc, { partitions, replicas: 3 })
    const checkpoints = join(tempDir('vm-failover-'), 'checkpoints.db')
    const env = { NATS_SERVERS: cluster.servers.join(','), PARTITIONS: String(partitions), CHECKPOINTS: checkpoints, REPLICAS: '3' }
    const a = startNode('node-a', env); children.push(a.proc)
    await waitFor('node-a ready', () => a.events.some((e) => e.ev === 'ready'), 20_000, 20)
    const b = startNode('node-b', env); children.push(b.proc)
    await waitFor('a 4/4 split between the processes', () => a.owned().size === 4 && b.owned().size === 4, 20_000, 20)

    // load: 40 residents, a watch each, 60 batches of 40 readings, bounded
    let sent = 0
    const load = (async () => {
      for (let round = 0; round < 60; round++) {
        await log.append(Array.from({ length: 40 }, (_, r) => reading(`res-${r}`, `watch-${r}`, round)))
        sent += 40
      }
    })()
    await waitFor('a third of the load acknowledged', () => sent >= 800, 30_000, 5)
    // the kill must find checkpoints to resume from: on a loaded machine node-a may not have committed yet
    await waitFor('node-a committed some of its partitions', () => a.events.some((e) => e.ev === 'commit' && (e.seq ?? 0) > 0 && a.owned().has(e.p!)), 30_000, 5)
    const aHeld = [...a.owned()]
    const aCommitted = new Map<number, number>()
    for (const e of a.events) if (e.ev === 'commit') aCommitted.set(e.p!, e.seq!)
    const killedAt = Date.now()
    a.proc.kill('SIGKILL')
    await waitFor('node-b owns every partition', () => b.owned().size === partitions, 15_000, 20)
    const takeover = Math.max(...aHeld.map((p) => last(b.events, (e) => e.ev === 'acquire' && e.p === p).t)) - killedAt
    console.log(`node-a killed: node-b acquired its ${aHeld.length} partitions after ${takeover} ms`)
    expect(takeover).toBeLessThan(10_000)
    // it resumed each from node-a's checkpoint (at least what node-a had reported committing);
    // a partition is started once its checkpoint was read, after it was acquired: wait for that
    await waitFor('node-b started every partition node-a held', () => aHeld.every((p) => b.events.some((e) => e.ev === 'start' && e.p === p && e.t >= killedAt)), 15_000, 20)
    for (const p of aHeld) {
      const start = last(b.events, (e) => e.ev === 'start' && e.p === p && e.t >= killedAt)
      expect(start.fromSeq).toBeGreaterThanOrEqual(aCommitted.get(p) ?? 0)
    }
    expect(aHeld.some((p) => (aCommitted.get(p) ?? 0) > 0)).toBe(true)
    await load

    // every partition's checkpoint reaches the partition's end, and holds each entry exactly once, in order
    const ends = await Promise.all(Array.from({ length: partitions }, async (_, p) => (await log.read(p)).map((e) => e.streamSeq)))
    await waitFor('node-b caught up with every partition', () => ends.every((seqs, p) => seqs.length === 0 || b.events.some((e) => e.ev === 'commit' && e.p === p && e.seq === seqs[seqs.length - 1])), 20_000, 20)
    const store = new SqliteCheckpointStore<SeqState>(checkpoints)
    const cps = store.all(recorder.name)
    store.close()
    expect(ends.flat()).toHaveLength(2400)
    for (let p = 0; p < partitions; p++) {
      const cp = cps.find((c) => c.partition === p)
      expect(cp?.state.seqs ?? [], `partition ${p}`).toEqual(ends[p])
      expect(cp?.state.outOfOrder ?? 0).toBe(0)
    }

    // and a node that stops cleanly releases its leases and heartbeat
    b.proc.kill('SIGTERM')
    await waitFor('node-b stopped', () => b.events.some((e) => e.ev === 'stopped'), 15_000, 20)
    const kv = await leaseBucket(nc.jetstream(), { replicas: 3 })
    for (let p = 0; p < partitions; p++) expect((await kv.get(leaseKey(p)))?.operation, `lease ${p}`).toBe('DEL')
    expect((await kv.get(nodeKey('node-b')))?.operation).toBe('DEL')
  })

  it('a consumer that throws stops only its partition and is retried from its checkpoint', async () => {
    const log = await JetStreamLog.open(nc, { partitions: 8, replicas: 3 })
    const store = new MemoryCheckpointStore<SeqState>()
    let failOnce = true
    const commits: { p: number, seq: number }[] = []
    const runner = new ConsumerRunner<SeqState>({
      log, store, onCommit: (cp) => commits.push({ p: cp.partition, seq: cp.seq }),
      consumer: { ...recorder, name: 'flaky', consume: (s, es) => { if (failOnce && es[0]!.partition === 1) { failOnce = false; throw new Error('boom') } return recorder.consume(s, es) } },
    })
    const inPartition = (p: number): string => [...Array(100).keys()].map((i) => `r${i}`).find((r) => log.partitionOf(r) === p)!
    runner.start(1, 1)
    runner.start(2, 1)
    const { seqs: [end1, end2] } = await log.append([reading(inPartition(1), 'flaky-1', 1), reading(inPartition(2), 'flaky-2', 1)])
    await waitFor('both partitions consumed to their end', () => commits.some((c) => c.p === 1 && c.seq === end1) && commits.some((c) => c.p === 2 && c.seq === end2), 10_000, 20)
    // partition 2 went on while partition 1 waited to retry
    expect(commits.findIndex((c) => c.p === 2 && c.seq === end2)).toBeLessThan(commits.findIndex((c) => c.p === 1))
    await runner.stopAll()
    const s1 = await store.open('flaky', 1, 2)
    expect(s1!.state.seqs).toEqual((await log.read(1)).map((e) => e.streamSeq))
  })

  it('with lingerMs, entries trickling in commit together, and a commit the timer makes that fails is retried from the checkpoint', async () => {
    const log = await JetStreamLog.open(nc, { partitions: 8, replicas: 3 })
    const store = new MemoryCheckpointStore<SeqState>()
    const commits: number[] = []
    let failOnce = true
    const runner = new ConsumerRunner<SeqState>({
      log, store, lingerMs: 150, onCommit: (cp) => commits.push(cp.seq),
      consumer: { ...recorder, name: 'linger', consume: (s, es) => { if (failOnce && es.some((e) => e.reading.seq >= 15)) { failOnce = false; throw new Error('boom') } return recorder.consume(s, es) } },
    })
    const r = [...Array(100).keys()].map((i) => `r${i}`).find((x) => log.partitionOf(x) === 3)!
    runner.start(3, 1)
    let last = 0
    // the server has delivered stream seq `seq` to the runner's consumer of partition 3
    const delivered = async (seq: number): Promise<boolean> => {
      for await (const ci of log.jsm.consumers.list(log.stream)) if (ci.config.filter_subject === log.subject(3) && ci.delivered.stream_seq >= seq) return true
      return false
    }
    // 20 entries, each appended once the one before was delivered: each finds the consumer caught up
    for (let i = 1; i <= 20; i++) {
      last = (await log.append([reading(r, 'linger-1', i)])).seqs[0]!
      await waitFor(`entry ${i} delivered`, () => delivered(last), 10_000, 2)
    }
    await waitFor('the partition consumed to its end', () => commits.includes(last), 15_000, 20)
    await runner.stopAll()
    // a handful of commits, not one per entry (the one that failed was retried with back-off from the checkpoint)
    expect(commits.length).toBeLessThanOrEqual(5)
    const s = await store.open('linger', 3, 2)
    expect(s!.state.seqs).toEqual((await log.read(3)).map((e) => e.streamSeq))
  })
})
