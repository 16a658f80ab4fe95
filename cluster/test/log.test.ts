import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type NatsConnection } from 'nats'
import { startNatsCluster, type NatsCluster } from '../../test/helpers/nats.ts'
import { waitFor } from '../../test/helpers/proc.ts'
import type { StoredReading } from '../../core/index.ts'
import { JetStreamLog, MESSAGE_MAX, batchId, fnv1a, messageId, messages, partitionOf, streamConfig, streamProblems, whileClusterForms } from '../log.ts'

const reading = (residentId: string, deviceId: string, seq: number): StoredReading => ({ residentId, deviceId, seq, ts: 1_700_000_000_000 + seq * 1000, hr: 60 + (seq % 40) })

const batchIdOf = (rs: StoredReading[]): string => rs.length === 1 ? messageId(rs[0]!) : batchId(rs)

describe('partitionOf (pure)', () => {
  it('is FNV-1a of the UTF-8 bytes: the published test vectors, so every node and version agrees', () => {
    expect(fnv1a('')).toBe(0x811c9dc5)
    expect(fnv1a('a')).toBe(0xe40c292c)
    expect(fnv1a('foobar')).toBe(0xbf9cf968)
  })

  it('spreads residents over every partition and keeps each resident in one', () => {
    const counts = new Array<number>(16).fill(0)
    for (let i = 0; i < 1600; i++) counts[partitionOf(`res-${i}`, 16)]!++
    expect(Math.min(...counts)).toBeGreaterThan(60) // 100 expected each
    expect(partitionOf('res-42', 16)).toBe(partitionOf('res-42', 16))
    expect(messageId({ deviceId: 'cuff-1', seq: 7 })).toBe('cuff-1:7')
  })

  it('puts the readings of one commit and partition in one message, however the batch around them was cut', () => {
    const commit7 = [reading('res-a', 'phone-a', 1), reading('res-b', 'cuff-b', 1), reading('res-a', 'phone-a', 2)].map((r) => ({ ...r, id: 7 }))
    const commit8 = [reading('res-a', 'phone-a', 3)].map((r) => ({ ...r, id: 8 }))
    const p = (r: StoredReading): number => partitionOf(r.residentId, 16)
    const once = messages([...commit7, ...commit8], p)
    expect(once.map((m) => m.readings.map((r) => `${r.deviceId}:${r.seq}`))).toEqual(partitionOf('res-a', 16) === partitionOf('res-b', 16)
      ? [['phone-a:1', 'cuff-b:1', 'phone-a:2'], ['phone-a:3']]
      : [['phone-a:1', 'phone-a:2'], ['cuff-b:1'], ['phone-a:3']])
    expect(once.flatMap((m) => m.at).sort()).toEqual([0, 1, 2, 3])
    // the drain sends commit 7 again in a batch of its own: the same messages, so the same ids
    const again = messages(commit7, p)
    expect(again.map((m) => batchIdOf(m.readings))).toEqual(once.slice(0, again.length).map((m) => batchIdOf(m.readings)))
    // a commit larger than a message holds is cut the same way each time
    const big = Array.from({ length: MESSAGE_MAX + 5 }, (_, i) => ({ ...reading('res-a', 'phone-a', 100 + i), id: 9 }))
    expect(messages(big, p).map((m) => m.readings.length)).toEqual([MESSAGE_MAX, 5])
    // different readings, different ids (JetStream would drop a message whose id it has seen)
    expect(batchId(commit7)).not.toBe(batchId([...commit7].reverse().slice(1)))
  })

  it('refuses a stream made with another partition count, subjects or replica count', () => {
    const base = { stream: 'S', subjectPrefix: 'vm.readings', partitions: 16, replicas: 3, duplicateWindowMs: 120_000, maxAgeMs: 1000 }
    const want = streamConfig(base)
    expect(streamProblems(want, want)).toEqual([])
    expect(streamProblems(streamConfig({ ...base, partitions: 8 }), want)).toEqual(['it was created with 8 partitions, this node is configured for 16'])
    expect(streamProblems(streamConfig({ ...base, replicas: 1 }), want)).toEqual(['it has 1 replicas, this node is configured for 3'])
    expect(streamProblems({ ...want, subjects: ['other.*'] }, want)).toHaveLength(1)
  })
})

describe('whileClusterForms', () => {
  it('retries while the meta leader cannot place replicas yet, and throws anything else at once', async () => {
    let calls = 0
    const placed = await whileClusterForms(async () => {
      if (++calls < 3) throw new Error('no suitable peers for placement')
      return 'placed'
    })
    expect([placed, calls]).toEqual(['placed', 3])
    // a JetStream API request nobody answered in time (CI run 11: a loaded host, the stream's add)
    let timeouts = 0
    expect(await whileClusterForms(async () => { if (++timeouts < 2) throw new Error('TIMEOUT'); return 'answered' })).toBe('answered')
    let other = 0
    await expect(whileClusterForms(async () => { other++; throw new Error('stream name already in use') })).rejects.toThrow(/already in use/)
    expect(other).toBe(1)
    await expect(whileClusterForms(async () => { throw new Error('no suitable peers for placement') }, 150)).rejects.toThrow(/no suitable peers/)
  })
})

describe('JetStreamLog on a 3-node nats-server cluster', () => {
  let cluster: NatsCluster
  let nc: NatsConnection
  let log: JetStreamLog

  beforeAll(async () => {
    cluster = await startNatsCluster()
    // every server: the client moves to another when the one it uses is killed
    nc = await connect({ servers: cluster.servers, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
    log = await JetStreamLog.open(nc, { partitions: 8, replicas: 3 })
  })
  afterAll(async () => {
    await nc?.close()
    await cluster?.stop()
  })

  it('acknowledges an append and stores a retried one once (Nats-Msg-Id = deviceId:seq)', async () => {
    const batch = [reading('res-a', 'watch-a', 1), reading('res-a', 'watch-a', 2), reading('res-b', 'cuff-b', 1)]
    const first = await log.append(batch)
    expect(first).toMatchObject({ accepted: 3, duplicates: 0 })
    // the PUBACK was lost: the device sends the batch again, with one new reading
    const retry = await log.append([...batch, reading('res-a', 'watch-a', 3)])
    expect(retry).toMatchObject({ accepted: 1, duplicates: 3 })
    expect(retry.seqs.slice(0, 3)).toEqual(first.seqs) // the first copies' positions
    const entries = (await log.read(log.partitionOf('res-a'))).filter((e) => e.reading.deviceId === 'watch-a')
    expect(entries.map((e) => e.reading.seq)).toEqual([1, 2, 3])
  })

  it('a commit\'s readings of a partition are one message: its entries share the stream sequence, a resend of the commit stores nothing twice, a copy in another commit is stored again', async () => {
    const p = log.partitionOf('res-phone')
    const before = (await log.counts())[p]!
    // a phone syncing 30 readings of its cuff: one commit of the ingest spool
    const commit = Array.from({ length: 30 }, (_, i) => ({ ...reading('res-phone', 'phone-1', i + 1), id: 41 }))
    const first = await log.append(commit)
    expect(first).toMatchObject({ accepted: 30, duplicates: 0 })
    expect(new Set(first.seqs).size).toBe(1)
    expect((await log.counts())[p]! - before).toBe(1)
    // the drain sends it again (its acknowledgement timed out), this time after a reading of the next commit
    const retry = await log.append([...commit, { ...reading('res-phone', 'phone-1', 31), id: 42 }])
    expect(retry).toMatchObject({ accepted: 1, duplicates: 30 })
    // the phone, without its PUBACK, resent its first two readings to another node, where they were committed with another reading
    const elsewhere = await log.append([{ ...reading('res-phone', 'phone-1', 1), id: 5 }, { ...reading('res-phone', 'phone-1', 2), id: 5 }, { ...reading('res-phone', 'other-cuff', 1), id: 5 }])
    expect(elsewhere).toMatchObject({ accepted: 3, duplicates: 0 })
    const entries = (await log.read(p)).filter((e) => e.reading.residentId === 'res-phone')
    expect(entries.map((e) => `${e.reading.deviceId}:${e.reading.seq}`)).toEqual([
      ...commit.map((r) => `phone-1:${r.seq}`), 'phone-1:31', 'phone-1:1', 'phone-1:2', 'other-cuff:1',
    ])
    expect(entries.slice(0, 30).every((e) => e.streamSeq === first.seqs[0])).toBe(true)
    // the reading as it was sent, without the node's record id
    expect(entries[0]!.reading).toEqual(reading('res-phone', 'phone-1', 1))
  })

  it('keeps every reading of a resident in its partition, in order, whichever device and publish sent it', async () => {
    const residents = ['res-1', 'res-2', 'res-3', 'res-4', 'res-5']
    // a cuff and a watch per resident, interleaved, in several appends as several connections would send them
    for (let round = 0; round < 5; round++) {
      const batch: StoredReading[] = []
      for (const r of residents) for (let k = 0; k < 10; k++) batch.push(reading(r, `${r}-${k % 2 ? 'cuff' : 'watch'}`, 100 + round * 10 + k))
      await log.append(batch)
    }
    for (const r of residents) {
      const p = log.partitionOf(r)
      const all = await log.read(p)
      const mine = all.filter((e) => e.reading.residentId === r)
      expect(mine).toHaveLength(50)
      expect(all.every((e) => partitionOf(e.reading.residentId, 8) === p)).toBe(true)
      expect(mine.map((e) => e.reading.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 100 + i))
      // stream sequences only grow within the partition
      expect(all.map((e) => e.streamSeq)).toEqual([...all.map((e) => e.streamSeq)].sort((a, b) => a - b))
    }
    const counts = await log.counts()
    // messages: the first test's 4, the commit test's 3 (30 readings in one, a reading of the next commit, a copy elsewhere), 250 here
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4 + 3 + 250)
  })

  it('opens an existing stream of the same shape, and refuses one of another partition count', async () => {
    await expect(JetStreamLog.open(nc, { partitions: 8, replicas: 3 })).resolves.toBeInstanceOf(JetStreamLog)
    await expect(JetStreamLog.open(nc, { partitions: 4, replicas: 3 })).rejects.toThrow(/created with 8 partitions, this node is configured for 4/)
  })

  it('survives killing the stream leader of three (replicas 3): acknowledged readings are kept and appends go on', async () => {
    const before = await log.lastSeq()
    const p = log.partitionOf('res-survivor')
    const stored = await log.append(Array.from({ length: 20 }, (_, i) => reading('res-survivor', 'watch-s', i)))
    expect(stored.accepted).toBe(20)
    const leader = (await log.jsm.streams.info(log.stream)).cluster?.leader
    const victim = cluster.nodes.find((n) => n.name === leader)!
    expect(victim).toBeDefined()
    const t0 = Date.now()
    await victim.kill('SIGKILL')
    // the two left elect a new stream leader; until then a publish has no responder (the device gets no PUBACK and resends)
    await cluster.metaLeader()
    await waitFor('a new stream leader', async () => {
      const l = (await log.jsm.streams.info(log.stream)).cluster?.leader
      return l !== undefined && l !== '' && l !== leader
    }, 15_000, 50)
    const more = Array.from({ length: 20 }, (_, i) => reading('res-survivor', 'watch-s', 20 + i))
    const after = await log.append(more)
    const failoverMs = Date.now() - t0
    expect(after.accepted).toBe(20)
    const info = await log.jsm.streams.info(log.stream)
    expect(info.cluster?.leader).not.toBe(leader)
    expect(info.state.last_seq).toBe(before + 40)
    const entries = (await log.read(p)).filter((e) => e.reading.deviceId === 'watch-s')
    expect(entries.map((e) => e.reading.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    console.log(`stream leader ${leader} killed: new leader elected and appends acknowledged after ${failoverMs} ms, new leader ${info.cluster?.leader}`)
    // and the killed server catches up when it comes back
    await victim.restart()
    await cluster.metaLeader()
  })
})
