import { describe, expect, it } from 'vitest'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { openDatabase, ManualClock } from '../../core/index.ts'
import { AuditLog } from '../index.ts'
import { startTestApp } from '../../test/helpers/app.ts'
import { run, ROOT, tempDir } from '../../test/helpers/proc.ts'

describe('audit log', () => {
  it('is append-only and hash-chained; tampering with one entry fails verification at that entry', () => {
    const db = openDatabase(':memory:')
    const log = new AuditLog(db, new ManualClock(1000))
    for (let i = 1; i <= 5; i++) log.append(`operator:k${i}`, 'api-key.created', `key${i}`, { role: 'resident' })
    expect(log.verify()).toEqual({ ok: true, entries: 5 })
    expect(() => db.prepare("UPDATE audit SET actor = 'x' WHERE seq = 3").run()).toThrow(/append-only/)
    expect(() => db.prepare('DELETE FROM audit WHERE seq = 3').run()).toThrow(/append-only/)
    // someone with access to the file removes the guard and edits entry 3
    db.exec('DROP TRIGGER audit_no_update')
    db.prepare(`UPDATE audit SET detail = '{"role":"operator"}' WHERE seq = 3`).run()
    expect(new AuditLog(db, new ManualClock(0)).verify()).toMatchObject({ ok: false, brokenAt: 3, entries: 2, reason: /content/ })
  })

  it('stays one chain when an append is rolled back with its transaction, and when another process on the file appends', () => {
    const file = join(tempDir(), 'a.db')
    const db = openDatabase(file)
    const log = new AuditLog(db, new ManualClock(1000))
    log.append('a', 'x', 's1')
    // the change it records fails after the entry was written (a consumer's transaction, an API call)
    expect(() => db.transaction(() => { log.append('forwarder', 'x', 's2'); throw new Error('enqueue failed') })()).toThrow('enqueue failed')
    log.append('a', 'x', 's3')
    // the CLI next to the server appends through its own connection
    new AuditLog(openDatabase(file), new ManualClock(2000)).append('cli', 'x', 's4')
    log.append('a', 'x', 's5')
    expect(log.verify()).toEqual({ ok: true, entries: 4 })
    expect(log.list(0, 10).map((e) => e.subject)).toEqual(['s1', 's3', 's4', 's5'])
  })

  it('detects a removed entry', () => {
    const db = openDatabase(':memory:')
    const log = new AuditLog(db, new ManualClock(1000))
    for (let i = 1; i <= 4; i++) log.append('a', 'x', `s${i}`)
    db.exec('DROP TRIGGER audit_no_delete')
    db.prepare('DELETE FROM audit WHERE seq = 2').run()
    expect(log.verify()).toMatchObject({ ok: false, brokenAt: 2, reason: /missing/ })
  })

  it('records credential changes, rule-set publication and activation, and pulls; the CLI verifies it', async () => {
    const t = await startTestApp()
    const ops = t.app.demo!.apiKeys.operator
    const call = (method: string, path: string, key: string, body?: unknown) => fetch(`http://127.0.0.1:${t.httpPort}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: await r.json() as any }))
    // the institution first: a key's scope must name something registered
    await call('POST', '/v1/institutions', ops, { id: 'inst-a', name: 'A' })
    const research = (await call('POST', '/v1/api-keys', ops, { role: 'research', scope: 'inst-a' })).body
    await call('POST', '/v1/rulesets', research.key, { id: 'x', version: '1.0.0', publisher: 'A', citation: 'c', effectiveDate: '2026-01-01', audience: { kind: 'all' }, rules: [{ id: 'r', title: 'T', kind: 'threshold', when: [{ metric: 'hr', op: '>', value: 150 }] }] })
    await call('POST', '/v1/rulesets/x/1.0.0/activate', ops)
    await call('GET', '/v1/research/aggregates', research.key)
    await call('GET', '/v1/residents/demo-resident/readings', ops)
    await call('DELETE', `/v1/api-keys/${research.id}`, ops)
    const entries = (await call('GET', '/v1/audit', ops)).body.entries as { action: string, subject: string }[]
    expect(entries.map((e) => e.action)).toEqual(['institution.registered', 'api-key.created', 'rule-set.published', 'rule-set.activated', 'pull.research', 'pull.readings', 'api-key.revoked'])
    expect((await call('GET', '/v1/audit/verify', ops)).body).toEqual({ ok: true, entries: 7 })
    expect((await call('GET', '/v1/research/aggregates', research.key)).status).toBe(401) // revoked
    await t.stop()

    const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), ...args].concat(), 30_000)
    process.env.VITALMESH_DATA_DIR = t.dataDir
    try {
      const ok = await cli(['audit', 'verify'])
      expect(ok.code, ok.stderr).toBe(0)
      expect(ok.stdout).toMatch(/intact: 7 entries/)
      const db = new Database(join(t.dataDir, 'vitalmesh.db'))
      db.exec('DROP TRIGGER audit_no_update')
      db.prepare("UPDATE audit SET subject = 'someone-else' WHERE seq = 4").run()
      db.close()
      const bad = await cli(['audit', 'verify'])
      expect(bad.code).toBe(1)
      expect(bad.stderr).toMatch(/BROKEN at entry 4/)
    } finally { delete process.env.VITALMESH_DATA_DIR }
  })
})
