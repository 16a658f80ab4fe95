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
