import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run, startAppProcess, subscribe, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'

/**
 * The foundation path with real processes only: vitalmesh as a child process, Debian's
 * mosquitto_pub as the device and mosquitto_sub as the resident.
 */
describe('wearable to alert, end to end', () => {
  let app: AppProcess
  beforeAll(async () => { app = await startAppProcess(tempDir()) })
  afterAll(async () => { await app?.kill('SIGTERM') })

  const readings = async (): Promise<{ count: number, readings: { seq: number, sys?: number, dia?: number, hr?: number, deviceId: string }[] }> => {
    const res = await fetch(`http://127.0.0.1:${app.httpPort}/v1/residents/demo-resident/readings?from=0`, {
      headers: { authorization: `Bearer ${app.creds.apiKeys.resident}` },
    })
    expect(res.status).toBe(200)
    return res.json() as never
  }

  it('stores a reading published with mosquitto_pub at QoS 1 and alerts the resident over mosquitto_sub', async () => {
    const { device, resident } = app.creds
    const sub = subscribe(['-h', '127.0.0.1', '-p', String(app.mqttPort), '-i', resident.id, '-u', resident.id, '-P', resident.password,
      '-q', '1', '-t', `alerts/${resident.id}/#`, '-t', `alerts/${resident.id}`, '-v', '-d'])
    // the alert must not be raised before the subscription exists: -d prints the SUBACK when the broker granted it
    await waitFor('mosquitto_sub\'s SUBACK', () => sub.lines.some((l) => /received SUBACK/.test(l)))

    const pub = (seq: number, sys: number, dia: number, hr: number) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(app.mqttPort),
      '-i', device.deviceId, '-u', device.deviceId, '-P', device.secret, '-q', '1', '-t', `vitals/${device.deviceId}`,
      '-m', JSON.stringify({ v: 1, seq, ts: Date.now(), sys, dia, hr })])

    const normal = await pub(1, 118, 76, 70)
    expect(normal.code, normal.stderr).toBe(0)
    const stored = await waitFor('the reading in the store', async () => (await readings()).readings.find((r) => r.seq === 1))
    expect(stored).toMatchObject({ deviceId: device.deviceId, sys: 118, dia: 76, hr: 70 })

    const crisis = await pub(2, 192, 124, 88)
    expect(crisis.code, crisis.stderr).toBe(0)
    const line = await waitFor('an alert on mosquitto_sub', () => sub.lines.find((l) => l.startsWith(`alerts/${resident.id} `) && l.includes('"acc-aha-2017/bp-category"')))
    sub.stop()
    const [topic, ...rest] = line.split(' ')
    expect(topic).toBe(`alerts/${resident.id}`)
    const alert = JSON.parse(rest.join(' '))
    expect(alert).toMatchObject({ residentId: resident.id, ruleKey: 'acc-aha-2017/bp-category', severity: 'critical', state: 'open', reading: { seq: 2, deviceId: device.deviceId }, detail: { category: 'crisis', values: { sys: 192, dia: 124 } } })
    expect(alert.message).toMatch(/emergency/)
    // the store is fed by the spool's drain, a moment after the PUBACK
    await waitFor('both readings in the store', async () => (await readings()).count === 2)
    expect((await readings()).readings.map((r) => r.seq)).toEqual([1, 2])
  })
})
