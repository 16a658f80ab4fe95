import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { realpathSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import pino from 'pino'
import { ManualClock, openDatabase, type DB } from '../../core/index.ts'
import { AuditLog } from '../../registry/index.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { AuditShipper, ClusterAuditChain } from '../audit-chain.ts'
import { nodeSource } from '../node-source.ts'

const logger = pino({ level: 'silent' })

/**
 * The cluster's audit trail on a real PostgreSQL (initdb in a temporary directory): each "node"
 * is an AuditLog on a SQLite file of its own, shipping through its own pool, as a vitalmesh
 * process does in cluster mode.
 */
describe('the cluster\'s audit chain in PostgreSQL', () => {
  let server: PostgresServer
  const chains: ClusterAuditChain[] = []
  let admin: pg.Client
  const clock = new ManualClock(1_700_000_000_000)

  const node = async (name: string, o: { batch?: number, db?: DB } = {}): Promise<{ db: DB, audit: AuditLog, shipper: AuditShipper, chain: ClusterAuditChain }> => {
    const db = o.db ?? openDatabase(join(tempDir(`vm-audit-${name}-`), 'vitalmesh.db'))
    const audit = new AuditLog(db, clock)
    const chain = await ClusterAuditChain.open(server.url)
    chains.push(chain)
    return { db, audit, chain, shipper: new AuditShipper({ local: audit, chain, source: nodeSource(db, name), logger, batch: o.batch }) }
  }

  /** a node that recorded and shipped one entry, and a copy of its database made after that (a data directory copied to make another node) */
  const shippedThenCopied = async (name: string, hospital: string): Promise<{ orig: Awaited<ReturnType<typeof node>>, copyFile: string }> => {
    const orig = await node(name)
    orig.audit.append('operator:k', 'hospital.registered', hospital)
    await orig.shipper.flush()
    const copyFile = join(tempDir(`vm-audit-${name}-copy-`), 'vitalmesh.db')
    await orig.db.backup(copyFile)
    return { orig, copyFile }
  }

  beforeAll(async () => {
    server = await startPostgres()
    admin = new pg.Client({ connectionString: server.url })
    admin.on('error', () => {}) // the last test stops the server under it
    await admin.connect()
  }, 60_000)
  afterAll(async () => {
    await admin?.end().catch(() => {})
    await Promise.all(chains.map(async (c) => { await c.close().catch(() => {}) }))
    await server?.stop()
  })

  it('holds the entries of every node in one chain, each node\'s in its own order, and a read on a node sees what it just recorded', async () => {
    const a = await node('a')
    const c = await node('c')
    a.audit.append('operator:k1', 'api-key.created', 'key-1')
    c.audit.append('hospital:h1:k2', 'pull.alerts', 'res-1', { count: 2 })
    a.audit.append('operator:k1', 'api-key.revoked', 'key-1')
    // a read on c ships what c recorded; a's entries are there once a has shipped
    expect((await c.shipper.list(0, 100)).map((e) => e.action)).toEqual(['pull.alerts'])
    await a.shipper.flush()
    const all = await c.shipper.list(0, 100)
    expect(all.map((e) => [e.seq, e.node?.split('~')[0], e.nodeSeq, e.action])).toEqual([
      [1, 'c', 1, 'pull.alerts'], [2, 'a', 1, 'api-key.created'], [3, 'a', 2, 'api-key.revoked'],
    ])
    expect(all[0]!.detail).toEqual({ count: 2 })
    expect(await a.shipper.verify()).toEqual({ ok: true, entries: 3 })
    // the resident's access log, on either node, newest first
    expect((await a.shipper.aboutSubject('res-1', { limit: 10 })).map((e) => e.actor)).toEqual(['hospital:h1:k2'])
    expect(await a.shipper.aboutSubject('res-1', { limit: 10, exceptActor: 'hospital:h1' })).toEqual([])
    // PostgreSQL's text has no NUL, SQLite's has: such an entry is shipped (U+FFFD in its place), not stuck forever
    a.audit.append('operator:k1', 'pull.profile', 'res\u00002', { note: 'a\u0000b' })
    const last = (await a.shipper.list(3, 10))[0]!
    expect([last.subject, last.detail]).toEqual(['res\uFFFD2', { note: 'a\u0000b' }])
    expect(await c.shipper.verify()).toEqual({ ok: true, entries: 4 })
  })

  it('never forks: nodes shipping at once, in small batches, leave one chain with every entry once', async () => {
    const nodes = await Promise.all(['p', 'q', 'r'].map(async (n) => await node(n, { batch: 7 })))
    const before = (await nodes[0]!.chain.list(0, 10_000)).length
    for (let i = 0; i < 60; i++) for (const n of nodes) n.audit.append(`operator:${i}`, 'pull.readings', `res-${i}`)
    // every node ships at the same time, several times over
    await Promise.all(nodes.flatMap((n) => [n.shipper.flush(), n.shipper.flush()]))
    const all = await nodes[0]!.chain.list(0, 10_000)
    expect(all.length - before).toBe(180)
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1))
    for (const n of nodes) {
      const mine = all.filter((e) => e.node === n.shipper.summary().source)
      expect(mine.map((e) => e.nodeSeq)).toEqual(mine.map((_, i) => i + 1))
    }
    expect(await nodes[1]!.chain.verify()).toEqual({ ok: true, entries: all.length })
  })

  it('a restarted node goes on from where the chain has its entries: nothing shipped twice, nothing skipped', async () => {
    const first = await node('restart')
    first.audit.append('operator:k', 'rule-set.activated', 'esh-2023@1')
    await first.shipper.flush()
    first.audit.append('operator:k', 'rule-set.deactivated', 'esh-2023') // recorded, then the process died before shipping it
    // the same database, a new process: a new shipper, the same source
    const again = await node('restart-2', { db: first.db })
    expect(again.shipper.summary().source).toBe(first.shipper.summary().source)
    await again.shipper.flush()
    await again.shipper.flush()
    const mine = (await again.chain.list(0, 10_000)).filter((e) => e.node === first.shipper.summary().source)
    expect(mine.map((e) => [e.nodeSeq, e.action])).toEqual([[1, 'rule-set.activated'], [2, 'rule-set.deactivated']])
  })

  it('a data directory copied to make another node gets a source of its own at its first start: both trails reach the chain in full', async () => {
    const { orig, copyFile } = await shippedThenCopied('orig', 'h-9')
    const copy = await node('copy', { db: openDatabase(copyFile) })
    expect(copy.shipper.summary().source).not.toBe(orig.shipper.summary().source)
    orig.audit.append('operator:k', 'hospital.feeds', 'h-9')
    copy.audit.append('operator:k', 'institution.registered', 'inst-1')
    await Promise.all([orig.shipper.flush(), copy.shipper.flush()])
    const all = await copy.chain.list(0, 10_000)
    const of = (s: AuditShipper): string[] => all.filter((e) => e.node === s.summary().source).map((e) => e.action)
    expect(of(orig.shipper)).toEqual(['hospital.registered', 'hospital.feeds'])
    // the copy's whole trail, the entry it was copied with included: twice in the chain, never lost
    expect(of(copy.shipper)).toEqual(['hospital.registered', 'institution.registered'])
  })

  it('two trails that ship as one source anyway (the name set by hand) are refused with the reason as soon as they part, and ship nothing of it', async () => {
    const { orig, copyFile } = await shippedThenCopied('twin', 'h-10')
    const copyDb = openDatabase(copyFile)
    copyDb.prepare('UPDATE node_source SET path = ? WHERE id = 1').run(realpathSync(copyFile))
    const copy = await node('twin-copy', { db: copyDb })
    expect(copy.shipper.summary().source).toBe(orig.shipper.summary().source)
    await copy.shipper.flush() // the same entry 1 as shipped: nothing to say yet
    orig.audit.append('operator:k', 'hospital.feeds', 'h-10')
    copy.audit.append('operator:k', 'institution.registered', 'inst-2')
    await orig.shipper.flush()
    // the copy's entry 2 is not the chain's entry 2 of this source: refused, not taken for shipped
    await expect(copy.shipper.flush()).rejects.toThrow(/two nodes ship as one source/)
    expect(copy.shipper.status()).toMatch(/two nodes ship as one source/)
    expect((await copy.chain.list(0, 10_000)).filter((e) => e.action === 'institution.registered' && e.subject === 'inst-2')).toEqual([])
    // and one that started out as a copy with other entries at the chain's last position
    const other = openDatabase(join(tempDir('vm-audit-other-'), 'vitalmesh.db'))
    const third = await node('other', { db: other })
    other.prepare('UPDATE node_source SET source = ? WHERE id = 1').run(orig.shipper.summary().source)
    third.audit.append('operator:k', 'institution.registered', 'inst-3')
    third.audit.append('operator:k', 'institution.registered', 'inst-4')
    const again = new AuditShipper({ local: third.audit, chain: third.chain, source: orig.shipper.summary().source as string, logger })
    await expect(again.flush()).rejects.toThrow(/two nodes ship as one source/)
  })

  it('is append-only, and an entry changed behind the trigger\'s back is named by verify', async () => {
    const n = await node('tamper')
    n.audit.append('operator:k', 'override.set', 'res-7', { sys: 150 })
    await n.shipper.flush()
    const seq = (await n.chain.list(0, 10_000)).find((e) => e.action === 'override.set')!.seq
    await expect(admin.query('UPDATE cluster_audit SET detail = $1 WHERE seq = $2', ['{"sys":180}', seq])).rejects.toThrow(/append-only/)
    await expect(admin.query('DELETE FROM cluster_audit WHERE seq = $1', [seq])).rejects.toThrow(/append-only/)
    await expect(admin.query('TRUNCATE cluster_audit')).rejects.toThrow(/append-only/)
    // a superuser can still switch the trigger off: the hash chain is what shows it
    await admin.query('ALTER TABLE cluster_audit DISABLE TRIGGER cluster_audit_no_change')
    await admin.query('UPDATE cluster_audit SET detail = $1 WHERE seq = $2', ['{"sys":180}', seq])
    await admin.query('ALTER TABLE cluster_audit ENABLE TRIGGER cluster_audit_no_change')
    expect(await n.shipper.verify()).toMatchObject({ ok: false, brokenAt: seq, reason: 'its content does not match its hash' })
  })

  it('while PostgreSQL is unreachable a node goes on recording; reads answer VM_STORE_UNAVAILABLE and /readyz says why', async () => {
    const n = await node('down')
    await server.stop()
    n.audit.append('operator:k', 'api-key.created', 'key-9') // recording goes on: it is this node's SQLite
    await expect(n.shipper.list(0, 10)).rejects.toMatchObject({ code: 'VM_STORE_UNAVAILABLE' })
    expect(n.shipper.status()).toMatch(/^audit trail not shipped: /)
    expect(n.audit.list(0, 10).map((e) => e.action)).toEqual(['api-key.created'])
  })
})
