import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify as toYaml } from 'yaml'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { BUILTIN_RULE_SETS } from '../../alerting/index.ts'
import type { StoredReading } from '../../core/index.ts'

describe('POST /v1/rulesets/backtest', () => {
  let t: TestApp
  let research = ''
  let operator = ''
  const acc = BUILTIN_RULE_SETS.find((d) => d.id === 'acc-aha-2017')!
  const draft = { ...acc, version: '2.0.0-draft', rules: [{ ...acc.rules[0]!, alertOn: { stage1: 'info', stage2: 'warning', crisis: 'critical' } }] }

  beforeAll(async () => {
    t = await startTestApp({ 'forwarder.k': 2 })
    const reg = t.app.registry
    reg.addInstitution({ id: 'inst-a', name: 'A' })
    research = reg.addApiKey('research', 'inst-a')
    operator = t.app.demo!.apiKeys.operator
    const now = Date.now()
    const rows: StoredReading[] = []
    // four consenting residents with a stage-2 reading each, and one who did not consent with many crises
    for (const [i, id] of ['bt-1', 'bt-2', 'bt-3', 'bt-4', 'bt-no'].entries()) {
      await reg.addResident({ id }, false)
      if (id !== 'bt-no') reg.updateResident(id, { researchConsent: true })
      for (let m = 0; m < 48; m++) {
        const ts = now - 2 * 86_400_000 + m * 15 * 60_000
        const high = id === 'bt-no' ? m % 2 === 0 : m === 10 + i
        rows.push({ deviceId: `${id}-d`, residentId: id, seq: m, ts, hr: 70, sys: high ? (id === 'bt-no' ? 195 : 145) : i === 3 && m === 30 ? 132 : 115, dia: 75 })
      }
    }
    await t.app.store.write(rows)
  })
  afterAll(async () => { await t?.stop() })

  const post = async (key: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/v1/rulesets/backtest`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, body: await res.json() as Record<string, any> }
  }

  it('replays consenting residents only, against the active version, and audits the call', async () => {
    const r = await post(research, { ruleSet: draft, days: 7 })
    expect(r.status).toBe(200)
    expect(r.body.schema).toBe('vitalmesh.rule-set-backtest/1')
    expect(r.body.comparedWith).toEqual({ id: 'acc-aha-2017', version: '1.0.0' })
    expect(r.body.k).toBe(2)
    // demo residents consent to nothing: the four here
    expect(r.body.population).toMatchObject({ residents: 4, readings: 4 * 48 })
    expect(r.body.active.bySeverity.warning).toMatchObject({ alerts: 4, residents: 4 })
    expect(r.body.active.bySeverity.critical).toMatchObject({ alerts: 0 }) // bt-no's crises are not replayed
    expect(r.body.difference.bySeverity.info.suppressed).toBe(true) // one resident had a stage-1 reading: fewer than k
    const rows = t.app.registry.database.prepare("SELECT actor, action, subject FROM audit WHERE action = 'rule-set.backtested'").all() as { actor: string, subject: string }[]
    expect(rows.map((x) => [x.actor.split(':').slice(0, 2).join(':'), x.subject])).toEqual([['research:inst-a', 'acc-aha-2017@2.0.0-draft']])
  })

  it('takes YAML text, and operators may run it', async () => {
    const r = await post(operator, { ruleSet: toYaml(draft) })
    expect(r.status).toBe(200)
    expect(r.body.window.days).toBe(30)
    expect(r.body.ruleSet).toEqual({ id: 'acc-aha-2017', version: '2.0.0-draft' })
  })

  it('answers a document that does not match the schema with every issue at its path in the document', async () => {
    const bad = { ...draft, version: 'one', rules: [{ ...draft.rules[0], alertOn: { nosuch: 'warning' } }, { id: 'x', kind: 'threshold', title: 't', when: [] }] }
    const r = await post(research, { ruleSet: bad })
    expect(r.status).toBe(400)
    expect(r.body.code).toBe('VM_INVALID_RULE_SET')
    const paths = (r.body.issues as { path: unknown[] }[]).map((i) => i.path.join('.'))
    expect(paths).toContain('version')
    expect(paths).toContain('rules.1.when')
    const yaml = await post(research, { ruleSet: 'id: [unclosed' })
    expect(yaml.status).toBe(400)
    expect(yaml.body.code).toBe('VM_INVALID_RULE_SET')
    expect(yaml.body.issues[0].message).toMatch(/YAML/)
    expect((await post(research, { ruleSet: draft, days: 91 })).body.code).toBe('VM_BAD_REQUEST')
  })
})
