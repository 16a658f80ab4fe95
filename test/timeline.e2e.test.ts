import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, reading } from './helpers/mqtt.ts'
import { run, waitFor } from './helpers/proc.ts'

/**
 * Issue 14 end to end: mosquitto_pub as the cuff, a real HTTP endpoint as the hospital.
 * A crisis, then a normal reading taken an hour earlier (a phone syncing its history):
 * the alert stays open and the unacknowledged critical escalates.
 */
describe('alerts on the resident\'s timeline, end to end', () => {
  let t: TestApp
  let hospital: FastifyInstance
  const escalations: any[] = []

  beforeAll(async () => {
    hospital = Fastify()
    hospital.post('/alerts', async (req) => { escalations.push(req.body); return { ok: true } })
    await hospital.listen({ port: 0, host: '127.0.0.1' })
    t = await startTestApp({ 'alerting.tickMs': 100, 'alerting.escalateAfterS': 2, 'outbox.pollMs': 50 })
    t.app.registry.addHospital({ id: 'h1', name: 'County Hospital', webhookUrl: `http://127.0.0.1:${(hospital.server.address() as AddressInfo).port}/alerts` })
  })
  afterAll(async () => { await t?.stop(); await hospital?.close() })

  it('a late normal reading does not resolve the crisis; the hospital receives the escalation', async () => {
    const d = t.app.demo!.fleet[5]!
    t.app.registry.updateResident(d.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(d.residentId)
    const pub = (body: unknown) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', d.deviceId, '-u', d.deviceId, '-P', d.secret,
      '-q', '1', '-t', `vitals/${d.deviceId}`, '-m', JSON.stringify(body)])
    const now = Date.now()
    expect((await pub({ v: 1, seq: 1, ts: now, sys: 190, dia: 100 })).code).toBe(0)
    const alert = await waitFor('the crisis alert', () => t.app.alerts.activeAlerts(d.residentId).find((a) => a.severity === 'critical'))
    expect((await pub({ v: 1, seq: 2, ts: now - 3600_000, sys: 118, dia: 76 })).code).toBe(0)
    await waitFor('the hospital to receive the escalation', () => escalations.find((e) => e.alert?.id === alert.id), 15_000)
    // the late reading was evaluated (alerting's cursor is past it) and the alert is still open
    await t.app.spool.consumersIdle()
    expect(t.app.alerts.get(alert.id)).toMatchObject({ state: 'open', severity: 'critical' })
    expect(t.app.alerts.history(alert.id).map((e) => e.state)).toEqual(['open', 'escalated'])
  })

  it('a consumer that throws stops only itself: PUBACKs go on, /readyz and /v1/stats say which one failed, and it catches up once it works again', async () => {
    const d = t.app.demo!.fleet[6]!
    const dev = await connect(t.mqttPort, d.deviceId, d.secret)
    const alerts = t.app.alerts as unknown as { consume: (rows: unknown) => void }
    const real = alerts.consume.bind(t.app.alerts)
    let broken = true
    alerts.consume = (rows) => { if (broken) throw new Error('a bug in alerting'); real(rows) }
    try {
      // every PUBACK arrives while alerting is broken
      for (let seq = 1; seq <= 20; seq++) await dev.publishAsync(`vitals/${d.deviceId}`, reading(seq, { sys: seq === 20 ? 195 : 120, dia: 80 }), { qos: 1 })
      const ready = await waitFor('readyz to name the failing consumer', async () => {
        const res = await fetch(`http://127.0.0.1:${t.httpPort}/readyz`)
        const body = await res.json() as { checks: Record<string, string> }
        return res.status === 503 && body.checks['consumer:alerting']?.startsWith('VM_CONSUMER_FAILED') ? body : undefined
      })
      expect(ready.checks['consumer:forwarder']).toBe('ok')
      const stats = await (await fetch(`http://127.0.0.1:${t.httpPort}/v1/stats`, { headers: { authorization: `Bearer ${t.app.demo!.apiKeys.operator}` } })).json() as { consumers: { name: string, failing: unknown, lagRecords: number }[] }
      expect(stats.consumers.find((c) => c.name === 'alerting')).toMatchObject({ failing: { code: 'VM_CONSUMER_FAILED', message: 'a bug in alerting' } })
      expect(stats.consumers.find((c) => c.name === 'alerting')!.lagRecords).toBeGreaterThan(0)
      const metrics = await (await fetch(`http://127.0.0.1:${t.httpPort}/metrics`)).text()
      expect(metrics).toMatch(/vitalmesh_spool_consumer_failing\{consumer="alerting"\} 1/)
      expect(t.app.alerts.activeAlerts(d.residentId)).toEqual([])
    } finally {
      broken = false
    }
    // fixed: on its next retry it consumes what it missed, and the crisis is raised once
    const a = await waitFor('the missed crisis alert', () => t.app.alerts.activeAlerts(d.residentId).find((x) => x.severity === 'critical'), 15_000)
    expect(a.reading).toMatchObject({ seq: 20 })
    expect(t.app.spool.consumerStatus().find((c) => c.name === 'alerting')!.failing).toBeNull()
    await dev.endAsync()
  })
})

describe('withdrawing a rule set (issue 19), end to end', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp({ 'alerting.tickMs': 100 }) })
  afterAll(async () => { await t?.stop() })

  it('tells nobody "back in range"; the critical stays in the hospital\'s and the operator\'s view until someone closes it', async () => {
    const { apiKeys } = t.app.demo!
    const base = `http://127.0.0.1:${t.httpPort}`
    const api = async (method: string, path: string, key: string, body?: unknown) => {
      const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
      return { status: res.status, body: await res.json() as any }
    }
    t.app.registry.addHospital({ id: 'h1', name: 'County Hospital' })
    const d = t.app.demo!.fleet[7]!
    t.app.registry.updateResident(d.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(d.residentId)
    const hospitalKey = t.app.registry.addApiKey('hospital', 'h1')
    expect((await api('POST', '/v1/rulesets/esh-2023/1.0.0/activate', apiKeys.operator)).status).toBe(200)
    const told: any[] = []
    t.app.alerts.setNotifier({ ...(t.app.alerts as any).notifier, alert: (a: any, delivered: () => void) => { told.push({ ...a }); delivered() } })
    const dev = await connect(t.mqttPort, d.deviceId, d.secret)
    await dev.publishAsync(`vitals/${d.deviceId}`, reading(1, { sys: 190, dia: 112 }), { qos: 1 })
    await dev.endAsync()
    const esh = await waitFor('the ESH critical', () => t.app.alerts.activeAlerts(d.residentId).find((a) => a.ruleKey === 'esh-2023/bp-grade'))
    expect((await api('DELETE', '/v1/rulesets/esh-2023/active', apiKeys.operator)).status).toBe(200)
    const ended = await waitFor('the alert withdrawn', () => { const a = t.app.alerts.get(esh.id)!; return a.state === 'withdrawn' ? a : undefined })
    expect(ended.endedReason).toBe('rule set esh-2023 withdrawn')
    expect(t.app.alerts.history(esh.id).at(-1)!.actor).toMatch(/^operator:/)
    // a positive control: a later crisis of the same resident reaches the notifier, so anything about the withdrawal would have too
    const dev2 = await connect(t.mqttPort, d.deviceId, d.secret)
    await dev2.publishAsync(`vitals/${d.deviceId}`, reading(2, { sys: 70, dia: 40 }), { qos: 1 })
    await dev2.endAsync()
    await waitFor('the low-pressure alert sent', () => told.find((a) => a.ruleKey.startsWith('vitalmesh-safety/')))
    expect(told.filter((a) => a.id === esh.id && a.state !== 'open')).toEqual([])
    expect(told.some((a) => /Back in range|已恢复/.test(a.message))).toBe(false)
    for (const key of [apiKeys.operator, hospitalKey]) {
      const view = await api('GET', '/v1/alerts/attention', key)
      expect(view.body.alerts.map((a: any) => [a.id, a.state])).toContainEqual([esh.id, 'withdrawn'])
    }
    expect((await api('POST', `/v1/alerts/${esh.id}/close`, hospitalKey, { reason: 'reviewed with the patient' })).body).toMatchObject({ closedBy: 'hospital:h1' })
    expect((await api('GET', '/v1/alerts/attention', apiKeys.operator)).body.alerts.map((a: any) => a.id)).not.toContain(esh.id)
  })
})
