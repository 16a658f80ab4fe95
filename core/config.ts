import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { VitalmeshError } from './errors.ts'
import { isTimeZone } from './localtime.ts'

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
    /** per-device publish budget on vitals/{id}: token bucket rate and burst */
    publishRatePerS: z.coerce.number().positive().max(1_000_000).default(10),
    publishBurst: z.coerce.number().int().min(1).max(1_000_000).default(100),
    /** refused (over-rate) messages per minute after which the device is disconnected */
    abuseRefusalsPerMinute: z.coerce.number().int().min(0).default(100),
    /** largest keepalive a client may ask for, in s (0: any; otherwise keepalive 0 is refused too) */
    keepaliveLimitS: z.coerce.number().int().min(0).max(65535).default(1200),
    connectTimeoutMs: z.coerce.number().int().min(100).max(600_000).default(10_000),
    drainTimeoutMs: z.coerce.number().int().min(0).max(600_000).default(30_000),
    maxTopicLevels: z.coerce.number().int().min(1).max(100).default(16),
    /** open connections per source address (0: no cap) */
    maxConnectionsPerAddress: z.coerce.number().int().min(0).default(1000),
  }).prefault({}),
  tls: z.strictObject({
    /** MQTT over TLS; no listener when unset */
    port: port.optional(),
    /** MQTT over secure WebSocket at /mqtt; no listener when unset */
    wssPort: port.optional(),
    cert: z.string().optional().describe('PEM file of the server certificate (chain)'),
    key: z.string().optional().describe('PEM file of the server key'),
    ca: z.string().optional().describe('PEM file of the CA that signs device certificates; enables mutual TLS'),
    /** refuse TLS clients without a valid certificate (otherwise they may use a password) */
    requireClientCert: bool.default(false),
  }).prefault({}).refine((t) => (t.port === undefined && t.wssPort === undefined) || (t.cert && t.key), { message: 'a TLS or WSS port needs tls.cert and tls.key (VITALMESH_TLS_CERT, VITALMESH_TLS_KEY)' }),
  cluster: z.strictObject({
    /** redis://host:port/db: share subscriptions, sessions and messages with the other nodes */
    redisUrl: z.string().regex(/^rediss?:\/\//, 'use redis://host:port[/db] or rediss://').optional(),
    /** a node whose Redis link is down this long ends its MQTT sessions, so clients move to a healthy node */
    linkDownDisconnectMs: z.coerce.number().int().min(0).default(5000),
    /**
     * nats://host:port,nats://host:port,...: cluster mode's reading log (JetStream). Every
     * accepted reading goes to the log before its PUBACK, and each partition of the log is
     * stored by exactly one node at a time (cluster/node.ts). Needs `cluster.postgresUrl` and
     * the InfluxDB store, which every node shares.
     */
    nats: z.string().regex(/^(nats|tls):\/\/[^,\s]+(,(nats|tls):\/\/[^,\s]+)*$/, 'use nats://host:port, several separated by commas').optional(),
    /** postgres://user@host:port/db: the partitions' checkpoints, shared by every node */
    postgresUrl: z.string().regex(/^postgres(ql)?:\/\//, 'use postgres://user[:password]@host:port/db').optional(),
    /** fixed when the log is created: residents are spread over this many partitions */
    partitions: z.coerce.number().int().min(1).max(1024).default(16),
    /** replicas of the log and the lease bucket: 3 in production (survives one server of three), 1 for a test */
    replicas: z.coerce.number().int().min(1).max(5).default(3),
    /** this node's id among the live nodes (default: host name and process id) */
    nodeId: z.string().regex(/^[A-Za-z0-9_=-]+$/, "letters, digits, '-', '_' and '=' only").optional(),
    /** a dead node's partitions move to the others after about this long */
    leaseMs: z.coerce.number().int().min(1000).max(60_000).default(5000),
  }).prefault({}).refine((c) => c.nats === undefined || c.postgresUrl !== undefined, { message: 'cluster mode over NATS (VITALMESH_NATS_URL) needs PostgreSQL for its checkpoints: set VITALMESH_PG_URL' }),
  fleet: z.strictObject({
    /** how often a node looks for rotated or revoked credentials (CLI, other nodes) */
    credentialPollMs: z.coerce.number().int().min(50).max(60_000).default(1000),
    /** how often last-seen times go to SQLite, in one transaction */
    lastSeenFlushMs: z.coerce.number().int().min(50).max(600_000).default(5000),
  }).prefault({}),
  metrics: z.strictObject({
    /** /metrics needs an operator API key (otherwise it is open, as Prometheus scrapers usually expect) */
    requireApiKey: bool.default(false),
  }).prefault({}),
  http: z.strictObject({
    host: z.string().default('0.0.0.0'),
    port: port.default(8080),
    rateLimitPerMinute: z.coerce.number().int().min(1).default(600).describe('requests per minute per API key'),
    anonymousRateLimitPerMinute: z.coerce.number().int().min(1).default(600).describe('requests per minute per source address without a valid API key (console files, health checks, wrong keys, live-stream upgrades)'),
    /** frames per second a live-stream (/v1/live) client may send; more closes the socket (4429) */
    liveFramesPerS: z.coerce.number().int().min(1).default(20),
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
  alerting: z.strictObject({
    tickMs: z.coerce.number().int().min(10).max(60_000).default(1000).describe('period of the engine timer (no-data, hold-down, re-notify, escalation)'),
    escalateAfterS: z.coerce.number().min(0).default(900).describe('a critical alert not acknowledged this long goes to the resident\'s hospital'),
    followersAfterS: z.coerce.number().min(0).default(120).describe('a critical (or lost-contact) alert not acknowledged this long reaches the resident\'s followers, before the duty desk (project heuristic: the AHA advises measuring again after 5 minutes; a relative is asked well before that wait is over)'),
    escalationByRegion: z.string().regex(/^(\s*[A-Za-z0-9._-]+=\d+\/\d+\/\d+\s*(,|$))*$/, 'region=followersS/deskS/hospitalS,... e.g. c1=60/300/900').default('').describe('per region, the escalation chain\'s timeouts in seconds (followers/desk/hospital); other regions use followersAfterS, deskAfterS and escalateAfterS'),
    deskAfterS: z.coerce.number().min(0).default(300).describe('a critical (or lost-contact) alert not acknowledged this long reaches the coordination centre\'s duty desk (the worklist), before the hospital'),
    renotifyCriticalS: z.coerce.number().min(0).default(300),
    renotifyWarningS: z.coerce.number().min(0).default(3600),
    renotifyInfoS: z.coerce.number().min(0).default(0),
    liveHorizonS: z.coerce.number().min(60).default(3600).describe('a reading older than this when it arrives raises a historic alert (worded as such, no escalation) instead of a live one'),
    recordHorizonS: z.coerce.number().min(60).default(86400).describe('a reading older than this is recorded in the alert history only, and does not change live rule state'),
    flapCount: z.coerce.number().int().min(0).refine((n) => n === 0 || n >= 2, 'flapCount is 0 (no flap detection) or at least 2').default(3).describe('a rule that opens this many times within flapWindowS is held open as flapping; 0: never (every opening is announced)'),
    flapWindowS: z.coerce.number().min(60).default(3600),
    maxSnoozeS: z.coerce.number().min(60).default(86400).describe('the longest a resident may snooze a concern (never a critical)'),
    timeZone: z.string().refine(isTimeZone, 'an IANA time zone such as Asia/Shanghai').default('Asia/Shanghai').describe("the region's time zone: residents who set none have their quiet hours, message times, report days and the forwarder's daily windows in it"),
    primaryRuleSets: z.string().default('').describe('region=ruleSetId,... : whose wording a resident of that region reads when several rule sets agree; "*=id" for every region'),
  }).prefault({}),
  outbox: z.strictObject({
    pollMs: z.coerce.number().int().min(10).default(500),
    timeoutMs: z.coerce.number().int().min(100).default(10_000),
    maxBackoffMs: z.coerce.number().int().min(100).default(300_000),
    breakerFailures: z.coerce.number().int().min(1).default(5),
    breakerOpenMs: z.coerce.number().int().min(0).default(30_000),
    deadLetterAfterS: z.coerce.number().min(1).default(3 * 86400),
  }).prefault({}),
  region: z.strictObject({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/).default('local').describe('this node\'s region (a county id for a county node)'),
    level: z.enum(['county', 'city', 'province', 'national']).default('county'),
    parentUrl: z.url().optional().describe('the parent node\'s federation endpoint, e.g. https://city.example/v1/federation/rollups'),
    parentToken: z.string().optional().describe('an API key with role "region" issued by the parent node'),
  }).prefault({}),
  forwarder: z.strictObject({
    windows: z.string().regex(/^\s*\d+[smhd](\s*,\s*\d+[smhd])*\s*$/, 'a list like 1h,1d').default('1h,1d'),
    latenessS: z.coerce.number().min(0).default(600).describe('a window closes this long after its end'),
    retainS: z.coerce.number().min(0).default(7 * 86400).describe('late readings for windows older than this are stored but no longer summarised'),
    tickMs: z.coerce.number().int().min(10).default(1000),
    k: z.coerce.number().int().min(2).default(5).describe('research cells covering fewer residents are suppressed'),
    rollupK: z.coerce.number().int().min(1).optional().describe('a roll-up to the parent region leaves out this node\'s own residents when they are fewer than this in a window (default: forwarder.k; 1 sends every window)'),
    fhirMaxEntries: z.coerce.number().int().min(1).max(10_000).default(100),
  }).prefault({}),
  demo: z.strictObject({
    enabled: bool.default(true).describe('create a demo resident, device and API key on first start'),
  }).prefault({}),
}).refine((c) => c.cluster.nats === undefined || c.store.kind === 'influx', {
  // a partition's readings are stored by whichever node owns it at the time: an embedded store per node would scatter them
  path: ['store', 'kind'], message: 'cluster mode over NATS stores readings in the InfluxDB every node shares: set VITALMESH_STORE=influx',
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
  VITALMESH_RATE_LIMIT_PER_MINUTE: 'http.rateLimitPerMinute',
  VITALMESH_ANONYMOUS_RATE_LIMIT_PER_MINUTE: 'http.anonymousRateLimitPerMinute',
  VITALMESH_LIVE_FRAMES_PER_S: 'http.liveFramesPerS',
  VITALMESH_DRAIN_BATCH: 'ingest.drainBatch',
  VITALMESH_DRAIN_INTERVAL_MS: 'ingest.drainIntervalMs',
  VITALMESH_DEAD_LETTER_MAX: 'ingest.deadLetterMax',
  VITALMESH_DEMO: 'demo.enabled',
  VITALMESH_ALERT_TICK_MS: 'alerting.tickMs',
  VITALMESH_ESCALATE_AFTER_S: 'alerting.escalateAfterS',
  VITALMESH_DESK_AFTER_S: 'alerting.deskAfterS',
  VITALMESH_FOLLOWERS_AFTER_S: 'alerting.followersAfterS',
  VITALMESH_ESCALATION_BY_REGION: 'alerting.escalationByRegion',
  VITALMESH_RENOTIFY_CRITICAL_S: 'alerting.renotifyCriticalS',
  VITALMESH_RENOTIFY_WARNING_S: 'alerting.renotifyWarningS',
  VITALMESH_RENOTIFY_INFO_S: 'alerting.renotifyInfoS',
  VITALMESH_ALERT_LIVE_HORIZON_S: 'alerting.liveHorizonS',
  VITALMESH_ALERT_RECORD_HORIZON_S: 'alerting.recordHorizonS',
  VITALMESH_ALERT_FLAP_COUNT: 'alerting.flapCount',
  VITALMESH_ALERT_FLAP_WINDOW_S: 'alerting.flapWindowS',
  VITALMESH_ALERT_MAX_SNOOZE_S: 'alerting.maxSnoozeS',
  VITALMESH_TIME_ZONE: 'alerting.timeZone',
  VITALMESH_PRIMARY_RULE_SETS: 'alerting.primaryRuleSets',
  VITALMESH_OUTBOX_POLL_MS: 'outbox.pollMs',
  VITALMESH_OUTBOX_TIMEOUT_MS: 'outbox.timeoutMs',
  VITALMESH_OUTBOX_MAX_BACKOFF_MS: 'outbox.maxBackoffMs',
  VITALMESH_OUTBOX_BREAKER_FAILURES: 'outbox.breakerFailures',
  VITALMESH_OUTBOX_BREAKER_OPEN_MS: 'outbox.breakerOpenMs',
  VITALMESH_OUTBOX_DEAD_LETTER_AFTER_S: 'outbox.deadLetterAfterS',
  VITALMESH_REGION_ID: 'region.id',
  VITALMESH_REGION_LEVEL: 'region.level',
  VITALMESH_PARENT_URL: 'region.parentUrl',
  VITALMESH_PARENT_TOKEN: 'region.parentToken',
  VITALMESH_WINDOWS: 'forwarder.windows',
  VITALMESH_WINDOW_LATENESS_S: 'forwarder.latenessS',
  VITALMESH_WINDOW_RETAIN_S: 'forwarder.retainS',
  VITALMESH_FORWARDER_TICK_MS: 'forwarder.tickMs',
  VITALMESH_RESEARCH_K: 'forwarder.k',
  VITALMESH_ROLLUP_K: 'forwarder.rollupK',
  VITALMESH_FHIR_MAX_ENTRIES: 'forwarder.fhirMaxEntries',
  VITALMESH_PUBLISH_RATE: 'mqtt.publishRatePerS',
  VITALMESH_PUBLISH_BURST: 'mqtt.publishBurst',
  VITALMESH_ABUSE_REFUSALS_PER_MINUTE: 'mqtt.abuseRefusalsPerMinute',
  VITALMESH_KEEPALIVE_LIMIT: 'mqtt.keepaliveLimitS',
  VITALMESH_CONNECT_TIMEOUT_MS: 'mqtt.connectTimeoutMs',
  VITALMESH_DRAIN_TIMEOUT_MS: 'mqtt.drainTimeoutMs',
  VITALMESH_MAX_TOPIC_LEVELS: 'mqtt.maxTopicLevels',
  VITALMESH_MAX_CONNECTIONS_PER_ADDRESS: 'mqtt.maxConnectionsPerAddress',
  VITALMESH_TLS_PORT: 'tls.port',
  VITALMESH_WSS_PORT: 'tls.wssPort',
  VITALMESH_TLS_CERT: 'tls.cert',
  VITALMESH_TLS_KEY: 'tls.key',
  VITALMESH_TLS_CA: 'tls.ca',
  VITALMESH_TLS_REQUIRE_CLIENT_CERT: 'tls.requireClientCert',
  VITALMESH_REDIS_URL: 'cluster.redisUrl',
  VITALMESH_REDIS_LINK_DOWN_DISCONNECT_MS: 'cluster.linkDownDisconnectMs',
  VITALMESH_NATS_URL: 'cluster.nats',
  VITALMESH_PG_URL: 'cluster.postgresUrl',
  VITALMESH_CLUSTER_PARTITIONS: 'cluster.partitions',
  VITALMESH_CLUSTER_REPLICAS: 'cluster.replicas',
  VITALMESH_NODE_ID: 'cluster.nodeId',
  VITALMESH_LEASE_MS: 'cluster.leaseMs',
  VITALMESH_CREDENTIAL_POLL_MS: 'fleet.credentialPollMs',
  VITALMESH_LAST_SEEN_FLUSH_MS: 'fleet.lastSeenFlushMs',
  VITALMESH_METRICS_REQUIRE_API_KEY: 'metrics.requireApiKey',
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
