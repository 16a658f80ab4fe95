import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { VitalmeshError } from './errors.ts'

const port = z.coerce.number().int().min(0).max(65535)
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((s) => s === 'true' || s === '1' || s === 'yes')])

export const ConfigSchema = z.strictObject({
  dataDir: z.string().min(1).default('./data').describe('directory for the SQLite files'),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    pretty: bool.optional().describe('pretty logs; default: when stdout is a terminal'),
  }).prefault({}),
  mqtt: z.strictObject({
    host: z.string().default('0.0.0.0'),
    port: port.default(1883),
    maxPayloadBytes: z.coerce.number().int().min(256).max(16 * 1024 * 1024).default(64 * 1024),
  }).prefault({}),
  http: z.strictObject({
    host: z.string().default('0.0.0.0'),
    port: port.default(8080),
  }).prefault({}),
  ingest: z.strictObject({
    /** how many spool rows one drain step moves to the telemetry store */
    drainBatch: z.coerce.number().int().min(1).max(100_000).default(5000),
    /** how long the drain waits to gather a batch before writing a partial one */
    drainIntervalMs: z.coerce.number().int().min(0).max(60_000).default(100),
    /** bounded dead-letter table for invalid payloads */
    deadLetterMax: z.coerce.number().int().min(0).default(10_000),
    /** spool bound in readings: above it PUBACKs wait for the drain (back-pressure, nothing is dropped) */
    spoolMaxRows: z.coerce.number().int().min(1).default(5_000_000),
    /** spool bound in approximate bytes, likewise */
    spoolMaxBytes: z.coerce.number().int().min(1024).default(1024 * 1024 * 1024),
    /** drain batches written to the store at the same time (acknowledged in order) */
    /** default from `npm run bench -- influx` (bench/results/influx.md): 4 in flight was fastest on a quiet machine and hides network latency to a remote InfluxDB */
    drainConcurrency: z.coerce.number().int().min(1).max(32).default(4),
  }).prefault({}),
  store: z.strictObject({
    kind: z.enum(['embedded', 'influx']).default('embedded').describe('telemetry store: embedded SQLite, or InfluxDB'),
    influx: z.strictObject({
      api: z.enum(['auto', 'v1', 'v2']).default('auto').describe('v1 /write (1.x before 1.8), v2 write API (2.x, 3.x, 1.8+), or detect from /ping'),
      url: z.url().default('http://127.0.0.1:8086'),
      db: z.string().default('vitalmesh').describe('v1 database; also the database InfluxQL queries name (2.x: DBRP mapping to the bucket)'),
      rp: z.string().optional().describe('v1 retention policy (default: the database default)'),
      user: z.string().optional(),
      password: z.string().optional(),
      token: z.string().optional().describe('v2 API token'),
      org: z.string().optional(),
      bucket: z.string().optional(),
      timeoutMs: z.coerce.number().int().min(100).max(300_000).default(10_000),
      createDatabase: bool.default(false).describe('v1: CREATE DATABASE on first use'),
      rollups: bool.default(true).describe('write hourly and daily roll-ups (vitals_1h, vitals_1d)'),
    }).prefault({}),
  }).prefault({}),
  demo: z.strictObject({
    enabled: bool.default(true).describe('create a demo resident, device and API key on first start'),
  }).prefault({}),
})

export type Config = z.infer<typeof ConfigSchema>

/** Environment variables and the setting each one sets. */
export const ENV_SETTINGS: Record<string, string> = {
  VITALMESH_DATA_DIR: 'dataDir',
  VITALMESH_LOG_LEVEL: 'log.level',
  VITALMESH_LOG_PRETTY: 'log.pretty',
  VITALMESH_MQTT_HOST: 'mqtt.host',
  VITALMESH_MQTT_PORT: 'mqtt.port',
  VITALMESH_MAX_PAYLOAD_BYTES: 'mqtt.maxPayloadBytes',
  VITALMESH_HTTP_HOST: 'http.host',
  VITALMESH_HTTP_PORT: 'http.port',
  VITALMESH_DRAIN_BATCH: 'ingest.drainBatch',
  VITALMESH_DRAIN_INTERVAL_MS: 'ingest.drainIntervalMs',
  VITALMESH_DEAD_LETTER_MAX: 'ingest.deadLetterMax',
  VITALMESH_DEMO: 'demo.enabled',
  VITALMESH_SPOOL_MAX_ROWS: 'ingest.spoolMaxRows',
  VITALMESH_SPOOL_MAX_BYTES: 'ingest.spoolMaxBytes',
  VITALMESH_DRAIN_CONCURRENCY: 'ingest.drainConcurrency',
  VITALMESH_STORE: 'store.kind',
  VITALMESH_INFLUX_API: 'store.influx.api',
  VITALMESH_INFLUX_URL: 'store.influx.url',
  VITALMESH_INFLUX_DB: 'store.influx.db',
  VITALMESH_INFLUX_RP: 'store.influx.rp',
  VITALMESH_INFLUX_USER: 'store.influx.user',
  VITALMESH_INFLUX_PASSWORD: 'store.influx.password',
  VITALMESH_INFLUX_TOKEN: 'store.influx.token',
  VITALMESH_INFLUX_ORG: 'store.influx.org',
  VITALMESH_INFLUX_BUCKET: 'store.influx.bucket',
  VITALMESH_INFLUX_TIMEOUT_MS: 'store.influx.timeoutMs',
  VITALMESH_INFLUX_CREATE_DATABASE: 'store.influx.createDatabase',
  VITALMESH_INFLUX_ROLLUPS: 'store.influx.rollups',
}

function setPath (obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  let o = obj
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== 'object' || o[p] === null) o[p] = {}
    o = o[p] as Record<string, unknown>
  }
  o[parts[parts.length - 1]!] = value
}

function envNameFor (path: string): string | undefined {
  return Object.keys(ENV_SETTINGS).find((k) => ENV_SETTINGS[k] === path)
}

/**
 * Builds the configuration from an optional JSON file (VITALMESH_CONFIG) and the
 * environment, which wins. Errors name the setting and the variable that set it.
 */
export function loadConfig (env: Record<string, string | undefined>, overrides: Record<string, unknown> = {}): Config {
  let raw: Record<string, unknown> = {}
  const file = env.VITALMESH_CONFIG
  if (file) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    } catch (e) {
      throw new VitalmeshError('VM_CONFIG_INVALID', `VITALMESH_CONFIG=${file}: cannot read the config file: ${(e as Error).message}`)
    }
  }
  for (const [name, path] of Object.entries(ENV_SETTINGS)) {
    const v = env[name]
    if (v !== undefined && v !== '') setPath(raw, path, v)
  }
  for (const [path, v] of Object.entries(overrides)) setPath(raw, path, v)
  const parsed = ConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const path = i.path.join('.')
      const envName = envNameFor(path)
      const from = envName && env[envName] !== undefined ? ` (from ${envName}=${JSON.stringify(env[envName])})` : ''
      return `setting "${path}"${from}: ${i.message}`
    })
    throw new VitalmeshError('VM_CONFIG_INVALID', `invalid configuration:\n  ${lines.join('\n  ')}`)
  }
  return parsed.data
}
