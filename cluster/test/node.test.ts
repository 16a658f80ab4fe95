import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import pg from 'pg'
import { silentLogger, type StoredReading } from '../../core/index.ts'
import { EmbeddedStore } from '../../ingest/embedded-store.ts'
import { startNatsCluster, type NatsCluster } from '../../test/helpers/nats.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'
import { ClusterNode, OWNER_CONSUMER, RETIRED_STORE_CONSUMER } from '../node.ts'
import { partitionOf } from '../log.ts'

/**
 * One consumer per owned partition (cluster/node.ts) feeds the readings to the node's feed as
 * they arrive and writes them to the telemetry store at each commit. Until 2026-12-08 a
 * consumer of its own ('store') wrote the store, with a position that could be behind the
 * feed's: a cluster upgraded from then must store what that consumer had not, and feed nothing
 * twice. Real nats-server and PostgreSQL; the store is the embedded one, in a temporary directory.
 */
describe('a partition\'s one consumer: fed as they arrive, stored at the commit, and an upgrade from the retired store consumer', () => {
  let nats: NatsCluster
  let postgres: PostgresServer
  beforeAll(async () => { [nats, postgres] = await Promise.all([startNatsCluster(), startPostgres()]) }, 120_000)
  afterAll(async () => { await Promise.all([nats?.stop(), postgres?.stop()]) })

  it('stores what the retired store consumer had left, feeds only what the feed had not, and then both go on together', async () => {
    const store = new EmbeddedStore(join(tempDir('vm-node-'), 'telemetry.db'))
    const fed: StoredReading[] = []
    const open = async (): Promise<ClusterNode> => await ClusterNode.open({
      servers: nats.servers, node: 'n1', partitions: 2, replicas: 1, leaseMs: 3000, postgresUrl: postgres.url,
      store, head: () => 0, shippedTo: 0, logger: silentLogger(),
      feed: { append: async (_p, rows) => { fed.push(...rows) } },
    })
    // one resident, so one partition; ten readings in the log before the node follows it
    const R = 'resident-upgraded'
    const p = partitionOf(R, 2)
    const reading = (seq: number): StoredReading => ({ deviceId: 'cuff-1', residentId: R, seq, ts: Date.UTC(2026, 11, 7, 8, seq), sys: 120 + seq, dia: 80 })
    const first = await open()
    const { seqs } = await first.log.append([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(reading))
    await first.stop()
    // as the two-consumer layout left it: the feed had taken all ten, the store only the first four
    const db = new pg.Client({ connectionString: postgres.url })
    await db.connect()
    await db.query(`INSERT INTO partition_checkpoints (consumer, partition, epoch, seq, state) VALUES
      ($1, $3, 0, $4, '{"fed": 10}'), ($2, $3, 0, $5, '{"stored": 4}')`, [OWNER_CONSUMER, RETIRED_STORE_CONSUMER, p, seqs[9], seqs[3]])

    const node = await open()
    try {
      await node.start()
      await waitFor('readings 5 to 10 stored from the log', async () => (await store.queryRange(R, 0, Date.UTC(2027, 0, 1), 100)).length === 6, 15_000)
      expect((await store.queryRange(R, 0, Date.UTC(2027, 0, 1), 100)).map((r) => r.seq).sort((a, b) => a - b)).toEqual([5, 6, 7, 8, 9, 10])
      // the retired consumer's position is gone: the next owner does not store that stretch again
      await waitFor('the retired checkpoint forgotten', async () => (await db.query('SELECT 1 FROM partition_checkpoints WHERE consumer = $1', [RETIRED_STORE_CONSUMER])).rowCount === 0, 5000)
      expect(fed).toEqual([])
      // what comes next is fed at once and stored at the partition's next commit
      await node.log.append([reading(11), reading(12)])
      await waitFor('readings 11 and 12 stored', async () => (await store.queryRange(R, 0, Date.UTC(2027, 0, 1), 100)).length === 8, 15_000)
      expect(fed.map((r) => r.seq)).toEqual([11, 12])
      await waitFor('the position past reading 12', async () => Number((await db.query('SELECT seq FROM partition_checkpoints WHERE consumer = $1 AND partition = $2', [OWNER_CONSUMER, p])).rows[0]?.seq) > seqs[9]!, 5000)
    } finally {
      await node.stop()
      await db.end()
      await store.close()
    }
  }, 60_000)

  it('a reading the log holds twice, its first copy taken by the previous owner and the second after where the partition resumes: stored once, and handed to the takeover as fed', async () => {
    const store = new EmbeddedStore(join(tempDir('vm-node-'), 'telemetry.db'))
    const R = 'resident-resent'
    const reading = (seq: number, minute: number): StoredReading => ({ deviceId: 'cuff-9', residentId: R, seq, ts: Date.UTC(2026, 11, 7, 9, minute), sys: 130, dia: 85 })
    const open = async (fed: StoredReading[], recent: StoredReading[]): Promise<ClusterNode> => await ClusterNode.open({
      servers: nats.servers, node: 'n2', partitions: 2, replicas: 1, leaseMs: 3000, postgresUrl: postgres.url,
      store, head: () => 0, shippedTo: 0, logger: silentLogger(),
      feed: { append: async (_p, rows) => { fed.push(...rows) }, takeOver: async (_p, _from, r) => { recent.push(...r) } },
    })
    const all = async (): Promise<StoredReading[]> => await store.queryRange(R, 0, Date.UTC(2027, 0, 1), 100)
    // the previous owner takes reading 1 and commits past it
    const first = await open([], [])
    await first.start()
    const [at] = (await first.log.append([{ ...reading(1, 0), id: 1 }])).seqs
    await waitFor('reading 1 stored by the first owner', async () => (await all()).length === 1, 15_000)
    await first.stop()
    const fed: StoredReading[] = []
    const recent: StoredReading[] = []
    const next = await open(fed, recent)
    try {
      // the cuff got no PUBACK and resent reading 1 to another node, taking its time anew, in a commit with reading 2
      const second = await next.log.append([{ ...reading(1, 3), id: 7 }, { ...reading(2, 4), id: 7 }])
      expect(second).toMatchObject({ accepted: 2, duplicates: 0 })
      expect(second.seqs[0]).toBeGreaterThan(at!)
      await next.start()
      await waitFor('reading 2 stored by the next owner', async () => (await all()).length >= 2, 15_000)
      await waitFor('the readings fed', () => fed.length === 2, 5000)
      // one point for reading 1, the first copy's
      expect((await all()).map((r) => [r.seq, r.ts])).toEqual([[1, reading(1, 0).ts], [2, reading(2, 4).ts]])
      // the takeover was told that reading 1 was fed: the feed (a spool) then drops the copy it is given (ingest/test/spool.test.ts, remember)
      expect(recent.filter((r) => r.residentId === R)).toEqual([reading(1, 0)])
    } finally {
      await next.stop()
      await store.close()
    }
  }, 60_000)
})
