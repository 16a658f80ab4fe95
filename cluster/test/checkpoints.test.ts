import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { MemoryCheckpointStore, SqliteCheckpointStore, StaleEpochError, type CheckpointStore } from '../checkpoints.ts'
import { PgCheckpointStore } from '../pg-checkpoints.ts'

interface State { alerts: string[] }

let pgServer: PostgresServer
let pgStores: PgCheckpointStore<State>[] = []
beforeAll(async () => { pgServer = await startPostgres() }, 60_000)
afterAll(async () => {
  for (const s of pgStores) await s.close()
  await pgServer?.stop()
})

const kinds: [string, () => Promise<CheckpointStore<State>>][] = [
  ['in memory', async () => new MemoryCheckpointStore<State>()],
  ['SQLite', async () => new SqliteCheckpointStore<State>(join(tempDir(), 'cp.db'))],
  ['PostgreSQL 15 (initdb in a temporary directory)', async () => { const s = await PgCheckpointStore.open<State>(pgServer.url); pgStores.push(s); return s }],
]

/** The contract every checkpoint store keeps; the partition runner relies on nothing else. */
describe.each(kinds)('checkpoint store: %s', (_name, make) => {
  it('resumes where the last owner committed, and refuses an older owner\'s commit or claim', async () => {
    const s = await make()
    const consumer = `alerting-${Math.random().toString(36).slice(2)}`
    expect(await s.open(consumer, 3, 1)).toBeUndefined()
    await s.commit({ consumer, partition: 3, epoch: 1, seq: 10, state: { alerts: ['a1'] } })
    // node B takes the partition over with a higher epoch and finds node A's work
    expect(await s.open(consumer, 3, 2)).toEqual({ seq: 10, state: { alerts: ['a1'] } })
    // node A wakes from a pause and commits under its old epoch: refused, B's view stays
    await expect(s.commit({ consumer, partition: 3, epoch: 1, seq: 12, state: { alerts: ['a1', 'stale'] } })).rejects.toBeInstanceOf(StaleEpochError)
    await expect(s.open(consumer, 3, 1)).rejects.toBeInstanceOf(StaleEpochError)
    await s.commit({ consumer, partition: 3, epoch: 2, seq: 12, state: { alerts: ['a1', 'a2'] } })
    expect(await s.open(consumer, 3, 5)).toEqual({ seq: 12, state: { alerts: ['a1', 'a2'] } })
    // the position never goes back, and other partitions are their own
    await expect(s.commit({ consumer, partition: 3, epoch: 5, seq: 11, state: { alerts: [] } })).rejects.toThrow(/move back/)
    expect(await s.open(consumer, 4, 1)).toBeUndefined()
  })
})

describe('PostgreSQL checkpoints fence the consumer\'s effects too', () => {
  it('rolls back an older owner\'s effects with its checkpoint, and commits the owner\'s together with it', async () => {
    const s = await PgCheckpointStore.open<State>(pgServer.url)
    pgStores.push(s)
    // a second node opening the same database applies no step twice
    const again = await PgCheckpointStore.open<State>(pgServer.url)
    pgStores.push(again)
    await s.pool.query('CREATE TABLE test_alerts (id TEXT PRIMARY KEY)')
    const sent = async (): Promise<string[]> => (await s.pool.query<{ id: string }>('SELECT id FROM test_alerts ORDER BY id')).rows.map((r) => r.id)
    await s.open('alerting', 0, 1)
    await again.open('alerting', 0, 2) // node B owns partition 0 now
    await expect(s.commit({ consumer: 'alerting', partition: 0, epoch: 1, seq: 5, state: { alerts: ['x'] } }, async (tx) => {
      await tx.query("INSERT INTO test_alerts (id) VALUES ('from-stale-node-a')")
    })).rejects.toBeInstanceOf(StaleEpochError)
    expect(await sent()).toEqual([])
    await again.commit({ consumer: 'alerting', partition: 0, epoch: 2, seq: 5, state: { alerts: ['x'] } }, async (tx) => {
      await tx.query("INSERT INTO test_alerts (id) VALUES ('from-owner-b')")
    })
    expect(await sent()).toEqual(['from-owner-b'])
    expect((await s.all('alerting'))[0]).toMatchObject({ partition: 0, epoch: 2, seq: 5 })
  })

  it('serialises a takeover with a commit in flight: the new owner claims the partition only after it, and the old owner\'s next commit is refused', async () => {
    const a = await PgCheckpointStore.open<State>(pgServer.url)
    const b = await PgCheckpointStore.open<State>(pgServer.url)
    pgStores.push(a, b)
    await a.open('forwarder', 7, 1)
    let release!: () => void
    const held = new Promise<void>((r) => { release = r })
    let entered!: () => void
    const inEffects = new Promise<void>((r) => { entered = r })
    const commitA = a.commit({ consumer: 'forwarder', partition: 7, epoch: 1, seq: 3, state: { alerts: ['w1'] } }, async () => { entered(); await held })
    await inEffects // A holds the checkpoint row's lock
    const claimB = b.open('forwarder', 7, 2)
    // B waits on A's row lock (PostgreSQL shows its backend waiting on a lock); then A finishes
    await waitFor('node B waiting on the checkpoint row', async () => Number((await a.pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).rows[0]!.n) > 0, 10_000, 20)
    release()
    const cp = await claimB
    await commitA
    // B's claim read what A committed, so it ran after A's commit. (Which of the two replies this
    // process sees first is not: they come back on two connections, and once raced.)
    expect(cp).toEqual({ seq: 3, state: { alerts: ['w1'] } })
    await expect(a.commit({ consumer: 'forwarder', partition: 7, epoch: 1, seq: 4, state: { alerts: [] } })).rejects.toBeInstanceOf(StaleEpochError)
  })
})
