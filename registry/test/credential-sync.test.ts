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
      const fleet = new Fleet(new Registry(db), systemClock)
      const ended: string[] = []
      const lines = new PassThrough()
      const logged: string[] = []
      lines.on('data', (b: Buffer) => logged.push(...b.toString().trim().split('\n')))
      const sync = new CredentialSync(db, fleet, redisCredentialLog(redis.url, key), name, (id) => { ended.push(id) }, createLogger({ level: 'info', pretty: false }, lines))
      sync.start()
      // what the app's credential poll does: hand every change of this registry to the sync
      let cursor = fleet.latestChange()
      const poll = () => { for (const c of fleet.changedSince(cursor)) { sync.changed(c.id, c.at); cursor = Math.max(cursor, c.at) } }
      return { db, fleet, sync, ended, logged, poll }
    }
    return { a: node('a'), b: node('b'), secret }
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
})
