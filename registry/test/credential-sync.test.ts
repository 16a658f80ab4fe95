import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import Database from 'better-sqlite3'
import { createLogger, openDatabase, systemClock, verifySecret } from '../../core/index.ts'
import { redisCredentialLog } from '../../broker/index.ts'
import { CredentialSync, Fleet, Registry } from '../index.ts'
import { startRedis, type RedisServer } from '../../test/helpers/redis.ts'
import { tempDir, waitFor } from '../../test/helpers/proc.ts'

/** Two nodes' registries (copies of one file) kept in step through a real redis-server. */
describe('credential changes across nodes', () => {
  let redis: RedisServer
  beforeAll(async () => { redis = await startRedis() })
  afterAll(async () => { await redis?.stop() })

  async function twoNodes () {
    const dir = tempDir('vm-credsync-')
    const first = new Registry(openDatabase(join(dir, 'a.db')))
    await first.addResident({ id: 'r1' }, false)
    const secret = await first.addDevice({ id: 'd1', residentId: 'r1' })
    await first.addDevice({ id: 'd2', residentId: 'r1' })
    first.database.pragma('wal_checkpoint(TRUNCATE)')
    first.database.close()
    copyFileSync(join(dir, 'a.db'), join(dir, 'b.db'))
    const key = `vitalmesh:credentials:${Math.random().toString(36).slice(2)}`
    const node = (name: string) => {
      const db = openDatabase(join(dir, `${name}.db`))
      const registry = new Registry(db)
      const fleet = new Fleet(registry, systemClock)
      const ended: string[] = []
      const lines = new PassThrough()
      const logged: string[] = []
      lines.on('data', (b: Buffer) => logged.push(...b.toString().trim().split('\n')))
      const sync = new CredentialSync(db, fleet, registry, redisCredentialLog(redis.url, key), name, (id) => { ended.push(id) }, createLogger({ level: 'info', pretty: false }, lines))
      sync.start()
      // what the app's credential poll does: hand every change of this registry to the sync
      let cursor = fleet.latestChange()
      const poll = () => { for (const c of fleet.changedSince(cursor)) { sync.changed(c.id, c.at); cursor = Math.max(cursor, c.at) } sync.pollKeys() }
      return { db, registry, fleet, sync, ended, logged, poll }
    }
    return { a: node('a'), b: node('b'), secret, key }
  }

  it('a rotation on one node is taken by the other; the old secret stops working on both', async () => {
    const { a, b, secret } = await twoNodes()
    const fresh = await a.fleet.rotate('d1')
    a.poll()
    await waitFor('node b to hold the new secret', async () => verifySecret(fresh, b.fleet.credentials('d1')!.secretHash))
    expect(await verifySecret(secret, b.fleet.credentials('d1')!.secretHash)).toBe(false)
    expect(b.ended).toEqual(['d1'])
    // node a applies its own entry too, and it changes nothing there; node b's change was made by
    // the sync, so its poll does not append it again. A later change from b, read by a after
    // anything b could have appended before it, shows that a ended no session of d1
    b.poll()
    const later = await b.fleet.rotate('d2')
    b.poll()
    await waitFor('node a to hold the later change', async () => verifySecret(later, a.fleet.credentials('d2')!.secretHash))
    expect(a.ended).toEqual(['d2'])
    await Promise.all([a.sync.stop(), b.sync.stop()])
  })

  it('a change that cannot be applied now (the registry is locked) is applied once it can be', async () => {
    const { a, b } = await twoNodes()
    b.db.pragma('busy_timeout = 20')
    const lock = new Database(b.db.name)
    lock.exec('BEGIN IMMEDIATE') // another writer holds node b's database
    a.fleet.revoke('d1')
    a.poll()
    await waitFor('node b to report that it could not apply the change', () => { return b.logged.some((l) => l.includes('could not apply credential changes')) })
    expect(b.fleet.credentials('d1')!.revoked).toBe(false)
    lock.exec('ROLLBACK')
    lock.close()
    await waitFor('node b to apply the revocation', () => b.fleet.credentials('d1')!.revoked)
    expect(b.ended).toEqual(['d1'])
    await Promise.all([a.sync.stop(), b.sync.stop()])
  })

  it('an API key revoked on one node is revoked on the other, and its revocation is not appended back', async () => {
    const { a, b, key } = await twoNodes()
    // keys are provisioned on every node, like devices: the same key id in both registries
    const token = a.registry.addApiKey('operator', null, 'desk')
    const id = token.split('_')[1]!
    b.db.exec(`ATTACH '${a.db.name}' AS other; INSERT INTO api_keys SELECT * FROM other.api_keys WHERE id = '${id}'; DETACH other`)
    expect(b.registry.verifyApiKey(token)).toBeDefined()
    expect(a.registry.revokeApiKey(id)).toBe(true)
    a.poll()
    await waitFor('node b to refuse the key', () => b.registry.verifyApiKey(token) === undefined)
    expect(b.logged.some((l) => l.includes('API key revoked on another node'))).toBe(true)
    b.poll() // b revoked it because of the log: nothing to append
    const later = await b.fleet.rotate('d2')
    b.poll()
    await waitFor('node a to hold the later change', async () => verifySecret(later, a.fleet.credentials('d2')!.secretHash))
    const log = redisCredentialLog(redis.url, key)
    const entries = await log.read('0', 10)
    await log.close()
    expect(entries.filter((e) => e.kind === 'apiKey').map((e) => [e.id, e.node])).toEqual([[id, 'a']])
    await Promise.all([a.sync.stop(), b.sync.stop()])
  })
})
