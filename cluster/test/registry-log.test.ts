import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import pino from 'pino'
import { ManualClock, openDatabase, type DB } from '../../core/index.ts'
import { CredentialSync, Fleet, Registry, RegistryReplica } from '../../registry/index.ts'
import { redisCredentialLog } from '../../broker/index.ts'
import { startRedis } from '../../test/helpers/redis.ts'
import { BUILTIN_RULE_SETS, RuleSetStore } from '../../alerting/index.ts'
import { DeviceModelRegister } from '../../reports/index.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'
import { ClusterRegistryLog, RegistrySync } from '../registry-log.ts'
import { nodeSource } from '../node-source.ts'

const logger = pino({ level: 'silent' })

interface Node { name: string, db: DB, registry: Registry, fleet: Fleet, ruleSets: RuleSetStore, replica: RegistryReplica, sync: RegistrySync, log: ClusterRegistryLog, outbox(): number }

/**
 * The cluster's registry on a real PostgreSQL: each "node" is the registry's tables in a SQLite
 * file of its own (Registry, RuleSetStore, DeviceModelRegister, as app.ts builds them) with its
 * replica and sync, as a vitalmesh process has in cluster mode.
 */
describe("the cluster's registry: one log in PostgreSQL, a replica in each node's SQLite", () => {
  let server: PostgresServer
  const nodes: Node[] = []
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 12))

  const node = async (name: string, provision?: (r: Registry) => Promise<void>): Promise<Node> => {
    const db = openDatabase(join(tempDir(`vm-reg-${name}-`), 'vitalmesh.db'))
    const registry = new Registry(db)
    const ruleSets = new RuleSetStore(db)
    new DeviceModelRegister(db, clock, []) // eslint-disable-line no-new
    // what a node holds before it ever ran in the cluster (an operator provisioned it)
    if (provision) await provision(registry)
    const log = await ClusterRegistryLog.open(server.url)
    const replica = new RegistryReplica(db)
    const sync = new RegistrySync({ replica, log, source: nodeSource(db, name), clock, logger })
    const n: Node = { name, db, registry, fleet: new Fleet(registry, clock), ruleSets, replica, sync, log, outbox: () => db.prepare<[], { n: number }>('SELECT count(*) AS n FROM registry_outbox').get()!.n }
    nodes.push(n)
    return n
  }
  /** every node ships and applies until none has anything left (what their 100 ms timers do) */
  const settle = async (...ns: Node[]): Promise<void> => { for (let i = 0; i < 2; i++) for (const n of ns) await n.sync.sync() }

  beforeAll(async () => { server = await startPostgres() }, 60_000)
  afterAll(async () => {
    for (const n of nodes) { await n.sync.stop(); await n.log.close().catch(() => {}) }
    await server?.stop()
  })

  it('a resident and a device registered on node A are on node B, where the device authenticates with its secret', async () => {
    const a = await node('a')
    const b = await node('b')
    await a.registry.addResident({ id: 'res-1', name: '王芳', language: 'zh-CN', region: 'county-7' }, false)
    const secret = await a.registry.addDevice({ id: 'cuff-1', residentId: 'res-1', model: 'omron-hem-7361t' })
    expect(b.registry.resident('res-1')).toBeUndefined()
    await settle(a, b)
    expect(b.registry.resident('res-1')).toMatchObject({ name: '王芳', language: 'zh-CN', region: 'county-7' })
    expect(b.registry.device('cuff-1')).toMatchObject({ residentId: 'res-1', model: 'omron-hem-7361t' })
    expect(await b.registry.authenticate('cuff-1', secret)).toMatchObject({ kind: 'device', id: 'cuff-1', residentId: 'res-1' })
    expect(await b.registry.authenticate('cuff-1', 'not-the-secret')).toBeUndefined()
    // an API key made on B opens A's API
    const key = b.registry.addApiKey('operator', null, 'made on b')
    await settle(b, a)
    expect(a.registry.verifyApiKey(key)).toMatchObject({ role: 'operator' })
    expect([a.outbox(), b.outbox()]).toEqual([0, 0])
  })

  it('changes and deletions made on either node reach the other: profile, override, rule-set activation', async () => {
    const [a, b] = nodes as [Node, Node]
    b.registry.updateResident('res-1', { language: 'en', birthYear: 1950 })
    b.registry.setOverride('res-1', 'acc-aha-2017/bp-category', { sys: 150 } as never, 'hospital:h1')
    const doc = { ...BUILTIN_RULE_SETS.find((d) => d.id === 'esh-2023')!, version: '9.0.0' }
    b.ruleSets.publish(doc, 'research:inst-1')
    b.ruleSets.activate('esh-2023', '9.0.0', 'operator')
    await settle(b, a)
    expect(a.registry.resident('res-1')).toMatchObject({ language: 'en', birthYear: 1950 })
    expect(a.registry.overrides('res-1').map((o) => o.ruleKey)).toEqual(['acc-aha-2017/bp-category'])
    expect(a.ruleSets.active().find((d) => d.id === 'esh-2023')?.version).toBe('9.0.0')
    // a deletion is a change too
    a.ruleSets.deactivate('esh-2023', 'operator')
    expect(a.registry.deleteOverride('res-1', 'acc-aha-2017/bp-category')).toBe(true)
    await settle(a, b)
    expect(b.ruleSets.active().find((d) => d.id === 'esh-2023')).toBeUndefined()
    expect(b.registry.overrides('res-1')).toEqual([])
  })

  it('two nodes changing one row before either has synced end with the same row (the later in the log), and neither loses its own change meanwhile', async () => {
    const [a, b] = nodes as [Node, Node]
    a.registry.updateResident('res-1', { language: 'zh-CN', conditions: ['diabetes'] })
    await a.sync.sync() // a's change is in the log
    b.registry.updateResident('res-1', { language: 'en', birthYear: 1951 })
    // b applies the log while its own change is still in its outbox (it was made during a pass, after the pass shipped):
    // a's older change must not overwrite it in the meantime
    b.replica.apply(await b.log.read(b.replica.position(), 100))
    expect(b.registry.resident('res-1')).toMatchObject({ language: 'en', birthYear: 1951 })
    await settle(a, b)
    expect(a.registry.resident('res-1')).toEqual(b.registry.resident('res-1'))
    // b's row as b made it is the later in the log and wins on both, whole: a's concurrent change of
    // another column is gone too (rows, not columns, are the unit: two people saving one form)
    expect(a.registry.resident('res-1')).toMatchObject({ language: 'en', birthYear: 1951, conditions: [] })
  })

  it('presence is each node\'s own: a device coming online changes nothing in the shared registry', async () => {
    const [a] = nodes as [Node, Node]
    a.fleet.recordLastSeen([['cuff-1', clock.now(), true]])
    expect(a.outbox()).toBe(0)
  })

  it('applying what a node holds already changes nothing and reports nothing (its own changes coming back, seeds of nodes provisioned alike)', async () => {
    const [a, b] = nodes as [Node, Node]
    // each row's last image in the log: what both nodes hold now
    const last = new Map<string, Awaited<ReturnType<ClusterRegistryLog['read']>>[number]>()
    for (const e of await b.log.read(0, 10_000)) last.set(`${e.tbl}|${e.key}`, e)
    expect(last.size).toBeGreaterThan(5)
    const position = Math.max(...[...last.values()].map((e) => e.pos))
    for (const n of [a, b]) {
      const applied = n.replica.apply([...last.values()].sort((x, y) => x.pos - y.pos).map((e) => ({ ...e, pos: position })))
      expect([...applied.tables, ...applied.residents, ...applied.newDevices, ...applied.revokedDevices]).toEqual([])
    }
    expect(b.registry.resident('res-1')).toEqual(a.registry.resident('res-1'))
  })

  it('credentials change on the credential log, not here: a rotation on A is not undone on A by the registry, nor copied to B by it', async () => {
    const [a, b] = nodes as [Node, Node]
    const first = (b.db.prepare('SELECT secret_hash FROM devices WHERE id = ?').get('cuff-1') as { secret_hash: string }).secret_hash
    const rotated = await a.fleet.rotate('cuff-1')
    a.registry.updateResident('res-1', { birthYear: 1952 }) // and something that does travel
    await settle(a, b)
    expect(await a.registry.authenticate('cuff-1', rotated)).toBeDefined()
    expect((b.db.prepare('SELECT secret_hash FROM devices WHERE id = ?').get('cuff-1') as { secret_hash: string }).secret_hash).toBe(first)
    expect(b.registry.resident('res-1')?.birthYear).toBe(1952)
  })

  it('a node that joins with a registry of its own brings it in at its first start; one joining empty gets everything', async () => {
    const c = await node('c', async (r) => {
      await r.addResident({ id: 'res-c', name: 'provisioned on c' }, false)
      r.addHospital({ id: 'hosp-c', name: '县人民医院' })
    })
    c.sync.start()
    await c.sync.stop()
    const d = await node('d')
    await settle(c, d, ...nodes.slice(0, 2))
    for (const n of [nodes[0]!, nodes[1]!, d]) {
      expect(n.registry.resident('res-c')?.name).toBe('provisioned on c')
      expect(n.registry.hospital('hosp-c')?.name).toBe('县人民医院')
    }
    expect(d.registry.resident('res-1')?.birthYear).toBe(1952)
    expect(d.registry.device('cuff-1')?.residentId).toBe('res-1')
  })

  it('a revocation travels with the row too, and never comes undone: a device revoked on A before B had it arrives revoked; one B had is revoked there', async () => {
    const [a, b] = nodes as [Node, Node]
    const secret = await a.registry.addDevice({ id: 'cuff-gone', residentId: 'res-1' })
    a.fleet.revoke('cuff-gone')
    const kept = await a.registry.addDevice({ id: 'cuff-kept', residentId: 'res-1' })
    await settle(a, b)
    expect(await b.registry.authenticate('cuff-gone', secret)).toBeUndefined()
    expect(await b.registry.authenticate('cuff-kept', kept)).toBeDefined()
    a.fleet.revoke('cuff-kept')
    await a.sync.sync()
    const applied = b.replica.apply(await b.log.read(b.replica.position(), 100))
    expect(applied.revokedDevices.map((d) => d.id)).toEqual(['cuff-kept']) // app.ts ends its sessions
    expect(await b.registry.authenticate('cuff-kept', kept)).toBeUndefined()
  })

  it('a rotation that reaches B on the credential log before the device\'s registration does is kept, and applied when the registration comes', async () => {
    const [a, b] = nodes as [Node, Node]
    const redis = await startRedis()
    try {
      const key = `vitalmesh:credentials:${Math.random().toString(36).slice(2)}`
      const ended: string[] = []
      const credA = new CredentialSync(a.db, a.fleet, a.registry, redisCredentialLog(redis.url, key), 'a', () => {}, logger)
      const credB = new CredentialSync(b.db, b.fleet, b.registry, redisCredentialLog(redis.url, key), 'b', (id) => { ended.push(id) }, logger)
      credA.start(); credB.start()
      await a.registry.addDevice({ id: 'watch-new', residentId: 'res-1' })
      const rotated = await a.fleet.rotate('watch-new')
      // a's credential poll hands the rotation to its sync (app.ts), before a's registry has synced
      const at = a.fleet.changedSince(0).find((c) => c.id === 'watch-new')!.at
      credA.changed('watch-new', at)
      await waitFor('node b to keep the rotation of a device it does not have yet', () => b.db.prepare('SELECT 1 FROM credential_parked WHERE id = ?').get('watch-new') !== undefined, 5000, 20)
      // the registration arrives: app.ts hands each new device to the credential sync
      for (let i = 0; i < 2; i++) for (const n of [a, b]) {
        await n.sync.sync()
      }
      expect(b.registry.device('watch-new')).toBeDefined()
      const before = await b.registry.authenticate('watch-new', rotated)
      credB.deviceAppeared('watch-new')
      expect(before).toBeUndefined() // the registration alone carries the first secret
      expect(await b.registry.authenticate('watch-new', rotated)).toMatchObject({ id: 'watch-new' })
      await credA.stop(); await credB.stop()
    } finally {
      await redis.stop()
    }
  })

  it('running, a node reads the log when another appended to it (LISTEN/NOTIFY), not on a timer', async () => {
    const [a, b] = nodes as [Node, Node]
    // timed reads every 10 minutes (the manual clock does not move): only a notification makes b read
    const started = [a, b].map((n) => new RegistrySync({ replica: n.replica, log: n.log, source: nodeSource(n.db, n.name), clock, logger, readEveryMs: 600_000 }))
    for (const s of started) s.start()
    try {
      await Promise.all(started.map(async (s) => { await s.listening() }))
      await Promise.all(started.map(async (s) => { await s.sync() })) // what the listeners' first notification started is done
      a.registry.addHospital({ id: 'hosp-notified', name: '乡镇卫生院' })
      const t0 = Date.now()
      await waitFor('node b to hold the hospital made on node a', () => b.registry.hospital('hosp-notified'), 5000, 10)
      console.log(`registry-log: a change on node a was applied on node b ${Date.now() - t0} ms later (outbox looked at every 100 ms, the log read on notification)`)
    } finally {
      for (const s of started) await s.stop()
    }
  })

  it('a change made while PostgreSQL is unreachable waits in the outbox, and /readyz says why', async () => {
    const [a] = nodes as [Node, Node]
    await server.stop()
    a.registry.addHospital({ id: 'hosp-late', name: 'made while PostgreSQL was down' })
    await expect(a.sync.sync()).rejects.toThrow()
    expect(a.sync.status()).toMatch(/^registry not in step with the cluster: /)
    expect(a.outbox()).toBe(1)
    expect(a.registry.hospital('hosp-late')?.name).toBe('made while PostgreSQL was down')
  })
})
