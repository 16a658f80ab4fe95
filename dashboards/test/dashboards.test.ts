import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { InfluxHttp } from '../../ingest/index.ts'
import { startInfluxd, type ServerProcess } from '../../test/helpers/influxd.ts'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect } from '../../test/helpers/mqtt.ts'
import { waitFor } from '../../test/helpers/proc.ts'

const DIR = join(import.meta.dirname, '..', 'grafana')
const dashboards = readdirSync(join(DIR, 'dashboards')).filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, json: JSON.parse(readFileSync(join(DIR, 'dashboards', f), 'utf8')) as Dashboard }))

interface Dashboard { uid: string, title: string, templating: { list: { name: string, query: string }[] }, panels: { title: string, datasource: { uid: string }, targets: { query: string, rawQuery: boolean }[] }[] }

/** Every InfluxQL query of the dashboards: panel targets and template variables. */
const queries = dashboards.flatMap(({ file, json }) => [
  ...json.panels.flatMap((p) => p.targets.map((t) => ({ where: `${file}: panel "${p.title}"`, query: t.query }))),
  ...json.templating.list.map((v) => ({ where: `${file}: variable $${v.name}`, query: v.query })),
])

let influxd: ServerProcess
let t: TestApp
let vars: Record<string, string>

beforeAll(async () => {
  influxd = await startInfluxd()
  t = await startTestApp({
    'store.kind': 'influx', 'store.influx.api': 'v1', 'store.influx.url': influxd.url, 'store.influx.db': 'vitalmesh',
    'store.influx.createDatabase': true, 'ingest.drainIntervalMs': 20,
  })
  // data written by vitalmesh itself: readings over MQTT from a few devices, one in crisis
  const fleet = t.app.demo!.fleet.slice(0, 4)
  const now = Date.now()
  for (const [k, d] of fleet.entries()) {
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    const crisis = k === 0
    const readings = Array.from({ length: 30 }, (_, i) => ({ seq: i + 1, ts: now - (30 - i) * 60_000, hr: 60 + i + k, sys: crisis ? 185 : 118 + k, dia: crisis ? 125 : 76 }))
    await c.publishAsync(`vitals/${d.deviceId}`, JSON.stringify({ v: 1, readings }), { qos: 1 })
    await c.endAsync()
  }
  await t.app.drain.idle()
  await t.app.rollups!.run()
  await waitFor('alerts exported', async () => { await t.app.alertExport!.run(); return t.app.alertExport!.stats.exported > 0 })
  const resident = fleet[0]!.residentId
  vars = { resident, region: t.app.registry.resident(resident)!.region! }
})
afterAll(async () => { await t?.stop(); await influxd?.destroy() })

/** What Grafana substitutes before it sends a query. */
function expand (q: string): string {
  return q.replaceAll('$timeFilter', 'time > now() - 7d').replaceAll('$__interval', '10m').replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m)
}

describe('Grafana dashboards', () => {
  it('has the fleet, resident and region dashboards, every panel on the provisioned InfluxQL datasource', () => {
    expect(dashboards.map((d) => d.json.uid).sort()).toEqual(['vitalmesh-fleet', 'vitalmesh-region', 'vitalmesh-resident'])
    const ds = parse(readFileSync(join(DIR, 'provisioning', 'datasources', 'influxdb.yml'), 'utf8')) as { datasources: { uid: string, type: string }[] }
    const uid = ds.datasources[0]!.uid
    expect(ds.datasources[0]!.type).toBe('influxdb')
    for (const { json } of dashboards) for (const p of json.panels) {
      expect(p.datasource.uid).toBe(uid)
      for (const target of p.targets) expect(target.rawQuery).toBe(true)
    }
    expect(queries.length).toBeGreaterThanOrEqual(12)
  })

  it.each(queries)('$where returns rows from data vitalmesh wrote to InfluxDB 1.6', async ({ query }) => {
    const http = new InfluxHttp(influxd.url, { kind: 'none' }, 10_000)
    try {
      const series = await http.query(expand(query), { db: 'vitalmesh' })
      const rows = series.flatMap((s) => s.values)
      expect(rows.length, expand(query)).toBeGreaterThan(0)
      // at least one non-null, non-zero value besides the time column
      expect(rows.some((r) => r.slice(query.startsWith('SHOW') ? 0 : 1).some((v) => v !== null && v !== 0)), expand(query)).toBe(true)
    } finally { await http.close() }
  })
})
