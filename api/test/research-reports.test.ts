import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ManualClock } from '../../core/index.ts'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { waitFor } from '../../test/helpers/proc.ts'

/**
 * Report-level research aggregates over HTTP, on a node whose clock the test walks: residents'
 * 24-hour profiles and home-BP weeks finish through the reports' own timer, and a research
 * institution pulls the distributions, consented and k-suppressed (k = 5, the default).
 */
describe('research: report-level aggregates', () => {
  let t: TestApp
  let research: string
  let base: string
  const DAY = 86400_000
  const start = Date.now() - 10 * DAY
  const clock = new ManualClock(start)
  const countyA = Array.from({ length: 5 }, (_, i) => `res-a-${i}`)
  const countyB = ['res-b-0', 'res-b-1']
  const residentKeys: Record<string, string> = {}

  const call = async (path: string, key: string, init: { method?: string, body?: unknown } = {}) => {
    const res = await fetch(base + path, { method: init.method ?? 'GET', headers: { authorization: `Bearer ${key}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: init.body === undefined ? undefined : JSON.stringify(init.body) })
    return { status: res.status, body: await res.json() as any }
  }

  beforeAll(async () => {
    t = await startTestApp({ 'forwarder.tickMs': 100 }, clock)
    base = `http://127.0.0.1:${t.httpPort}`
    const reg = t.app.registry
    reg.addHospital({ id: 'h1', name: 'H1' })
    reg.addInstitution({ id: 'inst-a', name: 'A' })
    research = reg.addApiKey('research', 'inst-a')
    const hospital = reg.addApiKey('hospital', 'h1')
    const all = [...countyA, 'res-a-refused', ...countyB]
    for (const id of all) {
      await reg.addResident({ id, region: id.startsWith('res-b') ? 'county-b' : 'county-a', birthYear: 1961, hospitalId: 'h1' }, false)
      residentKeys[id] = reg.addApiKey('resident', id)
      if (id !== 'res-a-refused') expect((await call(`/v1/residents/${id}/consent`, residentKeys[id]!, { method: 'PUT', body: { research: true } })).status).toBe(200)
      // a 24-hour profile for everyone, a home-BP week in county A; nobody measures: both end with insufficient data
      expect((await call(`/v1/residents/${id}/reports`, hospital, { method: 'POST', body: { protocol: 'abpm-24h', timeZone: 'Asia/Shanghai', guideline: 'esh-2023' } })).status).toBe(201)
      if (id.startsWith('res-a')) expect((await call(`/v1/residents/${id}/reports`, hospital, { method: 'POST', body: { protocol: 'home-bp-7d', timeZone: 'Asia/Shanghai', guideline: 'china-2018' } })).status).toBe(201)
    }
    clock.set(start + 9 * DAY)
    await waitFor('every report finished', () => t.app.reports.finishedOutcomes(0, Number.MAX_SAFE_INTEGER).length === all.length + countyA.length + 1)
  })
  afterAll(async () => { await t?.stop() })

  const range = () => `from=${start}&to=${clock.now()}`

  it('publishes the distribution of consenting residents per county and age band, and leaves a cell under k out', async () => {
    const r = await call(`/v1/research/report-aggregates?${range()}`, research)
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ schema: 'vitalmesh.research-report-aggregate/1', institution: 'inst-a', k: 5 })
    // county A: five consenting residents (the one who refused is not among them); county B: two, under k
    expect(r.body.dipping.cells.map((c: any) => [c.region, c.ageBand, c.residents, c.classes])).toEqual([['county-a', '60-69', 5, { 'insufficient-data': 5 }]])
    expect(r.body.dipping.suppressedCells).toBe(1)
    expect(r.body.homeBp.cells.map((c: any) => [c.region, c.residents, c.byGuideline])).toEqual([['county-a', 5, { 'china-2018': { 'insufficient-data': 5 } }]])
    expect(r.body.homeBp.suppressedCells).toBe(0)
    expect(JSON.stringify(r.body)).not.toMatch(/res-a|res-b/)
    expect(r.body.dipping.cells[0].pseudonyms).toHaveLength(5)
    expect(t.app.audit.list(0, 100_000).filter((e) => e.action === 'pull.research-reports')).toHaveLength(1)
    // a filter never brings a suppressed cell back
    const b = await call(`/v1/research/report-aggregates?${range()}&region=county-b`, research)
    expect([b.body.dipping.cells, b.body.dipping.suppressedCells]).toEqual([[], 1])
  })

  it('a resident who withdraws consent leaves the distributions, and the cell falls under k', async () => {
    expect((await call('/v1/residents/res-a-4/consent', residentKeys['res-a-4']!, { method: 'PUT', body: { research: false } })).status).toBe(200)
    const r = await call(`/v1/research/report-aggregates?${range()}`, research)
    expect([r.body.dipping.cells, r.body.dipping.suppressedCells]).toEqual([[], 2])
    expect([r.body.homeBp.cells, r.body.homeBp.suppressedCells]).toEqual([[], 1])
    expect((await call('/v1/residents/res-a-4/consent', residentKeys['res-a-4']!, { method: 'PUT', body: { research: true } })).status).toBe(200)
  })

  it('refuses bad ranges and unknown parameters with VM_BAD_REQUEST, other keys with VM_FORBIDDEN', async () => {
    for (const q of [`from=${clock.now()}&to=${start}`, `from=0&to=${400 * DAY}`, 'window=1d', 'from=yesterday']) {
      const r = await call(`/v1/research/report-aggregates?${q}`, research)
      expect([q, r.status, r.body.code]).toEqual([q, 400, 'VM_BAD_REQUEST'])
    }
    const unregistered = t.app.registry.addApiKey('research', 'inst-nowhere')
    for (const key of [unregistered, t.app.demo!.apiKeys.operator, residentKeys['res-a-0']!]) {
      const r = await call(`/v1/research/report-aggregates?${range()}`, key)
      expect([r.status, r.body.code]).toEqual([403, 'VM_FORBIDDEN'])
    }
  })
})
