import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Fastify, { type FastifyInstance } from 'fastify'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, collect, reading } from './helpers/mqtt.ts'
import { run, waitFor, ROOT } from './helpers/proc.ts'

/** The rule engine end to end: real broker, real MQTT clients, a real HTTP hospital endpoint. */
describe('rule engine end to end', () => {
  let t: TestApp
  let base: string
  let hospital: FastifyInstance
  const received: { headers: Record<string, unknown>, body: any }[] = []
  let failFirst = 2

  beforeAll(async () => {
    // a hospital endpoint that fails twice (as during a deployment) and then records what it gets
    hospital = Fastify()
    hospital.post('/vitalmesh/alerts', async (req, reply) => {
      if (failFirst-- > 0) return reply.status(503).header('retry-after', '0').send()
      received.push({ headers: req.headers, body: req.body })
      return { ok: true }
    })
    await hospital.listen({ port: 0, host: '127.0.0.1' })
    t = await startTestApp({ 'alerting.tickMs': 100, 'alerting.escalateAfterS': 1, 'outbox.pollMs': 50, 'outbox.maxBackoffMs': 200 })
    base = `http://127.0.0.1:${t.httpPort}`
    t.app.registry.addHospital({ id: 'h1', name: 'County Hospital', webhookUrl: `http://127.0.0.1:${(hospital.server.address() as AddressInfo).port}/vitalmesh/alerts`, webhookToken: 'hospital-secret' })
  })
  afterAll(async () => { await t?.stop(); await hospital?.close() })

  const api = async (method: string, path: string, key: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': type } : {}) }, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) })
    return { status: res.status, body: await res.json() as any }
  }

  it('sustained tachycardia from the simulator raises exactly one alert, which resolves after recovery with hysteresis', async () => {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'firmware-sim/cli.ts'), '--url', `mqtt://127.0.0.1:${t.mqttPort}`,
      '--credentials', join(t.dataDir, 'demo-credentials.json'), '--devices', '1', '--interval', '0.1', '--duration', '6', '--sim-step', '30', '--scenario', 'sustained-tachycardia'], 40_000)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const hr = t.app.alerts.forResident('demo-resident').filter((a) => a.ruleKey === 'wearable-hr/hr-high-rest')
    expect(hr.length).toBe(1)
    expect(hr[0]!.state).toBe('resolved')
    expect(t.app.alerts.history(hr[0]!.id).map((e) => e.state)).toEqual(['open', 'resolved'])
    // the simulator printed both notifications the resident received
    expect(r.stdout.match(/ALERT alerts\/demo-resident \[warning, open\] High heart rate at rest/g)?.length).toBe(1)
    expect(r.stdout).toMatch(/ALERT alerts\/demo-resident \[warning, resolved\] Back in range: High heart rate at rest/)
    // hysteresis: the readings at 118 bpm (under 120, inside the 5 bpm margin) did not start the clearing;
    // the hold-down began with the first clearly normal reading
    await t.app.drain.idle()
    const readings = await t.app.store.queryRange('demo-resident', 0, Date.now() + 1e6, 1000)
    const firstNormal = readings.find((x, i) => i > 30 && x.hr! < 115)!
    expect(readings.some((x) => x.hr === 118)).toBe(true)
    const db = new Database(join(t.dataDir, 'vitalmesh.db'), { readonly: true })
    const row = db.prepare('SELECT clear_since FROM alerts WHERE id = ?').get(hr[0]!.id) as { clear_since: number }
    db.close()
    expect(row.clear_since).toBe(firstNormal.ts)
  })

  it('a rule set published by a research key changes what raises alerts only once an operator activates it', async () => {
    const { apiKeys } = t.app.demo!
    t.app.registry.addInstitution({ id: 'inst-a', name: 'A' }) // a research key publishes for a registered institution only
    const research = t.app.registry.addApiKey('research', 'inst-a')
    const d = t.app.demo!.fleet[20]!
    const dev = await connect(t.mqttPort, d.deviceId, d.secret)
    const res = await connect(t.mqttPort, d.residentId, (await setResidentPassword(d.residentId)))
    const inbox = collect(res)
    await res.subscribeAsync(`alerts/${d.residentId}`, { qos: 1 })
    let seq = 0
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(++seq, { hr: 105 }), { qos: 1 })

    const yaml = `id: inst-a-tachy\nversion: 1.0.0\npublisher: Institute A\ncitation: Institute A cohort study 2026\neffectiveDate: 2026-01-01\naudience: { kind: cohort, regions: [demo-county] }\nrules:\n  - id: hr-over-100\n    kind: threshold\n    severity: warning\n    title: { en: Heart rate over 100, zh-CN: 心率超过 100 }\n    when: [{ metric: hr, op: '>', value: 100 }]\n`
    expect((await api('POST', '/v1/rulesets', apiKeys.operator, yaml, 'application/yaml')).status).toBe(403) // operators do not publish
    expect(await api('POST', '/v1/rulesets', research, yaml, 'application/yaml')).toMatchObject({ status: 201, body: { id: 'inst-a-tachy', version: '1.0.0', active: false } })
    expect((await api('POST', '/v1/rulesets', research, yaml, 'application/yaml')).body.code).toBe('VM_CONFLICT')
    expect((await api('POST', '/v1/rulesets', research, { id: 'x', version: 'one' })).body.code).toBe('VM_INVALID_RULE_SET')
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(++seq, { hr: 106 }), { qos: 1 })
    // published but not active: nothing changes. The reading was evaluated in the commit that preceded its PUBACK
    expect(t.app.alerts.forResident(d.residentId).filter((a) => a.ruleKey.startsWith('inst-a-tachy/'))).toEqual([])

    expect((await api('POST', '/v1/rulesets/inst-a-tachy/1.0.0/activate', research)).status).toBe(403)
    expect((await api('POST', '/v1/rulesets/inst-a-tachy/1.0.0/activate', apiKeys.operator)).status).toBe(200)
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(++seq, { hr: 107 }), { qos: 1 })
    const alert = await inbox.next(`alerts/${d.residentId}`, (b) => b.ruleKey === 'inst-a-tachy/hr-over-100')
    expect(alert).toMatchObject({ severity: 'warning', state: 'open', ruleSetVersion: '1.0.0', reading: { seq: 3 } })
    // an alert for the readings before the activation would have been published before this one: it is the first message
    expect(inbox.messages.map((m) => m.body.reading?.seq)).toEqual([3])
    const standards = await api('GET', '/v1/standards', apiKeys.resident)
    expect(standards.body.ruleSets.map((r: { id: string }) => r.id)).toContain('inst-a-tachy')
    const versions = await api('GET', '/v1/rulesets', research)
    expect(versions.body.versions.find((v: { id: string }) => v.id === 'inst-a-tachy')).toMatchObject({ active: true, publishedBy: 'research:inst-a' })

    // a device reads the standards in force from the retained topic, to warn locally
    const std = collect(dev)
    await dev.subscribeAsync('standards/current', { qos: 1 })
    const retained = await std.next('standards/current', (b) => b.ruleSets?.some((r: { id: string }) => r.id === 'inst-a-tachy'))
    expect(retained.ruleSets.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining(['acc-aha-2017', 'wearable-hr', 'inst-a-tachy']))

    // the resident acknowledges over MQTT; the retained status topic follows
    await res.publishAsync(`alerts/${d.residentId}/ack`, JSON.stringify({ id: alert.id }), { qos: 1 })
    await waitFor('the acknowledgement', () => t.app.alerts.get(alert.id)?.state === 'acknowledged')
    expect(t.app.alerts.history(alert.id).map((e) => [e.state, e.actor])).toEqual([['open', 'engine'], ['acknowledged', `resident:${d.residentId}`]])
    await res.subscribeAsync(`alerts/${d.residentId}/status`, { qos: 1 })
    expect(await inbox.next(`alerts/${d.residentId}/status`)).toMatchObject({ worst: 'warning', active: [{ id: alert.id, state: 'acknowledged' }] })
    expect((await api('DELETE', '/v1/rulesets/inst-a-tachy/active', apiKeys.operator)).status).toBe(200)
    await dev.endAsync(); await res.endAsync()
  })

  it('a device that goes silent triggers the no-data alert', async () => {
    t.app.registry.addInstitution({ id: 'inst-b', name: 'B' })
    const research = t.app.registry.addApiKey('research', 'inst-b')
    const d = t.app.demo!.fleet[21]!
    const doc = {
      id: 'silence', version: '1.0.0', publisher: 'Institute B', citation: 'operational rule', effectiveDate: '2026-01-01',
      audience: { kind: 'resident', residentId: d.residentId },
      rules: [{ id: 'no-data', kind: 'noData', severity: 'warning', title: 'No data', forS: 1 }],
    }
    expect((await api('POST', '/v1/rulesets', research, doc)).status).toBe(201)
    expect((await api('POST', '/v1/rulesets/silence/1.0.0/activate', t.app.demo!.apiKeys.operator)).status).toBe(200)
    const res = await connect(t.mqttPort, d.residentId, await setResidentPassword(d.residentId))
    const inbox = collect(res)
    await res.subscribeAsync(`alerts/${d.residentId}`, { qos: 1 })
    const dev = await connect(t.mqttPort, d.deviceId, d.secret)
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(1), { qos: 1 })
    await dev.endAsync() // then silence
    const alert = await inbox.next(`alerts/${d.residentId}`, (b) => b.ruleKey === 'silence/no-data', 5000)
    expect(alert.message).toMatch(/no reading from your devices/)
    const dev2 = await connect(t.mqttPort, d.deviceId, d.secret)
    await dev2.publishAsync(`vitals/${d.deviceId}`, reading(2), { qos: 1 })
    expect(await inbox.next(`alerts/${d.residentId}`, (b) => b.ruleKey === 'silence/no-data' && b.state === 'resolved')).toBeTruthy()
    await dev2.endAsync(); await res.endAsync()
    t.app.ruleSets.deactivate('silence', 'test')
    t.app.rulesChanged()
  })

  it('an unacknowledged critical alert reaches the hospital\'s real HTTP endpoint, once, despite its first failures', async () => {
    const d = t.app.demo!.fleet[22]!
    t.app.registry.updateResident(d.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(d.residentId)
    const dev = await connect(t.mqttPort, d.deviceId, d.secret)
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(1, { sys: 200, dia: 125, hr: 95 }), { qos: 1 })
    await dev.endAsync()
    await waitFor('the hospital to receive the escalation', () => received.length >= 1, 10_000)
    // once: a second patient's critical alert, raised now, is escalated a second later through the same outbox (in order);
    // by the time it arrives the engine has passed over the first alert some ten ticks more, and anything re-sent has arrived
    const d2 = t.app.demo!.fleet[23]!
    t.app.registry.updateResident(d2.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(d2.residentId)
    const dev2 = await connect(t.mqttPort, d2.deviceId, d2.secret)
    await dev2.publishAsync(`vitals/${d2.deviceId}`, reading(1, { sys: 200, dia: 125, hr: 95 }), { qos: 1 })
    await dev2.endAsync()
    await waitFor('the second patient\'s escalation', () => received.some((x) => x.body.resident?.id === d2.residentId), 10_000)
    expect(received.map((x) => x.body.resident.id)).toEqual([d.residentId, d2.residentId])
    const [got] = received
    expect(got!.headers.authorization).toBe('Bearer hospital-secret')
    expect(got!.body).toMatchObject({ type: 'vitalmesh.alert.escalated', hospitalId: 'h1', resident: { id: d.residentId }, alert: { severity: 'critical', state: 'open' } })
    expect(got!.headers['idempotency-key']).toBe(`escalation:${got!.body.alert.id}`)
    expect(t.app.outbox.stats.failures).toBeGreaterThanOrEqual(2)
    // the hospital sets a personal threshold for its patient; other hospitals and residents may not
    const key = t.app.registry.addApiKey('hospital', 'h1')
    const other = t.app.registry.addApiKey('hospital', 'h2')
    expect((await api('PUT', `/v1/residents/${d.residentId}/overrides`, other, { ruleKey: 'acc-aha-2017/bp-category', params: { value: 1 } })).status).toBe(403)
    expect((await api('PUT', `/v1/residents/${d.residentId}/overrides`, key, { ruleKey: 'wearable-hr/hr-high-rest', params: { value: 100 } })).status).toBe(200)
    expect((await api('GET', `/v1/residents/${d.residentId}/alerts`, key)).body.alerts[0]).toMatchObject({ severity: 'critical' })
    expect((await api('GET', `/v1/residents/${d.residentId}/alerts`, other)).status).toBe(403)
  })

  async function setResidentPassword (residentId: string): Promise<string> {
    // the demo fleet's residents have no MQTT password; give them one as an operator would
    const { newSecret, hashSecret, SCRYPT_COST } = await import('../core/index.ts')
    const secret = newSecret()
    const db = new Database(join(t.dataDir, 'vitalmesh.db'))
    db.prepare('UPDATE residents SET secret_hash = ? WHERE id = ?').run(await hashSecret(secret, SCRYPT_COST.password), residentId)
    db.close()
    return secret
  }
})
