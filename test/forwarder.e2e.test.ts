import { afterAll, describe, expect, it } from 'vitest'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { startTestApp, type TestApp } from './helpers/app.ts'
import { connect } from './helpers/mqtt.ts'
import { nodeStats, startAppProcess, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'
import { fhirServer, freePort, type FhirServer } from './helpers/fhir.ts'
import type { DemoDevice } from '../registry/index.ts'

const WINDOW_MS = 2000
const FAST = { 'forwarder.windows': '2s', 'forwarder.latenessS': 1, 'forwarder.tickMs': 100, 'outbox.pollMs': 50, 'outbox.maxBackoffMs': 300, 'outbox.breakerOpenMs': 200 }
const FAST_ENV = { VITALMESH_WINDOWS: '2s', VITALMESH_WINDOW_LATENESS_S: '1', VITALMESH_FORWARDER_TICK_MS: '100', VITALMESH_OUTBOX_POLL_MS: '50', VITALMESH_OUTBOX_MAX_BACKOFF_MS: '300', VITALMESH_OUTBOX_BREAKER_OPEN_MS: '200' }

/** Publishes readings from each device for `ms`; returns the windows each resident has data in. */
async function publishFor (port: number, devices: DemoDevice[], ms: number, everyMs = 200): Promise<Map<string, Set<number>>> {
  const clients = await Promise.all(devices.map((d) => connect(port, d.deviceId, d.secret)))
  const windows = new Map<string, Set<number>>(devices.map((d) => [d.residentId, new Set()]))
  const end = Date.now() + ms
  let seq = 0
  while (Date.now() < end) {
    seq++
    await Promise.all(devices.map((d, i) => {
      const ts = Date.now()
      windows.get(d.residentId)!.add(ts - (ts % WINDOW_MS))
      return clients[i]!.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, seq, ts, hr: 60 + ((seq * 7 + i) % 50), sys: 110 + ((seq * 3 + i) % 40), dia: 70 + (seq % 15) }), { qos: 1 })
    }))
    await new Promise((r) => setTimeout(r, everyMs)) // real elapsed time: readings are stamped with Date.now() and must span several windows
  }
  await Promise.all(clients.map((c) => c.endAsync()))
  return windows
}

function expectedIdentifiers (node: string, windows: Map<string, Set<number>>): Set<string> {
  const ids = new Set<string>()
  for (const [res, starts] of windows) {
    for (const start of starts) {
      // the mean BP as a panel (both means over the same readings); other BP statistics per metric, never combined
      ids.add(`${node}/${res}/2s/${new Date(start).toISOString()}/bp/mean`)
      for (const m of ['sys', 'dia']) for (const st of ['min', 'max', 'p50', 'p95']) ids.add(`${node}/${res}/2s/${new Date(start).toISOString()}/${m}/${st}`)
      for (const st of ['mean', 'min', 'max', 'p50', 'p95']) ids.add(`${node}/${res}/2s/${new Date(start).toISOString()}/hr/${st}`)
    }
  }
  return ids
}

async function api (port: number, method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined })
  return { status: res.status, body: await res.json() as any }
}

describe('forwarder: FHIR summaries to hospitals', () => {
  let t: TestApp | undefined
  let hospital: FhirServer | undefined
  let proc: AppProcess | undefined
  afterAll(async () => { await t?.stop(); await hospital?.stop(); await proc?.kill('SIGKILL') })

  it('a hospital endpoint that is down for a while receives every Bundle when it comes back, each Observation exactly once', async () => {
    const port = await freePort()
    hospital = fhirServer(port)
    t = await startTestApp(FAST)
    const ops = t.app.demo!.apiKeys.operator
    expect((await api(t.httpPort, 'POST', '/v1/hospitals', ops, { id: 'h1', name: 'County Hospital', fhirUrl: `http://127.0.0.1:${port}/fhir`, fhirSecret: 'fhir-token', feeds: ['reports', 'alerts', 'summaries'] })).status).toBe(201)
    const devices = t.app.demo!.fleet.slice(30, 33)
    for (const d of devices) expect((await api(t.httpPort, 'PATCH', `/v1/residents/${d.residentId}`, ops, { hospitalId: 'h1' })).status).toBe(200)
    const other = t.app.demo!.fleet[33]! // not a patient of h1: must not be sent
    const windows = await publishFor(t.mqttPort, [...devices, other], 4500)
    windows.delete(other.residentId)
    await waitFor('deliveries to fail while the hospital is down', () => t!.app.outbox.stats.failures >= 3, 10_000)
    await hospital.start()
    const expected = expectedIdentifiers('local', windows)
    await waitFor('every Observation at the hospital', () => hospital!.observations.size >= expected.size && t!.app.outbox.pending() === 0, 20_000)
    expect(new Set(hospital.observations.keys())).toEqual(expected)
    expect([...hospital.observations.values()].every((o) => o.creates === 1)).toBe(true)
    expect(hospital.invalid).toEqual([])
    expect(hospital.headers.every((h) => h.authorization === 'Bearer fhir-token' && String(h['idempotency-key']).startsWith('fhir:'))).toBe(true)
    const obs = [...hospital.observations.values()][0]!.resource
    expect(obs.subject.identifier.value).toMatch(/^demo-res-03[123]$/)
  })

  it('a late reading from a device that was offline is folded into its own window, and a corrected summary is sent', async () => {
    const d = t!.app.demo!.fleet[30]! // a patient of h1 (first test)
    const c = await connect(t!.mqttPort, d.deviceId, d.secret)
    const now = Date.now()
    const start = now - (now % WINDOW_MS) - 20 * WINDOW_MS // a window long closed (lateness 1 s), before this app received anything
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, seq: 10_000, ts: start + 100, hr: 64, sys: 118, dia: 76 }), { qos: 1 })
    await waitFor('that window to be sent', () => hospital!.observations.has(`local/${d.residentId}/2s/${new Date(start).toISOString()}/hr/mean`), 10_000)
    const id = `local/${d.residentId}/2s/${new Date(start).toISOString()}/hr/max`
    expect(hospital!.observations.get(id)!.resource).toMatchObject({ status: 'final', valueQuantity: { value: 64 } })
    // the device comes back online with a reading it took in that window
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, readings: [{ seq: 10_001, ts: start + 500, hr: 150, sys: 120, dia: 78 }] }), { qos: 1 })
    await waitFor('the corrected summary', () => hospital!.observations.get(id)!.updates >= 1, 10_000)
    const o = hospital!.observations.get(id)!
    expect(o.creates).toBe(1)
    expect(o.resource).toMatchObject({ status: 'amended', valueQuantity: { value: 150 }, method: { text: 'maximum of 2 readings over 2s' } })
    expect(t!.app.aggregator.stats.corrections).toBeGreaterThanOrEqual(1)
    await c.endAsync()
  })

  it('killed with SIGKILL during delivery and restarted: nothing lost, nothing duplicated at the receiver', async () => {
    const port = await freePort()
    const slow = fhirServer(port, { delayMs: 300 })
    await slow.start()
    const dataDir = tempDir()
    proc = await startAppProcess(dataDir, FAST_ENV)
    const ops = proc.creds.apiKeys.operator
    expect((await api(proc.httpPort, 'POST', '/v1/hospitals', ops, { id: 'h1', name: 'H', fhirUrl: `http://127.0.0.1:${port}/fhir`, fhirAuth: 'hmac', fhirSecret: 's3cret', feeds: ['summaries'] })).status).toBe(201)
    const devices = proc.creds.fleet.slice(0, 4)
    for (const d of devices) await api(proc.httpPort, 'PATCH', `/v1/residents/${d.residentId}`, ops, { hospitalId: 'h1' })
    const windows = await publishFor(proc.mqttPort, devices, 5000, 100)
    await waitFor('a first Bundle to arrive', () => slow.bundles >= 1, 10_000, 10)
    await proc.kill('SIGKILL') // while later Bundles are queued or in flight
    const before = slow.bundles
    proc = await startAppProcess(dataDir, FAST_ENV)
    const expected = expectedIdentifiers('local', windows)
    await waitFor('every Observation after the restart', () => slow.observations.size >= expected.size, 30_000)
    // anything re-sent after the restart has arrived once a later window has: a reading taken now falls in a window that
    // closes after every replayed one, and its Bundle queues behind theirs (one endpoint, oldest first)
    const d0 = devices[0]!
    const c = await connect(proc.mqttPort, d0.deviceId, d0.secret)
    const ts = Date.now()
    await c.publishAsync(`vitals/${d0.deviceId}`, JSON.stringify({ v: 1, seq: 100_000, ts, hr: 70, sys: 120, dia: 80 }), { qos: 1 })
    await c.endAsync()
    windows.get(d0.residentId)!.add(ts - (ts % WINDOW_MS))
    const all = expectedIdentifiers('local', windows)
    await waitFor('the later window at the hospital, and nothing left in the outbox',
      async () => [...all].every((id) => slow.observations.has(id)) && (await nodeStats(proc!)).outboxPending === 0, 30_000)
    expect(new Set(slow.observations.keys())).toEqual(all)
    expect([...slow.observations.values()].filter((o) => o.creates !== 1)).toEqual([])
    expect(slow.bundles).toBeGreaterThan(before)
    expect(slow.invalid).toEqual([])
    expect(slow.headers.every((h) => /^sha256=[0-9a-f]{64}$/.test(String(h['x-vitalmesh-signature'])))).toBe(true)
    await proc.kill('SIGTERM'); proc = undefined
    await slow.stop()
  })
})

describe('forwarder: research institutions', () => {
  let t: TestApp | undefined
  const servers: ReturnType<typeof Fastify>[] = []
  afterAll(async () => { await t?.stop(); for (const s of servers) await s.close() })

  it('pushes only consented, de-identified aggregates, no cell under k, with pseudonyms that differ per institution', async () => {
    const got: Record<string, any[]> = { 'inst-a': [], 'inst-b': [] }
    const urls: Record<string, string> = {}
    for (const inst of Object.keys(got)) {
      const s = Fastify()
      s.post('/push', async (req) => { got[inst]!.push(req.body); return { ok: true } })
      await s.listen({ port: 0, host: '127.0.0.1' })
      servers.push(s)
      urls[inst] = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}/push`
    }
    t = await startTestApp(FAST)
    const ops = t.app.demo!.apiKeys.operator
    for (const inst of Object.keys(got)) expect((await api(t.httpPort, 'POST', '/v1/institutions', ops, { id: inst, name: inst, pushUrl: urls[inst] })).status).toBe(201)
    const devices = t.app.demo!.fleet.slice(40, 50)
    // six consenting residents in their sixties, three in their forties (a cell under k = 5), one who did not consent
    for (const [i, d] of devices.entries()) {
      await api(t.httpPort, 'PATCH', `/v1/residents/${d.residentId}`, ops, { birthYear: i < 6 ? 1960 : 1985 })
      if (i < 9) {
        const key = (await api(t.httpPort, 'POST', '/v1/api-keys', ops, { role: 'resident', scope: d.residentId })).body.key
        expect((await api(t.httpPort, 'PUT', `/v1/residents/${d.residentId}/consent`, key, { research: true })).status).toBe(200)
      }
    }
    await publishFor(t.mqttPort, devices, 1500)
    await waitFor('both institutions to receive a cell', () => Object.values(got).every((l) => l.some((p) => p.cells.length > 0)), 15_000)
    const ids = [...t.app.demo!.fleet.flatMap((d) => [d.deviceId, d.residentId]), 'demo-device', 'demo-resident']
    for (const [inst, payloads] of Object.entries(got)) {
      for (const p of payloads) {
        const text = JSON.stringify(p)
        for (const id of ids) expect(text.includes(`"${id}"`), `${inst} got ${id}`).toBe(false)
        expect(p).toMatchObject({ schema: 'vitalmesh.research-aggregate/1', institution: inst, k: 5 })
        for (const c of p.cells) expect(c.residents).toBeGreaterThanOrEqual(5)
      }
    }
    const cellA = got['inst-a']!.flatMap((p) => p.cells)[0]
    const cellB = got['inst-b']!.flatMap((p) => p.cells)[0]
    expect(cellA).toMatchObject({ ageBand: '60-69', residents: 6 })
    expect(got['inst-a']!.some((p) => p.suppressedCells === 1)).toBe(true)
    expect(cellA.pseudonyms.length).toBe(6)
    expect(cellA.pseudonyms.filter((x: string) => cellB.pseudonyms.includes(x))).toEqual([])
  })
})

describe('forwarder: regional federation', () => {
  const procs: AppProcess[] = []
  afterAll(async () => { for (const p of procs) await p.kill('SIGKILL') })

  it('three real nodes (two counties, one city): the city\'s roll-up equals the sum of its counties', async () => {
    const city = await startAppProcess(tempDir(), { ...FAST_ENV, VITALMESH_REGION_ID: 'city-1', VITALMESH_REGION_LEVEL: 'city' })
    procs.push(city)
    const counties: AppProcess[] = []
    for (const id of ['county-a', 'county-b']) {
      const key = (await api(city.httpPort, 'POST', '/v1/api-keys', city.creds.apiKeys.operator, { role: 'region', scope: id })).body.key as string
      // rollupK 1: every window goes up, so the city's sums can be compared with the counties' (k-suppression: forwarder/test/rollup.test.ts)
      const c = await startAppProcess(tempDir(), { ...FAST_ENV, VITALMESH_ROLLUP_K: '1', VITALMESH_REGION_ID: id, VITALMESH_PARENT_URL: `http://127.0.0.1:${city.httpPort}/v1/federation/rollups`, VITALMESH_PARENT_TOKEN: key })
      procs.push(c)
      counties.push(c)
    }
    // a county may not speak for another
    const wrong = (await api(city.httpPort, 'POST', '/v1/api-keys', city.creds.apiKeys.operator, { role: 'region', scope: 'county-a' })).body.key
    expect((await api(city.httpPort, 'POST', '/v1/federation/rollups', wrong, { schema: 'vitalmesh.region-rollup/1', region: 'county-b', level: 'county', window: { kind: '2s', start: 0, end: 2000 }, version: 1, residents: 1, hr: { n: 0, min: null, max: null, sum: 0, bins: {} }, sys: { n: 0, min: null, max: null, sum: 0, bins: {} }, dia: { n: 0, min: null, max: null, sum: 0, bins: {} }, bpCategories: {}, children: [] })).status).toBe(403)

    await Promise.all([publishFor(counties[0]!.mqttPort, counties[0]!.creds.fleet.slice(0, 5), 3000, 150), publishFor(counties[1]!.mqttPort, counties[1]!.creds.fleet.slice(0, 3), 3000, 100)])
    const agg = async (p: AppProcess, region: string) => (await api(p.httpPort, 'GET', `/v1/regions/${region}/aggregates?window=2s&from=0`, p.creds.apiKeys.operator)).body.aggregates as any[]
    const [a, b] = [await agg(counties[0]!, 'county-a'), await agg(counties[1]!, 'county-b')]
    const starts = [...new Set([...a, ...b].map((x) => x.window.start))]
    expect(starts.length).toBeGreaterThanOrEqual(2)
    await waitFor('the city to hold both counties\' roll-ups for every window', async () => {
      const c = await agg(city, 'city-1')
      return starts.every((s) => {
        const w = c.find((x) => x.window.start === s)
        const expectChildren = [a, b].filter((l) => l.some((x) => x.window.start === s)).length
        return w && w.children.length === expectChildren
      })
    }, 20_000)
    const c = await agg(city, 'city-1')
    for (const s of starts) {
      const wa = a.find((x) => x.window.start === s); const wb = b.find((x) => x.window.start === s); const wc = c.find((x) => x.window.start === s)
      const parts = [wa, wb].filter(Boolean)
      const sum = (f: (x: any) => number) => parts.reduce((n, x) => n + f(x), 0)
      expect(wc.residents).toBe(sum((x) => x.residents))
      expect(wc.hr.count).toBe(sum((x) => x.hr.count))
      expect(wc.sys.count).toBe(sum((x) => x.sys.count))
      expect(wc.hr.min).toBe(Math.min(...parts.map((x) => x.hr.min)))
      expect(wc.hr.max).toBe(Math.max(...parts.map((x) => x.hr.max)))
      expect(wc.hr.mean).toBeCloseTo(sum((x) => x.hr.mean * x.hr.count) / sum((x) => x.hr.count), 0)
      const cats = new Set(parts.flatMap((x) => Object.keys(x.bpCategories)))
      for (const k of cats) expect(wc.bpCategories[k]).toBe(sum((x) => x.bpCategories[k] ?? 0))
    }
  })
})
