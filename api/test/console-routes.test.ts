import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'
import { waitFor } from '../../test/helpers/proc.ts'

/** The small routes the console's views need: a resident's access log, a region's public statistics. */
describe('console routes', () => {
  let t: TestApp
  let hospitalKey = ''
  const base = () => `http://127.0.0.1:${t.httpPort}`
  const get = async (path: string, key?: string) => {
    const res = await fetch(base() + path, { headers: key ? { authorization: `Bearer ${key}` } : {} })
    return { status: res.status, headers: res.headers, body: await res.json() as any }
  }
  beforeAll(async () => {
    t = await startTestApp()
    t.app.registry.addHospital({ id: 'h1', name: 'H1' })
    t.app.registry.updateResident('demo-resident', { hospitalId: 'h1' })
    hospitalKey = t.app.registry.addApiKey('hospital', 'h1')
  })
  afterAll(async () => { await t?.stop() })

  it("a resident's access log lists who else read the resident's data, newest first, without the resident's own reads or key ids", async () => {
    const resident = t.app.demo!.apiKeys.resident
    expect((await get('/v1/residents/demo-resident/readings', hospitalKey)).status).toBe(200)
    expect((await get('/v1/residents/demo-resident/alerts', hospitalKey)).status).toBe(200)
    expect((await get('/v1/residents/demo-resident/readings', resident)).status).toBe(200) // own read: not recorded
    const log = await get('/v1/residents/demo-resident/access-log', resident)
    expect(log.status).toBe(200)
    const reads = log.body.entries.filter((e: any) => e.action.startsWith('pull.'))
    expect(reads.map((e: any) => [e.role, e.scope, e.action])).toEqual([['hospital', 'h1', 'pull.alerts'], ['hospital', 'h1', 'pull.readings']])
    expect(log.body.entries.every((e: any) => e.role !== 'resident')).toBe(true)
    expect(JSON.stringify(log.body)).not.toContain(hospitalKey.split('_')[1])
    // paging
    const page = await get('/v1/residents/demo-resident/access-log?limit=1', resident)
    expect(page.body.entries).toHaveLength(1)
    const rest = await get(`/v1/residents/demo-resident/access-log?limit=100&before=${page.body.next}`, resident)
    expect(rest.body.entries[0].seq).toBeLessThan(page.body.next)
    // an operator may read it, and that read is itself recorded
    expect((await get('/v1/residents/demo-resident/access-log', t.app.demo!.apiKeys.operator)).status).toBe(200)
    expect((await get('/v1/residents/demo-resident/access-log', resident)).body.entries[0]).toMatchObject({ role: 'operator', action: 'pull.access-log' })
    expect((await get('/v1/residents/demo-resident/access-log?limit=0', resident)).status).toBe(400)
  })

  it('public regional statistics need no key and suppress every cell of fewer than k (5) residents', async () => {
    const empty = await get('/public/regions/local/stats')
    expect(empty.status).toBe(200)
    expect(empty.body).toMatchObject({ region: { id: 'local' }, window: '1d', k: 5 })
    expect((await get('/public/regions/elsewhere/stats')).status).toBe(404)
    const publish = async (n: number) => {
      for (const d of t.app.demo!.fleet.slice(0, n)) {
        const c = await connect(t.mqttPort, d.deviceId, d.secret)
        await c.publishAsync(`vitals/${d.deviceId}`, reading(Date.now() % 1e9, { sys: 118, dia: 76, hr: 70 }), { qos: 1 })
        await c.endAsync()
      }
    }
    await publish(4)
    const four = await waitFor('a window of 4 residents', async () => (await get('/public/regions/local/stats')).body.windows.at(-1))
    expect(four).toMatchObject({ suppressed: true, residents: null, readings: null, bpInRange: null, alertsPer1000: null })
    await publish(5) // the 5th resident (the first four publish again)
    const five = await waitFor('a window of 5 residents', async () => { const w = (await get('/public/regions/local/stats')).body.windows.at(-1); return w?.suppressed === false ? w : undefined })
    expect(five).toMatchObject({ suppressed: false, residents: 5, readings: 9, bpInRange: 1, alertsPer1000: 0 })
    const body = JSON.stringify((await get('/public/regions/local/stats')).body)
    expect(body).not.toMatch(/demo-res|demo-dev/)
  })
})
