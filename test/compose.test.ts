import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ENV_SETTINGS, loadConfig } from '../core/index.ts'
import { ROOT } from './helpers/proc.ts'

/** Docker does not run here, so the compose file is checked for structure, not started. */
interface Service { image?: string, build?: { context: string, args?: Record<string, string> }, environment: Record<string, string>, volumes?: string[], depends_on?: Record<string, { condition: string }>, ports?: string[], healthcheck?: unknown }
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service>, volumes: Record<string, unknown> }
const s = compose.services

/** `${NAME:-default}` / `${NAME:?msg}` as compose would expand them with the given environment. */
function interpolate (v: string, env: Record<string, string>): string {
  return v.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op: string | undefined, arg: string | undefined) => {
    if (env[name]) return env[name]!
    if (op === '-') return arg ?? ''
    throw new Error(`${name} is required: ${arg}`)
  })
}
const env = { INFLUXDB_TOKEN: 't0ken', INFLUXDB_ADMIN_PASSWORD: 'pw', GRAFANA_ADMIN_PASSWORD: 'pw' }
const expanded = (svc: Service): Record<string, string> => Object.fromEntries(Object.entries(svc.environment).map(([k, v]) => [k, interpolate(String(v), env)]))

describe('docker-compose.yml', () => {
  it('runs influxdb:2.7 initialised with org, bucket and token from the environment, and a health check', () => {
    expect(s.influxdb!.image).toBe('influxdb:2.7')
    const e = expanded(s.influxdb!)
    expect(e).toMatchObject({ DOCKER_INFLUXDB_INIT_MODE: 'setup', DOCKER_INFLUXDB_INIT_ORG: 'vitalmesh', DOCKER_INFLUXDB_INIT_BUCKET: 'vitalmesh', DOCKER_INFLUXDB_INIT_ADMIN_TOKEN: 't0ken' })
    expect(() => expanded({ environment: { x: s.influxdb!.environment.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN! } })).not.toThrow()
    expect(() => interpolate(s.influxdb!.environment.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN!, {})).toThrow(/INFLUXDB_TOKEN is required/)
    expect(s.influxdb!.healthcheck).toBeDefined()
    // the DBRP mapping that lets 2.x answer InfluxQL for vitalmesh and Grafana
    const init = s.influxdb!.volumes!.find((v) => v.endsWith(':/docker-entrypoint-initdb.d:ro'))!
    const script = readFileSync(join(ROOT, init.split(':')[0]!, '10-dbrp.sh'), 'utf8')
    expect(script).toMatch(/influx v1 dbrp create .*--db "\$\{INFLUXDB_DB:-vitalmesh\}"/)
  })

  it('provisions Grafana with the datasource and dashboards from the repository, pointed at the influxdb service', () => {
    const g = s.grafana!
    expect(g.image).toMatch(/^grafana\/grafana:/)
    expect(g.depends_on?.influxdb?.condition).toBe('service_healthy')
    for (const v of g.volumes!.filter((x) => x.startsWith('./'))) expect(existsSync(join(ROOT, v.split(':')[0]!)), v).toBe(true)
    expect(g.volumes).toContain('./dashboards/grafana/provisioning:/etc/grafana/provisioning:ro')
    const provider = parse(readFileSync(join(ROOT, 'dashboards/grafana/provisioning/dashboards/vitalmesh.yml'), 'utf8')) as { providers: { options: { path: string } }[] }
    expect(g.volumes).toContain(`./dashboards/grafana/dashboards:${provider.providers[0]!.options.path}:ro`)
    const datasource = readFileSync(join(ROOT, 'dashboards/grafana/provisioning/datasources/influxdb.yml'), 'utf8')
    for (const name of datasource.match(/\$\{(\w+)\}/g)!.map((m) => m.slice(2, -1))) expect(Object.keys(g.environment), name).toContain(name)
    expect(expanded(g).INFLUXDB_URL).toBe('http://influxdb:8086')
  })

  it('configures vitalmesh for InfluxDB with settings it accepts', () => {
    const v = s.vitalmesh!
    expect(v.build?.context).toBe('.')
    expect(existsSync(join(ROOT, 'Dockerfile'))).toBe(true)
    // the image is built on the Node LTS that CI installs and tests, the same version in all three places
    const lts = /^VERSION=(\S+)$/m.exec(readFileSync(join(ROOT, 'scripts/install-node-lts.sh'), 'utf8'))![1]
    expect(lts).toMatch(/^24\.\d+\.\d+$/)
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    expect(/^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)?.[1]).toBe(lts)
    expect(dockerfile).toMatch(/^FROM node:\$\{NODE_VERSION\}-bookworm$/m)
    expect(v.build?.args?.NODE_VERSION).toBe(lts)
    const e = expanded(v)
    for (const k of Object.keys(e)) expect(Object.keys(ENV_SETTINGS), k).toContain(k)
    const config = loadConfig(e)
    expect(config.store).toMatchObject({ kind: 'influx', influx: { api: 'v2', url: 'http://influxdb:8086', token: 't0ken', org: 'vitalmesh', bucket: 'vitalmesh', db: 'vitalmesh' } })
    // the same org, bucket and token as InfluxDB's initial setup
    const i = expanded(s.influxdb!)
    expect([config.store.influx.org, config.store.influx.bucket, config.store.influx.token]).toEqual([i.DOCKER_INFLUXDB_INIT_ORG, i.DOCKER_INFLUXDB_INIT_BUCKET, i.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN])
    for (const vol of Object.values(s).flatMap((x) => x.volumes ?? []).filter((x) => !x.startsWith('./'))) expect(Object.keys(compose.volumes)).toContain(vol.split(':')[0])
  })
})

describe('docker-compose.cluster.yml', () => {
  const cluster = parse(readFileSync(join(ROOT, 'docker-compose.cluster.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service & { command?: string[] }>, volumes: Record<string, unknown> }
  const c = cluster.services
  const cenv = { ...env, POSTGRES_PASSWORD: 'pgpw' }
  const exp = (svc: Service): Record<string, string> => Object.fromEntries(Object.entries(svc.environment).map(([k, v]) => [k, interpolate(String(v), cenv)]))
  const nodes = ['vitalmesh1', 'vitalmesh2', 'vitalmesh3']

  it('runs three nats-servers with JetStream, routed to each other in one cluster', () => {
    for (const n of ['nats1', 'nats2', 'nats3']) {
      const cmd = c[n]!.command!
      expect(c[n]!.image).toMatch(/^nats:2\.(9|1\d)/)
      expect(cmd).toContain('-js')
      expect(cmd[cmd.indexOf('-n') + 1]).toBe(n)
      expect(cmd[cmd.indexOf('--routes') + 1]!.split(',').sort()).toEqual(['nats://nats1:6222', 'nats://nats2:6222', 'nats://nats3:6222'])
      expect(c[n]!.healthcheck).toBeDefined()
    }
  })

  it('runs three vitalmesh nodes in cluster mode with settings they accept: every nats-server, the PostgreSQL service, distinct node ids and data', () => {
    const ids = new Set<string>()
    for (const n of nodes) {
      const e = exp(c[n]!)
      for (const k of Object.keys(e)) expect(Object.keys(ENV_SETTINGS), k).toContain(k)
      const config = loadConfig(e)
      expect(config.cluster.nats!.split(',').map((u) => new URL(u).hostname).sort()).toEqual(['nats1', 'nats2', 'nats3'])
      expect(config.cluster.replicas).toBe(3)
      expect(config.store.kind).toBe('influx')
      const pg = new URL(config.cluster.postgresUrl!)
      expect([pg.hostname, pg.username, pg.password, pg.pathname]).toEqual(['postgres', exp(c.postgres!).POSTGRES_USER, 'pgpw', `/${exp(c.postgres!).POSTGRES_DB}`])
      ids.add(config.cluster.nodeId!)
      // the MQTT broker's state between nodes (an alert published on the judge reaches a phone connected to another node)
      expect(new URL(config.cluster.redisUrl!).hostname).toBe('redis')
      for (const dep of ['postgres', 'influxdb', 'nats1', 'nats2', 'nats3', 'redis']) expect(c[n]!.depends_on?.[dep]?.condition, `${n} waits for ${dep}`).toBe('service_healthy')
    }
    expect(ids.size).toBe(3)
    expect(new Set(nodes.map((n) => c[n]!.volumes![0]!.split(':')[0])).size).toBe(3)
    for (const vol of Object.values(c).flatMap((x) => x.volumes ?? []).filter((x) => !x.startsWith('./'))) expect(Object.keys(cluster.volumes)).toContain(vol.split(':')[0])
  })

  it('refuses cluster mode without PostgreSQL or with the embedded store, naming what to set', () => {
    const e = exp(c.vitalmesh1!)
    expect(() => loadConfig({ ...e, VITALMESH_PG_URL: undefined })).toThrow(/VITALMESH_PG_URL/)
    expect(() => loadConfig({ ...e, VITALMESH_STORE: 'embedded' })).toThrow(/VITALMESH_STORE=influx/)
  })
})
