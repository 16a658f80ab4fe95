import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect, subackCodes } from './helpers/mqtt.ts'
import { openLive } from './helpers/live.ts'
import { run, subscribe, waitFor } from './helpers/proc.ts'

/**
 * Issue 16: followers and the escalation chain, end to end. The resident invites a relative,
 * who accepts and listens with Debian's mosquitto_sub; a cuff (mosquitto_pub) sends a crisis
 * nobody acknowledges: it walks resident → follower (MQTT) → duty desk (the worklist the
 * console shows) → hospital (a real HTTP endpoint). A second crisis is acknowledged by the
 * follower over MQTT, and the chain stops there.
 */
describe('followers and the escalation chain, end to end', () => {
  let t: TestApp
  let hospital: FastifyInstance
  const escalations: any[] = []
  let base: string
  let residentKey: string
  const api = async (method: string, path: string, key: string | undefined, body?: unknown): Promise<{ status: number, body: any }> => {
    const res = await fetch(base + path, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: await res.json().catch(() => null) }
  }

  /** resolves when the broker granted a subscription to this client */
  const subscribedOnce = (clientId: string): Promise<void> => new Promise((resolve) => {
    const on = (_subs: unknown, client: { id: string } | null): void => { if (client?.id === clientId) { t.app.broker.aedes.off('subscribe', on); resolve() } }
    t.app.broker.aedes.on('subscribe', on)
  })

  beforeAll(async () => {
    hospital = Fastify()
    hospital.post('/alerts', async (req) => { escalations.push(req.body); return { ok: true } })
    await hospital.listen({ port: 0, host: '127.0.0.1' })
    t = await startTestApp({ 'alerting.tickMs': 100, 'alerting.followersAfterS': 1, 'alerting.deskAfterS': 3, 'alerting.escalateAfterS': 5, 'outbox.pollMs': 50 })
    base = `http://127.0.0.1:${t.httpPort}`
    t.app.registry.addHospital({ id: 'h1', name: 'County Hospital', webhookUrl: `http://127.0.0.1:${(hospital.server.address() as AddressInfo).port}/alerts` })
    residentKey = t.app.demo!.apiKeys.resident
  })
  afterAll(async () => { await t?.stop(); await hospital?.close() })

  it('invite → accept → the follower is told on MQTT as the chain walks to the desk and the hospital; its acknowledgement stops a second chain', async () => {
    const residentId = t.app.demo!.resident.id
    const device = t.app.demo!.device
    t.app.registry.updateResident(residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(residentId)

    // the resident invites its daughter; the code is all she needs
    const inv = await api('POST', `/v1/residents/${residentId}/followers`, residentKey, { name: '女儿', relation: 'family' })
    expect(inv.status).toBe(201)
    expect(inv.body.follower).toMatchObject({ status: 'invited', relation: 'family', name: '女儿' })
    expect(inv.body.follower).not.toHaveProperty('apiKeyId')
    const acc = await api('POST', '/v1/followers/accept', undefined, { code: inv.body.invitation.code, notify: 'escalations', channels: ['mqtt', 'live'] })
    expect(acc.status).toBe(201)
    const fid: string = acc.body.follower.id
    expect(acc.body.mqtt).toMatchObject({ username: fid, topic: `followers/${fid}/alerts`, ackTopic: `followers/${fid}/ack` })
    // the code works once
    expect(await api('POST', '/v1/followers/accept', undefined, { code: inv.body.invitation.code })).toMatchObject({ status: 404, body: { code: 'VM_INVITATION_INVALID' } })

    // the follower listens the way an app would, with its own identity
    const subscribed = subscribedOnce(fid)
    const sub = subscribe(['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', fid, '-u', fid, '-P', acc.body.mqtt.password, '-q', '1', '-t', acc.body.mqtt.topic, '-v'])
    await subscribed
    // and its follower key sees the resident's alerts, not its readings
    expect((await api('GET', `/v1/residents/${residentId}/readings`, acc.body.apiKey)).status).toBe(403)

    const pub = (seq: number, sys: number, dia: number) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', device.deviceId, '-u', device.deviceId, '-P', device.secret,
      '-q', '1', '-t', `vitals/${device.deviceId}`, '-m', JSON.stringify({ v: 1, seq, ts: Date.now(), sys, dia })])
    expect((await pub(1, 192, 104)).code).toBe(0)
    const alert = await waitFor('the crisis alert', () => t.app.alerts.activeAlerts(residentId).find((a) => a.severity === 'critical'))

    // step 2: the follower (notify: escalations, so nothing before the step)
    const line = await waitFor('the follower\'s escalation notice on MQTT', () => sub.lines.find((l) => l.includes(alert.id)), 10_000)
    const notice = JSON.parse(line.slice(line.indexOf(' ') + 1))
    expect(notice).toMatchObject({ type: 'escalation', followerId: fid, residentId, alert: { id: alert.id, severity: 'critical' }, language: 'zh-CN' })
    expect(notice.message).toContain('未确认')
    // step 3: the duty desk's worklist; step 4: the hospital
    await waitFor('the duty desk step', () => t.app.alerts.get(alert.id)?.deskAt)
    const attention = await api('GET', '/v1/alerts/attention', t.app.demo!.apiKeys.operator)
    expect(attention.body.alerts[0]).toMatchObject({ id: alert.id })
    expect(attention.body.alerts[0].deskAt).not.toBeNull()
    await waitFor('the hospital to receive the escalation', () => escalations.find((e) => e.alert?.id === alert.id), 15_000)
    const hist = await api('GET', `/v1/alerts/${alert.id}/history`, t.app.demo!.apiKeys.operator)
    expect(hist.body.transitions.map((e: any) => e.state)).toEqual(['open', 'escalated:followers:1', 'escalated:duty-desk', 'escalated'])
    expect(hist.body.followers).toEqual([expect.objectContaining({ followerId: fid, kind: 'escalation', deliveredAt: expect.any(Number) })])
    // the follower reads the history too (and that read is in the resident's access log, named as the resident named her)
    expect((await api('GET', `/v1/alerts/${alert.id}/history`, acc.body.apiKey)).status).toBe(200)
    const log = await api('GET', `/v1/residents/${residentId}/access-log`, residentKey)
    expect(log.body.entries.find((e: any) => e.action === 'pull.alert-history' && e.role === 'follower')).toMatchObject({ follower: { name: '女儿', relation: 'family' } })
    sub.stop()

    // another resident's son follows his father; this time the follower acknowledges, and the chain stops at him
    const father = t.app.demo!.fleet[3]!
    t.app.registry.updateResident(father.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(father.residentId)
    const fatherKey = t.app.registry.addApiKey('resident', father.residentId)
    const inv2 = await api('POST', `/v1/residents/${father.residentId}/followers`, fatherKey, { name: '儿子', relation: 'family' })
    const son = (await api('POST', '/v1/followers/accept', undefined, { code: inv2.body.invitation.code })).body
    const sid: string = son.follower.id
    const subscribed2 = subscribedOnce(sid)
    const sub2 = subscribe(['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', sid, '-u', sid, '-P', son.mqtt.password, '-q', '1', '-t', son.mqtt.topic, '-v'])
    await subscribed2
    expect((await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', father.deviceId, '-u', father.deviceId, '-P', father.secret,
      '-q', '1', '-t', `vitals/${father.deviceId}`, '-m', JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 195, dia: 106 })])).code).toBe(0)
    const second = await waitFor('the father\'s crisis alert', () => t.app.alerts.activeAlerts(father.residentId).find((a) => a.severity === 'critical'))
    // notify defaults to criticals: the son gets the copy at once, then the escalation step
    await waitFor('the son\'s copy and escalation notice', () => {
      const kinds = sub2.lines.filter((l) => l.includes(second.id)).map((l) => JSON.parse(l.slice(l.indexOf(' ') + 1)).type)
      return kinds.includes('alert') && kinds.includes('escalation') ? kinds : undefined
    }, 10_000)
    const fid2 = sid
    const ackWith = son.mqtt
    // the follower acknowledges over MQTT, from its app
    expect((await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', `${fid2}:ack`, '-u', fid2, '-P', ackWith.password, '-q', '1', '-t', ackWith.ackTopic, '-m', JSON.stringify({ id: second.id })])).code).toBe(0)
    await waitFor('the follower\'s acknowledgement', () => t.app.alerts.get(second.id)?.state === 'acknowledged' || undefined)
    expect(t.app.alerts.get(second.id)).toMatchObject({ acknowledgedBy: `follower:${fid2}` })
    // the chain stopped there. A positive control: another resident's crisis, opened after the
    // acknowledgement and left alone, reaches the hospital; by then the acknowledged one would have too
    const control = t.app.demo!.fleet[2]!
    t.app.registry.updateResident(control.residentId, { hospitalId: 'h1' })
    t.app.rulesChanged(control.residentId)
    expect((await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', control.deviceId, '-u', control.deviceId, '-P', control.secret,
      '-q', '1', '-t', `vitals/${control.deviceId}`, '-m', JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 193, dia: 103 })])).code).toBe(0)
    await waitFor('the control crisis to reach the hospital', () => escalations.find((e) => e.resident?.id === control.residentId), 15_000)
    expect(t.app.alerts.history(second.id).map((e) => e.state)).toEqual(['open', 'escalated:followers:1', 'acknowledged'])
    expect(t.app.alerts.get(second.id)).toMatchObject({ deskAt: null, escalatedAt: null })
    expect(escalations.filter((e) => e.alert?.id === second.id)).toEqual([])
    sub2.stop()
  })

  it('a follower sees only what it may: MQTT ACL, live stream alerts without readings, and removal ends its key and sessions', async () => {
    const residentId = t.app.demo!.resident.id
    const inv = await api('POST', `/v1/residents/${residentId}/followers`, residentKey, { name: 'Dr Li', relation: 'community-doctor', language: 'en' })
    const acc = await api('POST', '/v1/followers/accept', undefined, { code: inv.body.invitation.code, notify: 'all' })
    const fid: string = acc.body.follower.id
    expect((await api('GET', '/v1/followers/me', acc.body.apiKey)).body).toMatchObject({ follower: { id: fid, language: 'en', notify: 'all' }, resident: { id: residentId } })

    const c = await connect(t.mqttPort, fid, acc.body.mqtt.password, { clientId: fid })
    // its own topic only: not the resident's alerts, not another follower's, not the devices'
    expect(await subackCodes(c, [`followers/${fid}/alerts`, `alerts/${residentId}`, 'followers/+/alerts', 'vitals/#'])).toEqual({ [`followers/${fid}/alerts`]: 1, [`alerts/${residentId}`]: 128, 'followers/+/alerts': 128, 'vitals/#': 128 })
    const live = await openLive(t.httpPort, acc.body.apiKey)
    live.send(JSON.stringify({ type: 'watch', residentId }))
    expect(await live.next((m) => m.type === 'error')).toMatchObject({ code: 'VM_FORBIDDEN' })
    // but the resident's alerts come on the live stream (notify: all), without who on the staff handled them:
    // a crisis (a new alert, or the one still open), then the resident acknowledges it
    const dev = t.app.demo!.device
    const cuff = await connect(t.mqttPort, dev.deviceId, dev.secret)
    await cuff.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq: 100, ts: Date.now(), sys: 196, dia: 118 }), { qos: 1 })
    await cuff.endAsync()
    const crisis = await waitFor('an open crisis', () => t.app.alerts.activeAlerts(residentId).find((a) => a.severity === 'critical' && a.state === 'open'))
    const from = live.messages.length
    expect((await api('POST', `/v1/alerts/${crisis.id}/ack`, residentKey)).status).toBe(200)
    const pushed = await live.next((m) => m.type === 'alert' && (m.alert as { state?: string }).state === 'acknowledged', 5000, from) as { alert: Record<string, unknown> }
    expect(pushed.alert).toMatchObject({ id: crisis.id, residentId, severity: 'critical' })
    expect(Object.keys(pushed.alert)).not.toContain('acknowledgedBy')
    expect(Object.keys(pushed.alert)).not.toContain('assignedTo')

    // the resident lists and removes the doctor: the key, the password and the session end now
    const list = await api('GET', `/v1/residents/${residentId}/followers`, residentKey)
    expect(list.body.followers.map((f: any) => [f.name, f.status])).toEqual(expect.arrayContaining([['女儿', 'active'], ['Dr Li', 'active']]))
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
    const del = await api('DELETE', `/v1/residents/${residentId}/followers/${fid}`, residentKey)
    expect(del.body.follower).toMatchObject({ status: 'removed' })
    await closed
    expect((await api('GET', '/v1/followers/me', acc.body.apiKey)).status).toBe(401)
    await live.closed
    const again = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(t.mqttPort), '-i', fid, '-u', fid, '-P', acc.body.mqtt.password, '-t', `followers/${fid}/alerts`, '-C', '1', '-W', '3'])
    expect(again.code).not.toBe(0)
    expect(again.stderr).toMatch(/not authori[sz]ed|Connection Refused/i)
    const audit = await api('GET', `/v1/residents/${residentId}/access-log`, residentKey)
    expect(audit.body.entries.map((e: any) => e.action)).toEqual(expect.arrayContaining(['follower.accepted']))
    await c.endAsync(true).catch(() => {})
  })

  it('bad input gets a stable code: an invented code, a malformed invitation, a follower key acknowledging another resident\'s alert', async () => {
    expect(await api('POST', '/v1/followers/accept', undefined, { code: 'vmi_fol-0000000000_' + 'a'.repeat(32) })).toMatchObject({ status: 404, body: { code: 'VM_INVITATION_INVALID' } })
    expect(await api('POST', '/v1/followers/accept', undefined, { code: 'x', notify: 'everything' })).toMatchObject({ status: 400, body: { code: 'VM_BAD_REQUEST' } })
    expect(await api('POST', `/v1/residents/${t.app.demo!.resident.id}/followers`, residentKey, { name: '', relation: 'neighbour' })).toMatchObject({ status: 400, body: { code: 'VM_BAD_REQUEST' } })
    // a follower key cannot be minted by hand
    expect(await api('POST', '/v1/api-keys', t.app.demo!.apiKeys.operator, { role: 'follower', scope: 'x' })).toMatchObject({ status: 400 })
    const other = t.app.demo!.fleet[1]!
    const inv = await api('POST', `/v1/residents/${t.app.demo!.resident.id}/followers`, residentKey, { name: 'Son', relation: 'family' })
    const acc = await api('POST', '/v1/followers/accept', undefined, { code: inv.body.invitation.code })
    const dev = await connect(t.mqttPort, other.deviceId, other.secret)
    await dev.publishAsync(`vitals/${other.deviceId}`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 191, dia: 101 }), { qos: 1 })
    const a = await waitFor('the other resident\'s alert', () => t.app.alerts.activeAlerts(other.residentId).find((x) => x.severity === 'critical'))
    expect(await api('POST', `/v1/alerts/${a.id}/ack`, acc.body.apiKey)).toMatchObject({ status: 403, body: { code: 'VM_FORBIDDEN' } })
    expect(await api('GET', `/v1/residents/${other.residentId}/alerts`, acc.body.apiKey)).toMatchObject({ status: 403 })
    await dev.endAsync()
  })
})
