import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import { connect as natsConnect, type NatsConnection } from 'nats'
import type { MqttClient } from 'mqtt'
import { connect } from './helpers/mqtt.ts'
import { openLive } from './helpers/live.ts'
import { ROOT, run, startAppProcess, tempDir, waitFor, type AppProcess } from './helpers/proc.ts'
import { startNatsCluster, type NatsCluster } from './helpers/nats.ts'
import { startPostgres, type PostgresServer } from './helpers/postgres.ts'
import { startInfluxd, type ServerProcess } from './helpers/influxd.ts'
import { JetStreamLog } from '../cluster/log.ts'
import { medplumServer, type MedplumServer } from './helpers/medplum.ts'
import type { Observation } from '@medplum/fhirtypes'

/**
 * Cluster mode over NATS JetStream (cluster/node.ts), with real servers: Debian's nats-server
 * as a 3-node JetStream cluster, a PostgreSQL cluster made with initdb (the partitions'
 * checkpoints), one influxd every node stores into, a hospital's FHIR server (Medplum's FHIR
 * router, test/helpers/medplum.ts) and three vitalmesh processes. The
 * registry was provisioned once and copied to each node, as an operator provisions a node.
 */
const PARTITIONS = 8
const WINDOW_S = 5

describe('cluster over NATS JetStream and PostgreSQL', () => {
  let nats: NatsCluster
  let pg: PostgresServer
  let influx: ServerProcess
  let nc: NatsConnection
  let log: JetStreamLog
  const nodes: AppProcess[] = []
  let env: Record<string, string> = {}
  const dirs: string[] = []
  let hospital: MedplumServer

  beforeAll(async () => {
    ;[nats, pg, influx, hospital] = await Promise.all([startNatsCluster({ size: 3 }), startPostgres(), startInfluxd(), medplumServer()])
    dirs.push(tempDir('vm-jsnode-a-'))
    const made = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'demo'], 60_000, { VITALMESH_DATA_DIR: dirs[0]! })
    expect(made.code, made.stderr).toBe(0)
    for (const n of ['b', 'c']) { const d = tempDir(`vm-jsnode-${n}-`); cpSync(dirs[0]!, d, { recursive: true }); dirs.push(d) }
    env = {
      VITALMESH_NATS_URL: nats.servers.join(','), VITALMESH_PG_URL: pg.url, VITALMESH_CLUSTER_PARTITIONS: String(PARTITIONS), VITALMESH_CLUSTER_REPLICAS: '3',
      VITALMESH_STORE: 'influx', VITALMESH_INFLUX_URL: influx.url, VITALMESH_INFLUX_DB: 'cluster', VITALMESH_INFLUX_CREATE_DATABASE: 'true', VITALMESH_INFLUX_API: 'v1',
      // each test device publishes about 40 readings a second, above a device's default rate limit (10/s)
      VITALMESH_PUBLISH_RATE: '1000',
      // an unacknowledged critical reaches the duty desk after 6 s (not 5 min), so a takeover's test sees the chain go on
      VITALMESH_FOLLOWERS_AFTER_S: '3', VITALMESH_DESK_AFTER_S: '6',
      // summary windows of 5 s, closed 1 s after their end: the kill -9 test checks that the hospital's summaries are complete
      VITALMESH_WINDOWS: `${WINDOW_S}s`, VITALMESH_WINDOW_LATENESS_S: '1', VITALMESH_FORWARDER_TICK_MS: '100',
      VITALMESH_OUTBOX_POLL_MS: '50', VITALMESH_OUTBOX_MAX_BACKOFF_MS: '300', VITALMESH_OUTBOX_BREAKER_OPEN_MS: '200',
    }
    // one at a time: the first creates the stream and the bucket, the others check them
    for (const [i, d] of dirs.entries()) nodes.push(await startAppProcess(d, { ...env, VITALMESH_NODE_ID: 'abc'[i]! }))
    nc = await natsConnect({ servers: nats.servers, maxReconnectAttempts: -1, reconnectTimeWait: 200 })
    log = await JetStreamLog.open(nc, { partitions: PARTITIONS, replicas: 3 })
  }, 120_000)
  afterAll(async () => {
    await nc?.close()
    await Promise.all(nodes.map((n) => n.kill('SIGKILL')))
    await Promise.all([nats?.stop(), pg?.stop(), influx?.destroy(), hospital?.stop()])
  })

  interface Stats { readingsAccepted: number, cluster: { node: string, owned: number[], following: number[], pubacksWaitingForLog: number } }
  const stats = async (n: AppProcess): Promise<Stats> => {
    const res = await fetch(`http://127.0.0.1:${n.httpPort}/v1/stats`, { headers: { authorization: `Bearer ${n.creds.apiKeys.operator}` } })
    expect(res.status).toBe(200)
    return await res.json() as Stats
  }
  /** partition → owning node, from the live nodes' /v1/stats; undefined while one is owned twice or not at all */
  const ownership = async (live: AppProcess[]): Promise<Map<number, string> | undefined> => {
    const owners = new Map<number, string>()
    for (const s of await Promise.all(live.map(stats))) {
      for (const p of s.cluster.owned) { if (owners.has(p)) return undefined; owners.set(p, s.cluster.node) }
    }
    return owners.size === PARTITIONS ? owners : undefined
  }
  const stored = async (deviceId: string): Promise<number[]> => {
    const q = new URLSearchParams({ db: 'cluster', epoch: 'ms', q: `SELECT seq FROM vitals WHERE device = '${deviceId}'` })
    const body = await (await fetch(`${influx.url}/query?${q}`)).json() as { results: { series?: { values: [number, number][] }[] }[] }
    return (body.results[0]?.series?.[0]?.values ?? []).map((v) => v[1]).sort((a, b) => a - b)
  }

  it('the live nodes share the partitions, each owned by one node', async () => {
    const owners = await waitFor('every partition owned by exactly one node', () => ownership(nodes), 20_000)
    expect(new Set(owners.values())).toEqual(new Set(['a', 'b', 'c']))
    // /metrics: a lag per owned partition (0: nothing published yet), and the PUBACKs held for the log
    const text = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/metrics`)).text()
    const lagged = [...text.matchAll(/^vitalmesh_partition_lag_entries\{partition="(\d+)"\} (\d+)/gm)].map((m) => Number(m[1])).sort((x, y) => x - y)
    expect(lagged).toEqual([...owners].filter(([, n]) => n === 'a').map(([p]) => p).sort((x, y) => x - y))
    expect(text).toMatch(/^vitalmesh_pubacks_waiting_for_log 0$/m)
    // the takeovers of the start rebuilt their (empty) summary windows from the log: none is still under way
    for (const n of nodes) await waitFor(`node ${n.httpPort}'s window rebuilds done`, async () => /^vitalmesh_window_rebuilds 0$/m.test(await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text()), 10_000, 50)
  })

  it('a PUBACK follows the reading log\'s acknowledgement, and the partition\'s owner stores the reading', async () => {
    const dev = nodes[0]!.creds.fleet[0]!
    const d = await connect(nodes[0]!.mqttPort, dev.deviceId, dev.secret)
    await d.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), hr: 71 }), { qos: 1 })
    // read the log at the moment of the PUBACK: the reading is there already
    const entries = await log.read(log.partitionOf(dev.residentId))
    expect(entries.map((e) => e.reading)).toContainEqual(expect.objectContaining({ deviceId: dev.deviceId, residentId: dev.residentId, seq: 1, hr: 71 }))
    await d.endAsync()
    expect(await waitFor('the reading in InfluxDB', async () => { const s = await stored(dev.deviceId); return s.length ? s : undefined })).toEqual([1])
  })

  it('a device revoked through node A is disconnected from node C within 2 s, and refused on every node (no Redis: the credential log is on JetStream)', async () => {
    const dev = nodes[0]!.creds.fleet[20]!
    const onC = await connect(nodes[2]!.mqttPort, dev.deviceId, dev.secret)
    const closed = new Promise<number>((res) => onC.once('close', () => res(Date.now())))
    const t0 = Date.now()
    const res = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/devices/${dev.deviceId}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${nodes[0]!.creds.apiKeys.operator}` } })
    expect(res.status, await res.text()).toBe(200)
    const ms = await Promise.race([closed, new Promise<number>((_, rej) => setTimeout(() => rej(new Error("node C did not end the revoked device's session within 5 s")), 5000))]) - t0
    console.log(`cluster-nats: revocation on node a ended the session on node c after ${ms} ms`)
    expect(ms).toBeLessThan(2000)
    // every node applies the log on its own: each refuses the device within the same 2 s
    for (const [i, n] of nodes.entries()) {
      await waitFor(`node ${'abc'[i]} to refuse the revoked device`, () => connect(n.mqttPort, dev.deviceId, dev.secret).then((c) => { c.end(true); return false }, () => true), Math.max(100, t0 + 2000 - Date.now()), 50)
    }
  })

  it('the audit trail is one chain in PostgreSQL: what node A and node C recorded is read on node B, in one order, and verifies', async () => {
    const dev = nodes[0]!.creds.fleet[21]!
    const op = (i: number): Record<string, string> => ({ authorization: `Bearer ${nodes[i]!.creds.apiKeys.operator}` })
    expect((await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/devices/${dev.deviceId}/revoke`, { method: 'POST', headers: op(0) })).status).toBe(200)
    const key = await fetch(`http://127.0.0.1:${nodes[2]!.httpPort}/v1/api-keys`, { method: 'POST', headers: { ...op(2), 'content-type': 'application/json' }, body: JSON.stringify({ role: 'operator', label: 'made on node c' }) })
    expect(key.status, await key.clone().text()).toBe(201)
    const keyId = (await key.json() as { id: string }).id
    interface Entry { seq: number, action: string, subject: string, node: string }
    // node b recorded neither: they reach it through the chain, shipped by a and c (within their 250 ms timers)
    const entries = await waitFor('both entries in node b\'s /v1/audit', async () => {
      const res = await fetch(`http://127.0.0.1:${nodes[1]!.httpPort}/v1/audit?limit=1000`, { headers: op(1) })
      expect(res.status).toBe(200)
      const all = (await res.json() as { entries: Entry[] }).entries
      const revoked = all.find((e) => e.action === 'device.revoked' && e.subject === dev.deviceId)
      const created = all.find((e) => e.action === 'api-key.created' && e.subject === keyId)
      return revoked && created ? { all, revoked, created } : undefined
    }, 10_000)
    expect(entries.revoked.node).toMatch(/^a~/)
    expect(entries.created.node).toMatch(/^c~/)
    expect(entries.all.map((e) => e.seq)).toEqual(entries.all.map((_, i) => i + 1))
    const verify = await (await fetch(`http://127.0.0.1:${nodes[1]!.httpPort}/v1/audit/verify`, { headers: op(1) })).json() as { ok: boolean, entries: number }
    expect(verify.ok).toBe(true)
    expect(verify.entries).toBeGreaterThanOrEqual(entries.all.length)
    // the same chain on every node
    const onA = await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/audit?limit=1000`, { headers: op(0) })).json() as { entries: Entry[] }
    expect(onA.entries.slice(0, entries.all.length)).toEqual(entries.all)
  })

  it('the registry is the cluster\'s: a resident and device registered through node A publish through node C, and a key made on node B opens node A', async () => {
    const post = async (i: number, path: string, body: unknown): Promise<Response> => await fetch(`http://127.0.0.1:${nodes[i]!.httpPort}${path}`, {
      method: 'POST', headers: { authorization: `Bearer ${nodes[i]!.creds.apiKeys.operator}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    })
    const t0 = Date.now()
    expect((await post(0, '/v1/residents', { id: 'res-joined', name: '李明', language: 'zh-CN', mqttPassword: false })).status).toBe(201)
    const dev = await post(0, '/v1/devices', { id: 'cuff-joined', residentId: 'res-joined', model: 'omron-hem-7361t' })
    expect(dev.status).toBe(201)
    const { secret } = await dev.json() as { secret: string }
    // node c learns the device from the cluster's registry (every 100 ms): it accepts it, and the PUBACK means the reading is in the log
    const d = await waitFor('node c to accept the device registered through node a', () => connect(nodes[2]!.mqttPort, 'cuff-joined', secret).catch(() => undefined), 5_000, 50)
    console.log(`cluster-nats: a device registered through node a was accepted by node c ${Date.now() - t0} ms later`)
    await d.publishAsync('vitals/cuff-joined', JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 128, dia: 82, hr: 70 }), { qos: 1 })
    await d.endAsync()
    expect((await log.read(log.partitionOf('res-joined'))).map((e) => e.reading)).toContainEqual(expect.objectContaining({ deviceId: 'cuff-joined', residentId: 'res-joined', seq: 1, sys: 128 }))
    // an operator key made on node b
    const made = await post(1, '/v1/api-keys', { role: 'operator', label: 'made on node b' })
    expect(made.status).toBe(201)
    const { key } = await made.json() as { key: string }
    const res = await waitFor('node a to accept the key made on node b', async () => {
      const r = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/res-joined`, { headers: { authorization: `Bearer ${key}` } })
      return r.status === 200 ? r : undefined
    }, 5_000, 50)
    expect(await res.json()).toMatchObject({ id: 'res-joined', name: '李明', language: 'zh-CN' })
    // the same registry on every node: /v1/stats shows each node's position in the one log
    const positions = await Promise.all(nodes.map(async (n) => (await stats(n) as unknown as { cluster: { registry: { position: number } } }).cluster.registry.position))
    expect(Math.min(...positions)).toBeGreaterThan(0)
  })

  it('a reading sent to node A is judged by the owner of the resident\'s partition and shown live on a console of node C; its alert is read and acted on through any node (MQTT and HTTP), care preferences set on one node reach the judge, and a report run started through any node collects the resident\'s readings', async () => {
    const { device, resident } = nodes[0]!.creds
    // raised by the node that owns the resident's partition, wherever the reading arrived
    const owner = 'abc'.indexOf((await ownership(nodes))!.get(log.partitionOf(resident.id))!)
    const other = owner === 2 ? 1 : 2
    // a nurse's console on a node that neither received the reading nor judges the resident watches it live
    const console_ = await openLive(nodes[other]!.httpPort, nodes[other]!.creds.apiKeys.operator)
    console_.send(JSON.stringify({ type: 'watch', residentId: resident.id }))
    expect(await console_.next((m) => m.type === 'watching' || m.type === 'error')).toMatchObject({ type: 'watching', residentId: resident.id })
    const d = await connect(nodes[0]!.mqttPort, device.deviceId, device.secret)
    await d.publishAsync(`vitals/${device.deviceId}`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 192, dia: 118, hr: 90 }), { qos: 1 })
    await d.endAsync()
    const seen = await console_.next((m) => m.type === 'readings' && (m.readings as { residentId: string, seq: number }[]).some((r) => r.residentId === resident.id && r.seq === 1))
    expect((seen.readings as { sys: number }[])[0]).toMatchObject({ sys: 192, dia: 118 })
    const alerted = await console_.next((m) => m.type === 'alert' && (m.alert as { residentId: string }).residentId === resident.id)
    expect(alerted.alert).toMatchObject({ severity: 'critical', state: 'open' })
    await console_.close()
    const get = async (i: number, path: string): Promise<{ alerts: { id: string, residentId: string, severity: string, state: string }[] }> => {
      const res = await fetch(`http://127.0.0.1:${nodes[i]!.httpPort}${path}`, { headers: { authorization: `Bearer ${nodes[i]!.creds.apiKeys.operator}` } })
      expect(res.status).toBe(200)
      return await res.json() as { alerts: { id: string, residentId: string, severity: string, state: string }[] }
    }
    const raised = await waitFor('the crisis alert on the partition\'s owner', async () => (await get(owner, `/v1/residents/${resident.id}/alerts`)).alerts.find((a) => a.severity === 'critical'), 10_000)
    const t0 = Date.now()
    const onOther = await waitFor('the same alert in the resident\'s alerts on another node', async () => (await get(other, `/v1/residents/${resident.id}/alerts`)).alerts.find((a) => a.id === raised.id), 5_000, 50)
    console.log(`cluster-nats: an alert raised on node ${'abc'[owner]} was in node ${'abc'[other]}'s list ${Date.now() - t0} ms after the owner's`)
    expect(onOther).toMatchObject({ residentId: resident.id, severity: 'critical', state: 'open' })
    for (const i of [0, 1, 2]) expect((await get(i, '/v1/alerts/attention')).alerts.map((a) => a.id)).toContain(raised.id)
    // acted on through any node: the request goes to the node judging the resident. The resident's phone, connected to
    // another node, acknowledges it over MQTT; a nurse assigns it and reads its history through that other node
    const phone = await connect(nodes[other]!.mqttPort, resident.id, resident.password)
    await phone.publishAsync(`alerts/${resident.id}/ack`, JSON.stringify({ id: raised.id }), { qos: 1 })
    await phone.endAsync()
    const acked = await waitFor('the acknowledgement made through another node, in the owner\'s list', async () => (await get(owner, `/v1/residents/${resident.id}/alerts`)).alerts.find((a) => a.id === raised.id && a.state === 'acknowledged'), 5_000, 50)
    expect(acked.state).toBe('acknowledged')
    const op = { authorization: `Bearer ${nodes[other]!.creds.apiKeys.operator}`, 'content-type': 'application/json' }
    const assigned = await fetch(`http://127.0.0.1:${nodes[other]!.httpPort}/v1/alerts/${raised.id}/assign`, { method: 'POST', headers: op, body: JSON.stringify({ to: 'nurse Wang' }) })
    expect(assigned.status, await assigned.clone().text()).toBe(200)
    expect(await assigned.json()).toMatchObject({ id: raised.id, assignedTo: 'nurse Wang', state: 'acknowledged' })
    const history = await (await fetch(`http://127.0.0.1:${nodes[other]!.httpPort}/v1/alerts/${raised.id}/history`, { headers: op })).json() as { transitions: { state: string, actor: string }[] }
    expect(history.transitions.map((t) => t.state)).toEqual(expect.arrayContaining(['open', 'acknowledged']))
    expect(history.transitions.find((t) => t.state === 'acknowledged')?.actor).toBe(`resident:${resident.id}`)
    // and a resident's quiet hours set through one node are the ones the judging node applies (replicated with the registry)
    const prefs = await fetch(`http://127.0.0.1:${nodes[other]!.httpPort}/v1/residents/${resident.id}/alert-preferences`, { method: 'PUT', headers: { ...op, authorization: `Bearer ${nodes[other]!.creds.apiKeys.resident}` }, body: JSON.stringify({ quietHours: { start: '22:00', end: '07:00' } }) })
    expect(prefs.status, await prefs.clone().text()).toBe(200)
    await waitFor('the quiet hours on the node judging the resident', async () => {
      const r = await fetch(`http://127.0.0.1:${nodes[owner]!.httpPort}/v1/residents/${resident.id}/alert-preferences`, { headers: op })
      return ((await r.json()) as { quietHours: unknown }).quietHours !== null
    }, 5_000, 50)
    // a home-BP week started through that node is kept where the resident's readings go: a reading sent to node a counts in it,
    // and every node lists the same run
    const mine = { authorization: `Bearer ${nodes[other]!.creds.apiKeys.resident}`, 'content-type': 'application/json' }
    const started = await fetch(`http://127.0.0.1:${nodes[other]!.httpPort}/v1/residents/${resident.id}/reports`, { method: 'POST', headers: mine, body: JSON.stringify({ protocol: 'home-bp-7d', timeZone: 'Asia/Shanghai', guideline: 'esh-2023' }) })
    expect(started.status, await started.clone().text()).toBe(201)
    const runId = (await started.json() as { id: string }).id
    const cuff = await connect(nodes[0]!.mqttPort, device.deviceId, device.secret)
    await cuff.publishAsync(`vitals/${device.deviceId}`, JSON.stringify({ v: 1, seq: 2, ts: Date.now(), sys: 126, dia: 80, hr: 72 }), { qos: 1 })
    await cuff.endAsync()
    type Run = { id: string, result: { counts: { inPeriod: number } } }
    const run = await waitFor('the reading in the report run, read through that node', async () => {
      const r = await (await fetch(`http://127.0.0.1:${nodes[other]!.httpPort}/v1/residents/${resident.id}/reports/${runId}`, { headers: mine })).json() as Run
      return r.result?.counts.inPeriod === 1 ? r : undefined
    }, 5_000, 50)
    expect(run.id).toBe(runId)
    for (const n of nodes) expect(((await (await fetch(`http://127.0.0.1:${n.httpPort}/v1/residents/${resident.id}/reports`, { headers: mine })).json()) as { reports: Run[] }).reports.map((r) => r.id)).toEqual([runId])
  })

  it('kill -9 of a node under load: every acknowledged reading is stored once, its partitions move within 10 s, and the hospital\'s summaries count every reading once', async () => {
    const fleet = nodes[0]!.creds.fleet.slice(1, 13)
    // the residents' hospital takes summaries (FHIR), registered through node a and known to every node before the load
    const op0 = { authorization: `Bearer ${nodes[0]!.creds.apiKeys.operator}`, 'content-type': 'application/json' }
    expect((await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/hospitals`, { method: 'POST', headers: op0, body: JSON.stringify({ id: 'h1', name: 'County Hospital', fhirUrl: hospital.url, feeds: ['summaries'], fhirMaxEntries: 8 }) })).status).toBe(201)
    for (const f of fleet) expect((await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/${f.residentId}`, { method: 'PATCH', headers: op0, body: JSON.stringify({ hospitalId: 'h1' }) })).status).toBe(200)
    for (const n of nodes) {
      await waitFor('every node to know the hospital\'s patients', async () => {
        const r = await fetch(`http://127.0.0.1:${n.httpPort}/v1/hospitals/h1/residents`, { headers: { authorization: `Bearer ${n.creds.apiKeys.operator}` } })
        const ids = r.status === 200 ? ((await r.json()) as { residents: string[] }).residents : []
        return fleet.every((f) => ids.includes(f.residentId))
      }, 10_000, 100)
    }
    const victim = nodes[1]!
    const acked = new Map<string, Set<number>>()
    const reconnects = new Map<string, number>()
    const errors: string[] = []
    let stop = false
    let killedAt = 0
    // each device publishes seq 1, 2, 3... to "its" node; when that node is gone it moves to the
    // next one and sends the reading it had no PUBACK for again, as a device does
    const publish = async (i: number): Promise<void> => {
      const dev = fleet[i]!
      const got = new Set<number>()
      acked.set(dev.deviceId, got)
      let at = i % 3
      let client: MqttClient | undefined
      for (let seq = 1; !stop;) {
        try {
          client ??= await connect(nodes[at]!.mqttPort, dev.deviceId, dev.secret, { connectTimeout: 2000 })
          const c = client
          // closed while the device waited between readings: its 'close' has been and gone, and a
          // publish on it would wait for a reconnect that never comes (reconnectPeriod 0)
          if (!c.connected) { reconnects.set(dev.deviceId, (reconnects.get(dev.deviceId) ?? 0) + 1); throw new Error('closed') }
          await new Promise<void>((resolve, reject) => {
            const closed = (): void => reject(new Error('closed'))
            c.once('close', closed)
            c.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq, ts: Date.now(), hr: 60 + (seq % 40) }), { qos: 1 })
              .then(() => { c.off('close', closed); resolve() }, reject)
          })
          got.add(seq++)
          await new Promise((r) => setTimeout(r, 20))
        } catch (err) {
          // why, for the summary below (a connect that timed out, a close while waiting for a PUBACK...)
          if (killedAt && nodes[at] !== victim) errors.push(`${dev.deviceId}@${'abc'[at]} +${Date.now() - killedAt} ms: ${(err as Error).message}`)
          client?.end(true)
          client = undefined
          if (killedAt && nodes[at] === victim) at = (at + 1) % 3
          await new Promise((r) => setTimeout(r, 100))
        }
      }
      await client?.endAsync()
    }
    const load = fleet.map((_, i) => publish(i))
    await waitFor('readings acknowledged by every node', () => [...acked.values()].every((s) => s.size >= 20), 20_000)
    const before = await ownership(nodes)
    const moved = [...before!.entries()].filter(([, n]) => n === 'b').map(([p]) => p)
    killedAt = Date.now()
    await victim.kill('SIGKILL')
    const live = [nodes[0]!, nodes[2]!]
    const after = await waitFor('the survivors own every partition', () => ownership(live), 20_000, 100)
    const takeoverMs = Date.now() - killedAt
    console.log(`cluster-nats: node b held partitions ${JSON.stringify(moved)}; a and c owned all ${PARTITIONS} again ${takeoverMs} ms after kill -9`)
    expect(new Set(after.values())).toEqual(new Set(['a', 'c']))
    expect(takeoverMs).toBeLessThan(10_000)
    // go on for a while on the survivors, then stop
    const mark = new Map([...acked].map(([k, s]) => [k, s.size]))
    await waitFor('more readings acknowledged after the takeover', () => [...acked].every(([k, s]) => s.size >= mark.get(k)! + 10), 20_000).catch(async (err: unknown) => {
      const stuck = [...acked].filter(([k, s]) => s.size < mark.get(k)! + 10).map(([k, s]) => `${k} ${s.size - mark.get(k)!} more`)
      const clients = await Promise.all(live.map(async (n) => (await stats(n) as unknown as { mqttClients: number }).mqttClients))
      throw new Error(`${(err as Error).message}: ${stuck.join(', ')}; MQTT clients on a and c ${clients.join(', ')}; closed while idle ${JSON.stringify([...reconnects])}\n` +
        live.map((n) => n.output().split('\n').slice(-30).join('\n')).join('\n---\n'))
    })
    if (reconnects.size) console.log(`cluster-nats: connections closed while idle (device: times) ${JSON.stringify([...reconnects])}`)
    if (errors.length) console.log(`cluster-nats: after the kill, devices on the live nodes had to reconnect: ${errors.slice(0, 12).join('; ')}`)
    stop = true
    await Promise.all(load)
    let total = 0
    for (const [deviceId, seqs] of acked) {
      const want = [...seqs].sort((a, b) => a - b)
      total += want.length
      const have = await waitFor(`every acknowledged reading of ${deviceId} in InfluxDB`, async () => {
        const s = await stored(deviceId)
        return want.every((x) => s.includes(x)) ? s : undefined
      }, 20_000, 200).catch(async (err: unknown) => {
        // what is missing, and whether the log has it: tells a lost PUBACK promise from a partition not processed
        const s = new Set(await stored(deviceId))
        const dev = fleet.find((f) => f.deviceId === deviceId)!
        const p = log.partitionOf(dev.residentId)
        const inLog = new Set((await log.read(p)).filter((e) => e.reading.deviceId === deviceId).map((e) => e.reading.seq))
        const missing = want.filter((x) => !s.has(x))
        const counts = await log.counts()
        throw new Error(`${(err as Error).message}: log counts ${JSON.stringify(counts)} (read ${(await log.read(p)).length} of partition ${p}), lastSeq ${await log.lastSeq()}, device's seqs in log ${[...inLog].sort((a, b) => a - b).join(',')}; partition ${p}, ${missing.length} missing (${missing.slice(0, 10).join(', ')}), of them in the log: ${missing.filter((x) => inLog.has(x)).length}; ` +
          `nodes: ${JSON.stringify(await Promise.all(live.map(async (n) => (await stats(n)).cluster)))}\n` +
          live.map((n) => n.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(0, 8).join('\n')).join('\n---\n'))
      })
      // once: one point per reading (a reading resent without its PUBACK may be stored too, once)
      expect(new Set(have).size).toBe(have.length)
      expect(have.length - want.length).toBeLessThanOrEqual(1)
    }
    console.log(`cluster-nats: ${total} acknowledged readings of ${acked.size} devices, each stored once`)

    // every reading the log holds (the acknowledged ones, and a resent one whose PUBACK was lost) counted once in its
    // resident's window at the hospital: the windows of the killed node's residents were rebuilt by their new owners
    const want = new Map<string, number>()
    // a reading the log holds twice (resent to another node after a lost PUBACK, in a message of other readings) is one reading
    const inLog = new Set<string>()
    for (const f of fleet) {
      for (const e of await log.read(log.partitionOf(f.residentId))) {
        if (e.reading.residentId !== f.residentId || inLog.has(`${e.reading.deviceId}:${e.reading.seq}`)) continue
        inLog.add(`${e.reading.deviceId}:${e.reading.seq}`)
        const start = e.reading.ts - (e.reading.ts % (WINDOW_S * 1000))
        const id = `local/${f.residentId}/${WINDOW_S}s/${new Date(start).toISOString()}/hr/mean`
        want.set(id, (want.get(id) ?? 0) + 1)
      }
    }
    // what the hospital's FHIR server holds: each summary Observation as last created or updated, by identifier
    const counted = async (): Promise<Map<string, number>> => {
      const held = new Map<string, Observation>()
      for (const o of await hospital.search<Observation>('Observation')) for (const i of o.identifier ?? []) if (i.value) held.set(i.value, o)
      return new Map([...want.keys()].map((id) => [id, Number(/mean of (\d+) readings/.exec(held.get(id)?.method?.text ?? '')?.[1] ?? 0)]))
    }
    await waitFor('every window\'s summary at the hospital over all its readings', async () => [...await counted()].every(([id, n]) => n === want.get(id)), 30_000, 200).catch(async () => {
      const wrong = [...await counted()].filter(([id, n]) => n !== want.get(id)).map(([id, n]) => `${id}: ${n} of ${want.get(id)}`)
      const held = await hospital.search<Observation>('Observation')
      throw new Error(`${wrong.length} of ${want.size} windows not counted right at the hospital: ${wrong.slice(0, 8).join('; ')} (it took ${hospital.bundles} Bundles and refused ${hospital.rejected.length}: ${JSON.stringify(hospital.rejected[0]?.outcome.issue?.slice(0, 2))}; it holds ${held.length} Observations, e.g. ${JSON.stringify(held[0]?.identifier)})`)
    })
    // and the hospital's server took every Bundle (validated against R4 and the vital-signs profile)
    expect(hospital.rejected.map((r) => r.outcome.issue?.[0]?.diagnostics)).toEqual([])
    console.log(`cluster-nats: ${want.size} summary windows of ${fleet.length} residents at the hospital (${hospital.bundles} Bundles to Medplum's FHIR router), each over every reading of the log once`)
  }, 150_000)

  it('the killed node comes back: it rejoins, the partitions are spread over three nodes again, each owned once', async () => {
    nodes[1] = await startAppProcess(dirs[1]!, { ...env, VITALMESH_NODE_ID: 'b' })
    const owners = await waitFor('every partition owned once, by all three nodes', async () => {
      const o = await ownership(nodes)
      return o && new Set(o.values()).size === 3 ? o : undefined
    }, 30_000, 100)
    expect(new Set(owners.values())).toEqual(new Set(['a', 'b', 'c']))
  }, 60_000)

  it('kill -9 of the node judging residents with an open crisis and a tachycardia under way: the next owner adopts the alert (its escalation goes on from where it was, a new crisis reading opens no second alert) and the resident\'s report run, and sees the tachycardia whole', async () => {
    type A = { id: string, residentId: string, severity: string, state: string, concern: string, openedAt: number, deskAt: number | null }
    const get = async (i: number, path: string): Promise<A[]> => {
      const res = await fetch(`http://127.0.0.1:${nodes[i]!.httpPort}${path}`, { headers: { authorization: `Bearer ${nodes[i]!.creds.apiKeys.operator}` } })
      expect(res.status).toBe(200)
      return (await res.json() as { alerts: A[] }).alerts
    }
    const owners = (await waitFor('every partition owned once', () => ownership(nodes), 20_000))!
    // a resident judged by node b or c (node a stays up for the next test), whose device publishes to a node that survives
    const dev = nodes[0]!.creds.fleet.slice(40).find((f) => owners.get(log.partitionOf(f.residentId)) !== 'a')!
    const victim = 'abc'.indexOf(owners.get(log.partitionOf(dev.residentId))!)
    const heir = victim === 1 ? 2 : 1
    // another resident the same node judges, whose heart rate at rest has been above 120 for 6 minutes (of the 10 the rule needs)
    const watch = nodes[0]!.creds.fleet.slice(41).find((f) => f.residentId !== dev.residentId && owners.get(log.partitionOf(f.residentId)) === 'abc'[victim])!
    const w = await connect(nodes[0]!.mqttPort, watch.deviceId, watch.secret)
    // a console watching that resident: its readings appear there once the judge's feed took them, and alerting (an
    // urgent consumer of the feed) judges them in that same commit, before they are published to the consoles
    const console_ = await openLive(nodes[0]!.httpPort, nodes[0]!.creds.apiKeys.operator)
    console_.send(JSON.stringify({ type: 'watch', residentId: watch.residentId }))
    expect(await console_.next((m) => m.type === 'watching' || m.type === 'error')).toMatchObject({ type: 'watching', residentId: watch.residentId })
    const t0 = Date.now()
    const tachy = (seq: number, minutesAgo: number): string => JSON.stringify({ v: 1, seq, ts: t0 - minutesAgo * 60_000, hr: 132, activity: 'rest' })
    for (const [seq, ago] of [[1, 11], [2, 9], [3, 7], [4, 5]] as const) await w.publishAsync(`vitals/${watch.deviceId}`, tachy(seq, ago), { qos: 1 })
    // the crisis resident's hospital has started a home-BP week for it (through node a; the run is kept on the judge)
    const op0 = { authorization: `Bearer ${nodes[0]!.creds.apiKeys.operator}`, 'content-type': 'application/json' }
    expect((await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/${dev.residentId}`, { method: 'PATCH', headers: op0, body: JSON.stringify({ hospitalId: 'h1' }) })).status).toBe(200)
    const hospitalKey = (await (await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/api-keys`, { method: 'POST', headers: op0, body: JSON.stringify({ role: 'hospital', scope: 'h1' }) })).json() as { key: string }).key
    const h1 = { authorization: `Bearer ${hospitalKey}`, 'content-type': 'application/json' }
    const started = await waitFor('the hospital\'s key and patient known to the judge', async () => {
      const r = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/${dev.residentId}/reports`, { method: 'POST', headers: h1, body: JSON.stringify({ protocol: 'home-bp-7d', timeZone: 'Asia/Shanghai', guideline: 'esh-2023' }) })
      return r.status === 201 ? await r.json() as { id: string } : undefined
    }, 5_000, 100)
    type Run = { id: string, result: { counts: { inPeriod: number } } }
    const run = async (): Promise<Run | undefined> => {
      const r = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/${dev.residentId}/reports/${started.id}`, { headers: h1 })
      return r.status === 200 ? await r.json() as Run : undefined
    }
    const d = await connect(nodes[0]!.mqttPort, dev.deviceId, dev.secret)
    await d.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), sys: 194, dia: 122, hr: 88 }), { qos: 1 })
    const crisis = await waitFor('the crisis alert', async () => (await get(0, `/v1/residents/${dev.residentId}/alerts`)).find((a) => a.severity === 'critical'), 10_000)
    expect(crisis.deskAt).toBeNull()
    await waitFor('the crisis reading in the report run', async () => (await run())?.result.counts.inPeriod === 1, 5_000, 50)
    // 6 minutes of the 10 judged, and no alert yet
    await console_.next((m) => m.type === 'readings' && (m.readings as { residentId: string, seq: number }[]).some((r) => r.residentId === watch.residentId && r.seq === 4), 10_000)
    await console_.close()
    expect(await get(0, `/v1/residents/${watch.residentId}/alerts`)).toEqual([])
    const killedAt = Date.now()
    await nodes[victim]!.kill('SIGKILL')
    // the partition moves; its new owner adopts the alert (acting on it goes through that node now)
    const live = nodes.filter((_, i) => i !== victim)
    const after = await waitFor('the survivors own every partition', () => ownership(live), 20_000, 100)
    const newOwner = 'abc'.indexOf(after.get(log.partitionOf(dev.residentId))!)
    console.log(`cluster-nats: node ${'abc'[victim]} judged ${dev.residentId} with an open crisis; node ${'abc'[newOwner]} took the partition over ${Date.now() - killedAt} ms after kill -9`)
    // the chain goes on where it was: the duty desk 6 s after the alert opened, not 6 s after the takeover
    const desk = await waitFor('the adopted alert reaching the duty desk', async () => (await get(heir, `/v1/residents/${dev.residentId}/alerts`)).find((a) => a.id === crisis.id && a.deskAt !== null), 20_000, 100)
    expect(desk.deskAt! - crisis.openedAt).toBeLessThan(6_000 + 2_500)
    // a new crisis reading (and an extreme heart rate, a concern of its own, to know when it was judged): no second BP alert
    await d.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq: 2, ts: Date.now(), sys: 198, dia: 124, hr: 190 }), { qos: 1 })
    await d.endAsync()
    const alerts = await waitFor('the heart-rate alert of the second reading', async () => {
      const all = await get(heir, `/v1/residents/${dev.residentId}/alerts`)
      return all.some((a) => a.id !== crisis.id && a.concern !== crisis.concern) ? all : undefined
    }, 10_000, 100)
    expect(alerts.filter((a) => a.concern === crisis.concern && (a.state === 'open' || a.state === 'acknowledged')).map((a) => a.id)).toEqual([crisis.id])
    // the home-BP week went on on the new judge: the reading before the kill and the one after
    expect(await waitFor('both readings in the report run on the new judge', async () => { const r = await run(); return r?.result.counts.inPeriod === 2 ? r : undefined }, 5_000, 100).catch(async (err: unknown) => {
      const r = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/residents/${dev.residentId}/reports/${started.id}`, { headers: h1 })
      const lines = (i: number): string => nodes[i]!.output().split('\n').filter((l) => /report|took|"level":(40|50)/.test(l)).slice(-12).join('\n')
      throw new Error(`${(err as Error).message}: the run through node a answers ${r.status} ${(await r.text()).slice(0, 400)}\nthe new judge, ${'abc'[newOwner]}:\n${lines(newOwner)}\nthe killed node, ${'abc'[victim]}:\n${lines(victim)}`)
    })).toMatchObject({ id: started.id })
    // the tachycardia goes on past 10 minutes: the new owner sees it whole (the first 6 minutes were judged on the dead node)
    for (const [seq, ago] of [[5, 3], [6, 1]] as const) await w.publishAsync(`vitals/${watch.deviceId}`, tachy(seq, ago), { qos: 1 })
    await w.endAsync()
    const sustained = await waitFor('the sustained tachycardia alert', async () => (await get(heir, `/v1/residents/${watch.residentId}/alerts`)).find((a) => a.state === 'open'), 10_000, 100)
    expect(sustained).toMatchObject({ severity: 'warning', concern: expect.stringMatching(/hr/) })
    // acknowledged through node a: the node that judges the resident now does it
    const ack = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/v1/alerts/${crisis.id}/ack`, { method: 'POST', headers: { authorization: `Bearer ${nodes[0]!.creds.apiKeys.operator}` } })
    expect(ack.status, await ack.clone().text()).toBe(200)
    expect(await ack.json()).toMatchObject({ id: crisis.id, state: 'acknowledged' })
    nodes[victim] = await startAppProcess(dirs[victim]!, { ...env, VITALMESH_NODE_ID: 'abc'[victim]! })
  }, 90_000)

  it('while every nats-server is down a reading gets no PUBACK and /readyz says why; once NATS is back the PUBACK comes and the reading is stored', async () => {
    const dev = nodes[0]!.creds.fleet[30]!
    const d = await connect(nodes[0]!.mqttPort, dev.deviceId, dev.secret)
    await Promise.all(nats.nodes.map((n) => n.kill('SIGKILL')))
    const ready = await waitFor('node a not ready', async () => {
      const res = await fetch(`http://127.0.0.1:${nodes[0]!.httpPort}/readyz`)
      return res.status === 503 ? await res.json() as { checks: Record<string, string> } : undefined
    }, 20_000, 100)
    expect(ready.checks.nats).not.toBe('ok')
    let acked = false
    const puback = d.publishAsync(`vitals/${dev.deviceId}`, JSON.stringify({ v: 1, seq: 1, ts: Date.now(), hr: 77 }), { qos: 1 }).then(() => { acked = true })
    // the reading is committed to node a's spool, and held there: no PUBACK while the log is unreachable
    await waitFor('the PUBACK held for the log', async () => (await stats(nodes[0]!)).cluster.pubacksWaitingForLog > 0, 10_000)
    expect(acked).toBe(false)
    await Promise.all(nats.nodes.map((n) => n.restart()))
    await puback
    // a read that fails is tried again; the last failure is in the message if none succeeds
    const entries = await waitFor('the log readable again', async () => await log.read(log.partitionOf(dev.residentId)), 30_000, 200)
    expect(entries.map((e) => e.reading)).toContainEqual(expect.objectContaining({ deviceId: dev.deviceId, seq: 1, hr: 77 }))
    expect(await waitFor('the reading in InfluxDB', async () => { const x = await stored(dev.deviceId); return x.length ? x : undefined }, 30_000, 200)).toEqual([1])
    await d.endAsync()
  }, 120_000)
})
