import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { connect } from './helpers/mqtt.ts'
import { ROOT, run, startAppProcess, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'
import { startNatsCluster, type NatsCluster } from './helpers/nats.ts'
import { startPostgres, type PostgresServer } from './helpers/postgres.ts'
import { startInfluxd, type ServerProcess } from './helpers/influxd.ts'
import { fhirServer, type FhirServer } from './helpers/fhir.ts'
import { freePort, startRedis, type RedisServer } from './helpers/redis.ts'
import { partitionOf } from '../cluster/log.ts'
import { createServer, type Server } from 'node:http'

/** A parent region's federation endpoint: keeps every roll-up posted to it. */
async function parentRegion (): Promise<{ url: string, rollups: Record<string, any>[], stop(): Promise<void> }> {
  const rollups: Record<string, any>[] = []
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => { rollups.push(JSON.parse(body) as Record<string, any>); res.writeHead(202, { 'content-type': 'application/json' }).end('{}') })
  })
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${port}/v1/federation/rollups`, rollups, stop: async () => { await new Promise((resolve) => server.close(resolve)) } }
}

/** The last version of each window's roll-up a parent received, without the version (how often it was sent is timing). */
function lastRollups (rollups: readonly Record<string, any>[]): Record<string, unknown>[] {
  const last = new Map<number, Record<string, any>>()
  for (const r of rollups) if ((last.get(r.window.start)?.version ?? 0) < r.version) last.set(r.window.start, r)
  return [...last.values()].sort((x, y) => x.window.start - y.window.start).map(({ version: _, ...r }) => r)
}

/**
 * Issue 17, "same results as one node": one script of readings goes through a single node and
 * through a 3-node cluster over NATS JetStream and PostgreSQL, and both give the same alerts and
 * send the hospital the same summaries. The two systems start from copies of one provisioned
 * data directory (the same registry, keys and device secrets), and each gets the same API calls
 * (a hospital, its patients, a second device for one resident) and the same readings, with the
 * same reading times; only the node a device publishes to differs.
 *
 * The script (reading times relative to one `base`, whole minutes before it):
 * - R1 wears a watch (publishing to node C) and a cuff (publishing to node A) and is judged on
 *   a third node, the owner of R1's partition. A tachycardia at rest (HR 127-132 for 18 minutes)
 *   is taken by the watch, then the cuff, then both, and published shuffled: neither device
 *   alone covers the rule's 10 minutes without a gap over 5 minutes, so an alert exists only if
 *   one rule state sees both devices' readings.
 * - R2: a hypertensive crisis (190/125), then a normal reading taken an hour earlier (a phone
 *   syncing its history), which must not resolve it.
 * - R3: three normal readings, then a late stage-2 reading taken between them: its alert is
 *   opened by the replay of the timeline, and resolved by the hold-down of the newer normal ones.
 * - R4: normal readings, the last two as one store-and-forward batch.
 *
 * Compared: each resident's alerts as the API lists them (on every node of the cluster), and the
 * summary Observations each system's hospital endpoint holds at the end, field by field; and
 * each Bundle must come under an Idempotency-Key of its own.
 */
const PARTITIONS = 8
const MIN = 60_000
const WINDOW_MS = 5 * MIN
/** the same for both systems: summary windows of 5 minutes, closed 1 s after their end, and timers fast enough to settle within seconds */
const FAST_ENV = {
  VITALMESH_WINDOWS: '5m', VITALMESH_WINDOW_LATENESS_S: '1', VITALMESH_FORWARDER_TICK_MS: '100', VITALMESH_ALERT_TICK_MS: '200',
  VITALMESH_OUTBOX_POLL_MS: '50', VITALMESH_OUTBOX_MAX_BACKOFF_MS: '300', VITALMESH_OUTBOX_BREAKER_OPEN_MS: '200',
  // a device publishes its readings back to back, above the default rate limit (10/s)
  VITALMESH_PUBLISH_RATE: '1000',
  // every window's roll-up goes to the parent region with its residents, however few (the default leaves out fewer than 5)
  VITALMESH_ROLLUP_K: '1',
  // public statistics show windows of 2 residents or more (the default, 5, would suppress every window of this script)
  VITALMESH_RESEARCH_K: '2',
}

interface Reading { seq: number, ts: number, hr?: number, sys?: number, dia?: number, activity?: 'rest' }
/** one publish of the script: a reading, or a store-and-forward batch, of one device */
interface Step { device: string, node: 'a' | 'b' | 'c', readings: Reading[], batch?: boolean }
type Alert = Record<string, unknown> & { ruleKey: string, severity: string, state: string, firstReading: { deviceId: string, ts: number } | null, clearedFrom: number | null }

/** a small seeded PRNG (mulberry32): the shuffle is the same in every run and for both systems */
function shuffled<T> (xs: readonly T[], seed: number): T[] {
  let s = seed >>> 0
  const rnd = (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [out[i], out[j]] = [out[j]!, out[i]!] }
  return out
}

/** wall-clock moments, which differ between any two runs: when it opened, was acknowledged, resolved, escalated... */
const WALL_CLOCK = ['openedAt', 'acknowledgedAt', 'resolvedAt', 'escalatedAt', 'deskAt', 'followersAt', 'closedAt']

/** an alert without its id and wall-clock times; every other field is compared */
function normalAlert (a: Alert): Record<string, unknown> {
  const o: Record<string, unknown> = { ...a }
  delete o.id
  for (const k of WALL_CLOCK) delete o[k]
  return o
}

const byKey = (x: Record<string, unknown>, y: Record<string, unknown>): number => {
  const kx = JSON.stringify([x.ruleKey, (x.firstReading as { ts?: number } | null)?.ts ?? 0, x.state])
  const ky = JSON.stringify([y.ruleKey, (y.firstReading as { ts?: number } | null)?.ts ?? 0, y.state])
  return kx < ky ? -1 : kx > ky ? 1 : 0
}

/**
 * What the hospital holds: each summary Observation as last created or updated, by identifier.
 * Left out: `status` and the version in the note. A window's version counts how often this
 * node emitted the window (once per forwarder tick that saw new readings for it, whichever
 * resident they were for), so it follows the timing of arrival, not the readings: the same
 * node gives `final` or `amended` for the same summary in two runs. Everything else, the
 * identifier (region/resident/window/metric/statistic), codes, values, period, subject and
 * the method (which says over how many readings), is compared.
 */
function normalObservations (h: FhirServer): Record<string, unknown>[] {
  return [...h.observations.entries()].sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0).map(([id, { resource }]) => {
    const { status: _status, note, ...rest } = resource as { status: string, note?: { text: string }[] }
    return { id, ...rest, note: note?.map((n) => n.text.replace(/, summary version \d+$/, '')) }
  })
}

describe('the 3-node cluster gives the same results as one node (issue 17)', () => {
  let nats: NatsCluster
  let redis: RedisServer
  let pg: PostgresServer
  let influx: ServerProcess
  const cluster: AppProcess[] = []
  let single: AppProcess
  const dirs: string[] = []
  let atSingle: FhirServer
  let atCluster: FhirServer
  let parentOfSingle: Awaited<ReturnType<typeof parentRegion>>
  let parentOfCluster: Awaited<ReturnType<typeof parentRegion>>

  beforeAll(async () => {
    atSingle = fhirServer(await freePort())
    atCluster = fhirServer(await freePort())
    ;[nats, pg, influx, parentOfSingle, parentOfCluster, redis] = await Promise.all([startNatsCluster({ size: 3 }), startPostgres(), startInfluxd(), parentRegion(), parentRegion(), startRedis(), atSingle.start(), atCluster.start()])
    dirs.push(tempDir('vm-same-a-'))
    const made = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'demo'], 60_000, { VITALMESH_DATA_DIR: dirs[0]! })
    expect(made.code, made.stderr).toBe(0)
    // copied before any node starts: the single node's registry is the cluster nodes' registry
    for (const n of ['b', 'c', 'single']) { const d = tempDir(`vm-same-${n}-`); cpSync(dirs[0]!, d, { recursive: true }); dirs.push(d) }
    const env = {
      ...FAST_ENV,
      VITALMESH_NATS_URL: nats.servers.join(','), VITALMESH_PG_URL: pg.url, VITALMESH_CLUSTER_PARTITIONS: String(PARTITIONS), VITALMESH_CLUSTER_REPLICAS: '3',
      VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influx.url, VITALMESH_INFLUX_DB: 'same', VITALMESH_INFLUX_CREATE_DATABASE: 'true', VITALMESH_INFLUX_API: 'v1',
      VITALMESH_PARENT_URL: parentOfCluster.url,
      // as docker-compose.cluster.yml runs it: the MQTT broker's state in Redis, so a message published on one node reaches a subscriber on another
      VITALMESH_REDIS_URL: redis.url,
    }
    const startCluster = async (): Promise<void> => {
      // one at a time: the first creates the stream and the bucket, the others check them
      for (const [i, id] of ['a', 'b', 'c'].entries()) cluster.push(await startAppProcess(dirs[i]!, { ...env, VITALMESH_NODE_ID: id }))
    }
    ;[single] = await Promise.all([startAppProcess(dirs[3]!, { ...FAST_ENV, VITALMESH_PARENT_URL: parentOfSingle.url }), startCluster()])
  }, 150_000)

  afterAll(async () => {
    await Promise.all([...cluster, single].map((n) => n?.kill('SIGKILL')))
    await Promise.all([nats?.stop(), pg?.stop(), influx?.destroy(), atSingle?.stop(), atCluster?.stop(), parentOfSingle?.stop(), parentOfCluster?.stop(), redis?.stop()])
  })

  const api = async (n: AppProcess, method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> => {
    const res = await fetch(`http://127.0.0.1:${n.httpPort}${path}`, {
      method, headers: { authorization: `Bearer ${n.creds.apiKeys.operator}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body),
    })
    return { status: res.status, body: await res.json() }
  }
  interface Stats { outboxPending: number, consumers: { name: string, lagRecords: number, failing: unknown }[], cluster?: { node: string, owned: number[], fed: number } }
  const stats = async (n: AppProcess): Promise<Stats> => (await api(n, 'GET', '/v1/stats')).body as Stats

  // filled by the first test, compared by the others
  let residents: { r1: string, r2: string, r3: string, r4: string }
  let owners: Map<string, string>
  let cuff: string
  let base = 0
  let script: Step[] = []
  let total = 0
  /** the mean Observations every (resident, window) of the script gets, by identifier, and over how many readings */
  const means = new Map<string, number>()

  it('the script reaches both systems, every reading acknowledged, and both settle', async () => {
    // every partition owned by one node, and all three nodes owning some: R1 is judged on a node neither of its devices publishes to
    const owned = await waitFor('every partition owned once, by all three nodes', async () => {
      const o = new Map<number, string>()
      for (const s of await Promise.all(cluster.map(stats))) for (const p of s.cluster!.owned) { if (o.has(p)) return undefined; o.set(p, s.cluster!.node) }
      return o.size === PARTITIONS && new Set(o.values()).size === 3 ? o : undefined
    }, 30_000, 100)
    const fleet = single.creds.fleet
    const ownerOf = (res: string): string => owned.get(partitionOf(res, PARTITIONS))!
    const pick = (node: string, not: string[] = []): string => fleet.slice(1).map((d) => d.residentId).find((r) => ownerOf(r) === node && !not.includes(r))!
    const r1 = pick('b')
    residents = { r1, r2: pick('a'), r3: pick('c'), r4: pick('b', [r1]) }
    owners = new Map(Object.values(residents).map((r) => [r, ownerOf(r)]))
    const watchOf = (res: string): string => fleet.find((d) => d.residentId === res)!.deviceId
    cuff = `${r1}-cuff`

    // the same API calls on both systems (the cluster's through node A): the hospital and its
    // patients, and R1's second device, whose secret each system makes
    const secrets = new Map<AppProcess, string>()
    for (const [n, hospital] of [[single, atSingle], [cluster[0]!, atCluster]] as const) {
      expect((await api(n, 'POST', '/v1/hospitals', { id: 'h1', name: 'County Hospital', fhirUrl: `http://127.0.0.1:${hospital.port}/fhir`, fhirAuth: 'hmac', fhirSecret: 'h1-secret', feeds: ['summaries'] })).status).toBe(201)
      for (const r of Object.values(residents)) expect((await api(n, 'PATCH', `/v1/residents/${r}`, { hospitalId: 'h1' })).status).toBe(200)
      const dev = await api(n, 'POST', '/v1/devices', { id: cuff, residentId: r1, model: 'omron-hem-7361t' })
      expect(dev.status, JSON.stringify(dev.body)).toBe(201)
      secrets.set(n, dev.body.secret as string)
    }
    // every cluster node knows them before any reading: whichever owns a partition sends its windows to the hospital and feeds its readings
    for (const n of cluster) {
      await waitFor(`node ${cluster.indexOf(n)} to know the hospital's patients and the cuff`, async () => {
        const patients = await api(n, 'GET', '/v1/hospitals/h1/residents')
        const ids = patients.status === 200 ? patients.body.residents as string[] : []
        return Object.values(residents).every((r) => ids.includes(r)) && (await api(n, 'GET', `/v1/devices/${cuff}`)).status === 200
      }, 10_000, 100)
    }

    // reading times: whole minutes before a base on a window boundary, so every window of the script has ended when it arrives
    base = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS
    const at = (minutes: number): number => base - minutes * MIN
    const seqs = new Map<string, number>()
    const r = (device: string, minutes: number, v: Omit<Reading, 'seq' | 'ts'>): Reading & { device: string } => {
      const seq = (seqs.get(device) ?? 0) + 1
      seqs.set(device, seq)
      return { device, seq, ts: at(minutes), ...v }
    }
    const watch1 = watchOf(r1)
    // R1, in reading time (each device's seqs in the order it took them): resting, then the tachycardia: the watch's
    // stretch from 18 to 13 minutes before base, the cuff's from 10 to 5, then both. The watch alone has a gap of 9
    // minutes, the cuff alone covers 7; together no gap is over 3 minutes, and the rule holds 10 minutes at the cuff's
    // reading 7 minutes before base. Without the cuff's reading at 10 minutes (a gap of 6) it holds nowhere: that one
    // is published last, so that the alert opens at its arrival however the readings before it were batched
    const watchHr = (m: number): Omit<Reading, 'seq' | 'ts'> => ({ hr: 128 + (m % 5), activity: 'rest' })
    const cuffBp = (m: number): Omit<Reading, 'seq' | 'ts'> => ({ sys: 126, dia: 78, hr: 127 + (m % 4), activity: 'rest' })
    const r1Readings = [
      r(watch1, 30, { hr: 74, activity: 'rest' }), r(cuff, 27, { sys: 122, dia: 80, hr: 76, activity: 'rest' }),
      r(watch1, 24, { hr: 78, activity: 'rest' }), r(cuff, 21, { sys: 124, dia: 79, hr: 80, activity: 'rest' }),
      ...[18, 17, 16, 15, 14, 13].map((m) => r(watch1, m, watchHr(m))),
      r(cuff, 10, cuffBp(10)),
      ...[7, 6, 5].map((m) => r(cuff, m, cuffBp(m))),
      r(watch1, 4, watchHr(4)), r(cuff, 3, cuffBp(3)), r(watch1, 2, watchHr(2)), r(watch1, 1, watchHr(1)),
    ]
    const bridge = r1Readings.find((x) => x.device === cuff && x.ts === at(10))!
    const [w2, w3, w4] = [watchOf(residents.r2), watchOf(residents.r3), watchOf(residents.r4)]
    // a node other than the owner, for the residents with one device
    const via = (res: string): 'a' | 'b' | 'c' => ({ a: 'b', b: 'c', c: 'a' } as const)[owners.get(res) as 'a' | 'b' | 'c']
    const one = (x: Reading & { device: string }, node: 'a' | 'b' | 'c'): Step => { const { device, ...reading } = x; return { device, node, readings: [reading] } }
    const r4Batch = [r(w4, 9, { hr: 67 }), r(w4, 4, { sys: 114, dia: 70, hr: 65 })]
    script = [
      one(r(w4, 19, { hr: 66 }), via(residents.r4)), one(r(w4, 14, { sys: 112, dia: 72, hr: 64 }), via(residents.r4)),
      one(r(w3, 10, { sys: 118, dia: 76, hr: 70 }), via(residents.r3)), one(r(w3, 8, { sys: 120, dia: 78, hr: 72 }), via(residents.r3)), one(r(w3, 6, { sys: 116, dia: 74, hr: 68 }), via(residents.r3)),
      // the cuff on node A, the watch on node C, in an order that has nothing to do with reading time
      ...[...shuffled(r1Readings.filter((x) => x !== bridge), 17), bridge].map((x) => one(x, x.device === cuff ? 'a' : 'c')),
      one(r(w2, 20, { sys: 124, dia: 78, hr: 72 }), via(residents.r2)), one(r(w2, 10, { sys: 134, dia: 86, hr: 76 }), via(residents.r2)),
      one(r(w2, 3, { sys: 190, dia: 125, hr: 88 }), via(residents.r2)),
      { device: w4, node: via(residents.r4), batch: true, readings: r4Batch.map(({ device: _, ...x }) => x) },
      // an hour before the crisis: a phone syncing its history
      one(r(w2, 63, { sys: 118, dia: 76, hr: 70 }), via(residents.r2)),
      // taken between R3's readings, arriving after all of them
      one(r(w3, 7, { sys: 152, dia: 96, hr: 84 }), via(residents.r3)),
    ]
    total = script.reduce((n, s) => n + s.readings.length, 0)
    for (const s of script) {
      const res = s.device === cuff ? r1 : fleet.find((d) => d.deviceId === s.device)!.residentId
      for (const x of s.readings) {
        const id = `local/${res}/5m/${new Date(x.ts - (x.ts % WINDOW_MS)).toISOString()}`
        if (x.hr !== undefined) means.set(`${id}/hr/mean`, (means.get(`${id}/hr/mean`) ?? 0) + 1)
        if (x.sys !== undefined) means.set(`${id}/bp/mean`, (means.get(`${id}/bp/mean`) ?? 0) + 1)
      }
    }
    console.log(`cluster-same-results: residents ${JSON.stringify(Object.fromEntries([...owners].map(([res, o]) => [res, `owned by ${o}`])))}; ${total} readings, base ${new Date(base).toISOString()}`)

    // both systems at once, each publish waiting for its PUBACK; one MQTT connection per device and node
    const publish = async (to: (node: 'a' | 'b' | 'c') => AppProcess): Promise<void> => {
      const clients = new Map<string, MqttClient>()
      const secretOf = (device: string, n: AppProcess): string => device === cuff ? secrets.get(n)! : fleet.find((d) => d.deviceId === device)!.secret
      for (const s of script) {
        const n = to(s.node)
        const key = `${s.device}@${n.mqttPort}`
        let c = clients.get(key)
        if (!c) clients.set(key, c = await connect(n.mqttPort, s.device, secretOf(s.device, n)))
        const body = s.batch ? { v: 1, readings: s.readings } : { v: 1, ...s.readings[0] }
        await c.publishAsync(`vitals/${s.device}`, JSON.stringify(body), { qos: 1 })
      }
      await Promise.all([...clients.values()].map((c) => c.endAsync()))
    }
    const t0 = Date.now()
    await Promise.all([publish(() => single), publish((node) => cluster['abc'.indexOf(node)]!)])
    console.log(`cluster-same-results: every reading acknowledged by both systems after ${Date.now() - t0} ms`)

    // settled: every reading consumed (in the cluster: fed to its owner), every window's mean at the hospital over all its
    // readings of the script (a window a late reading changed goes out again at the forwarder's next checkpoint, up to 5 s
    // later), nothing waiting in any outbox, and the last change the script makes to an alert (R3's late stage-2 reading
    // resolved by the newer readings' hold-down) read through every node: events, not a quiet period
    const settled = async (name: string, nodes: AppProcess[], hospital: FhirServer): Promise<void> => {
      const t = Date.now()
      await waitFor(`${name} to settle`, async () => {
        const all = await Promise.all(nodes.map(stats))
        const idle = all.every((s) => s.outboxPending === 0 && s.consumers.every((c) => c.failing === null && (!['alerting', 'forwarder'].includes(c.name) || c.lagRecords === 0)))
        const fed = nodes.length === 1 || all.reduce((n, s) => n + s.cluster!.fed, 0) >= total
        const complete = [...means].every(([id, n]) => hospital.observations.get(id)?.resource.method?.text === `mean of ${n} readings over 5m`)
        if (!idle || !fed || !complete) return false
        for (const n of nodes) {
          const alerts = await alertsOf(n)
          const states = (res: string): string[] => alerts[res]!.map((a) => `${String(a.ruleKey)}:${String(a.state)}`)
          if (!states(residents.r1).includes('wearable-hr/hr-high-rest:open') || !states(residents.r2).includes('acc-aha-2017/bp-category:open') ||
            !states(residents.r3).includes('acc-aha-2017/bp-category:resolved')) return false
        }
        return true
      }, 45_000, 250)
      console.log(`cluster-same-results: ${name} settled ${Date.now() - t} ms after the last PUBACK`)
    }
    await Promise.all([settled('the single node', [single], atSingle), settled('the cluster', cluster, atCluster)])
  }, 90_000)

  /** a resident's alerts through one node's API, normalised and in a fixed order */
  const alertsOf = async (n: AppProcess): Promise<Record<string, Record<string, unknown>[]>> => {
    const out: Record<string, Record<string, unknown>[]> = {}
    for (const r of Object.values(residents)) {
      const res = await api(n, 'GET', `/v1/residents/${r}/alerts`)
      expect(res.status).toBe(200)
      out[r] = (res.body.alerts as Alert[]).map(normalAlert).sort(byKey)
    }
    return out
  }

  it('the same alerts, field by field (ids and times aside), read through every node of the cluster', async () => {
    const one = await alertsOf(single)
    // what the script must raise, so that two empty lists cannot pass
    const { r1, r2, r3, r4 } = residents
    const find = (res: string, ruleKey: string): Alert | undefined => one[res]!.find((a) => a.ruleKey === ruleKey) as Alert | undefined
    // R1's tachycardia, complete only with both devices: it holds from the cuff's reading 7 minutes before base (11
    // minutes after the watch's first over 120), the watch's readings after it keep it open
    const at7 = { deviceId: cuff, ts: base - 7 * MIN }
    expect(find(r1, 'wearable-hr/hr-high-rest')).toMatchObject({ severity: 'warning', state: 'open', reading: at7, firstReading: at7, detail: { values: { hr: 130 } } })
    // R2's crisis, still open after the normal reading of an hour before
    expect(find(r2, 'acc-aha-2017/bp-category')).toMatchObject({ severity: 'critical', state: 'open', reading: { ts: base - 3 * MIN } })
    // R3's late stage-2 reading: opened by the replay, resolved by the hold-down of the newer normal reading
    expect(find(r3, 'acc-aha-2017/bp-category')).toMatchObject({ severity: 'warning', state: 'resolved', firstReading: { ts: base - 7 * MIN }, clearedFrom: base - 6 * MIN })
    expect(one[r4]).toEqual([])
    expect(Object.values(one).flat().length).toBe(3)
    for (const [i, n] of cluster.entries()) expect(await alertsOf(n), `the alerts read through node ${'abc'[i]}`).toEqual(one)
  })

  it('the same summaries at the hospital, field by field; R1\'s windows hold both devices\' readings in one set', async () => {
    const one = normalObservations(atSingle)
    const many = normalObservations(atCluster)
    expect(atSingle.invalid).toEqual([])
    expect(atCluster.invalid).toEqual([])
    // every window of every resident with readings has its means, over all its readings of the script, and no other window
    const got = one.filter((o) => /\/(hr|bp)\/mean$/.test(String(o.id))).map((o) => [o.id, (o.method as { text: string }).text])
    expect(got).toEqual([...means].sort(([x], [y]) => x < y ? -1 : 1).map(([id, n]) => [id, `mean of ${n} readings over 5m`]))
    // R1's last window (5 minutes before base): the cuff's readings at 5 and 3 minutes and the watch's at 4, 2 and 1, in one
    // summary. A node that summarised only one device's readings would send 2 or 3 heart rates under the same identifier
    const start = new Date(base - 5 * MIN).toISOString()
    const inWindow = script.flatMap((s) => (s.device === cuff || s.device === single.creds.fleet.find((d) => d.residentId === residents.r1)!.deviceId) ? s.readings : [])
      .filter((x) => x.ts >= base - 5 * MIN && x.ts < base)
    const hrs = inWindow.map((x) => x.hr!)
    const bps = inWindow.filter((x) => x.sys !== undefined)
    expect([hrs.length, bps.length]).toEqual([5, 2])
    for (const [name, got] of [['single node', one], ['cluster', many]] as const) {
      const obs = (what: string): any => got.find((o) => o.id === `local/${residents.r1}/5m/${start}/${what}`)
      expect(obs('hr/mean'), name).toMatchObject({ valueQuantity: { value: Math.round(hrs.reduce((a, b) => a + b, 0) / hrs.length * 10) / 10 }, method: { text: 'mean of 5 readings over 5m' } })
      expect(obs('hr/max'), name).toMatchObject({ valueQuantity: { value: Math.max(...hrs) } })
      expect(obs('bp/mean'), name).toMatchObject({ method: { text: 'mean of 2 readings over 5m' }, component: [{ valueQuantity: { value: 126 } }, { valueQuantity: { value: 78 } }] })
    }
    expect(many).toEqual(one)
    console.log(`cluster-same-results: ${one.length} summary Observations the same at both hospitals`)
    // and each Bundle under an Idempotency-Key of its own: a hospital that applies a key once (what the outbox's
    // at-least-once delivery asks of it) must not drop a Bundle of other residents for a key it has seen. The
    // HMAC signature of the body tells one Bundle from another (a retry re-sends the same body)
    for (const [name, h] of [['single node', atSingle], ['cluster', atCluster]] as const) {
      const bodies = new Map<string, Set<string>>()
      for (const x of h.headers) {
        const key = String(x['idempotency-key'])
        if (!bodies.has(key)) bodies.set(key, new Set())
        bodies.get(key)!.add(String(x['x-vitalmesh-signature']))
      }
      expect([...bodies].filter(([, b]) => b.size > 1).map(([k, b]) => `${k}: ${b.size} Bundles`), `${name}: Idempotency-Keys carried by more than one Bundle`).toEqual([])
    }
  })
  it('the same region: its aggregates and public statistics read through every node, and the roll-ups the parent region receives, over every node\'s residents', async () => {
    const path = `/v1/regions/local/aggregates?window=5m&from=${base - 2 * 3600_000}&to=${base + 3600_000}`
    const one = await api(single, 'GET', path)
    expect(one.status).toBe(200)
    const aggregates = one.body.aggregates as { window: { start: number }, residents: number }[]
    // residents judged on different nodes share windows: a node's own residents alone would not give these counts
    expect(Math.max(...aggregates.map((a) => a.residents))).toBeGreaterThanOrEqual(3)
    // (the region as configured differs in the parent's URL only: each system has a parent endpoint of its own)
    for (const [i, n] of cluster.entries()) expect((await api(n, 'GET', path)).body.aggregates, `the region's aggregates read through node ${'abc'[i]}`).toEqual(one.body.aggregates)
    // the public statistics (no key): the same windows, readings and alert rates through every node
    const stats = async (n: AppProcess): Promise<unknown> => ((await (await fetch(`http://127.0.0.1:${n.httpPort}/public/regions/local/stats?window=5m&days=1`)).json()) as { windows: unknown[] }).windows
    // (alerts count in the window of their wall-clock opening, after these windows: the rates are 0 where shown)
    const published = await stats(single) as { residents: number | null, alertsPer1000: number | null }[]
    expect(published.some((w) => w.residents !== null && w.alertsPer1000 !== null)).toBe(true)
    for (const [i, n] of cluster.entries()) expect(await stats(n), `the public statistics through node ${'abc'[i]}`).toEqual(published)
    // the parent region: one roll-up per window (the last version), the same as the single node's. The region's windows are
    // closed by one node of the cluster a few seconds after the nodes closed their residents'
    const want = lastRollups(parentOfSingle.rollups)
    expect(want.length).toBeGreaterThan(0)
    const got = await waitFor('the cluster\'s roll-ups to the parent region', async () => {
      const have = lastRollups(parentOfCluster.rollups)
      return JSON.stringify(have) === JSON.stringify(want) ? have : undefined
    }, 20_000, 250).catch(() => lastRollups(parentOfCluster.rollups))
    expect(got).toEqual(want)
    console.log(`cluster-same-results: ${want.length} region windows, the same aggregates on every node and the same roll-ups at the parent region`)
  }, 40_000)
  it('the resident\'s phone gets its alert wherever it is connected: a crisis sent to one node, judged on another, reaches a phone on the third', async () => {
    const owner = new Map<number, string>()
    for (const st of await Promise.all(cluster.map(stats))) for (const p of st.cluster!.owned) owner.set(p, st.cluster!.node)
    // a resident of a partition node b judges, with a phone (MQTT password) and a cuff, registered through node a
    let id = ''
    for (let i = 0; owner.get(partitionOf(id = `phone-res-${i}`, PARTITIONS)) !== 'b'; i++);
    const made = await api(cluster[0]!, 'POST', '/v1/residents', { id, language: 'zh-CN', mqttPassword: true })
    expect(made.status).toBe(201)
    const cuffMade = await api(cluster[0]!, 'POST', '/v1/devices', { id: `${id}-cuff`, residentId: id })
    expect(cuffMade.status).toBe(201)
    await waitFor('every node to know the resident\'s cuff', async () => (await Promise.all(cluster.map(async (n) => (await api(n, 'GET', `/v1/devices/${id}-cuff`)).status))).every((x) => x === 200), 10_000, 100)
    const phone = await connect(cluster[2]!.mqttPort, id, made.body.mqttPassword as string)
    const got = new Promise<Record<string, unknown>>((resolve) => phone.on('message', (_t, m) => resolve(JSON.parse(m.toString()) as Record<string, unknown>)))
    await phone.subscribeAsync(`alerts/${id}`, { qos: 1 })
    const cuffClient = await connect(cluster[0]!.mqttPort, `${id}-cuff`, cuffMade.body.secret as string)
    await cuffClient.publishAsync(`vitals/${id}-cuff`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 194, dia: 124, hr: 90 }), { qos: 1 })
    await cuffClient.endAsync()
    const alert = await Promise.race([got, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no alert reached the phone on node c within 10 s')), 10_000))])
    expect(alert).toMatchObject({ residentId: id, severity: 'critical', state: 'open', language: 'zh-CN' })
    await phone.endAsync()
  }, 40_000)
})
