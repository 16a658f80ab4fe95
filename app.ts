import { join, resolve } from 'node:path'
import type { AddressInfo } from 'node:net'
import { openDatabase, topics, type Clock, type Config, type Logger } from './core/index.ts'
import { Registry, Fleet, ensureDemo, type DemoCredentials } from './registry/index.ts'
import { Spool, EmbeddedStore, Drain, Ingest, type TelemetryStore } from './ingest/index.ts'
import { AlertBook, defaultRuleSet } from './alerting/index.ts'
import { createBroker, createClusterBackends, listenTls, listenWss, type Broker, type ClusterBackends, type TlsFiles } from './broker/index.ts'
import { buildApi, registerDeviceRoutes, registerMetricsRoute } from './api/index.ts'

export interface AppDeps {
  config: Config
  logger: Logger
  clock: Clock
}

export interface Listening { mqttPort: number, httpPort: number, tlsPort?: number, wssPort?: number }

export type App = Awaited<ReturnType<typeof createApp>>

/**
 * Wires the components of one vitalmesh node. Tests call this directly; only main.ts
 * reads the environment, creates the root logger, and handles signals.
 */
export async function createApp ({ config, logger, clock }: AppDeps) {
  const dataDir = resolve(config.dataDir)
  const log = logger.child({ component: 'app' })
  const db = openDatabase(join(dataDir, 'vitalmesh.db'))
  const registry = new Registry(db)
  const spool = new Spool(db, logger.child({ component: 'ingest' }), { deadLetterMax: config.ingest.deadLetterMax })
  const store: TelemetryStore = new EmbeddedStore(join(dataDir, 'telemetry.db'))
  const alerts = new AlertBook(db, defaultRuleSet, clock, logger.child({ component: 'alerting' }))
  spool.addParticipant(alerts)
  const drain = new Drain(spool, store, logger.child({ component: 'drain' }), { batch: config.ingest.drainBatch, intervalMs: config.ingest.drainIntervalMs })

  const fleet = new Fleet(registry, clock)
  const cluster: ClusterBackends | undefined = config.cluster.redisUrl ? createClusterBackends(config.cluster.redisUrl, logger) : undefined

  let broker: Broker | undefined
  const ingest = new Ingest(spool, clock, (deviceId, e) => broker?.replyError(deviceId, e))
  const m = config.mqtt
  broker = await createBroker({
    logger,
    clock,
    authenticate: (u, p) => registry.authenticate(u, p),
    authenticateCertificate: (id) => registry.authenticateCertificate(id),
    ingest: (device, payload, done) => ingest.accept(device, payload, done),
    recordLastSeen: (seen) => fleet.recordLastSeen(seen),
    limits: {
      maxPayloadBytes: m.maxPayloadBytes,
      rate: { ratePerS: m.publishRatePerS, burst: m.publishBurst, abuseRefusalsPerMinute: m.abuseRefusalsPerMinute },
      keepaliveLimitS: m.keepaliveLimitS,
      connectTimeoutMs: m.connectTimeoutMs,
      drainTimeoutMs: m.drainTimeoutMs,
      maxTopicLevels: m.maxTopicLevels,
      maxConnectionsPerAddress: m.maxConnectionsPerAddress,
    },
    ...(cluster ? { mq: cluster.mq, persistence: cluster.persistence } : {}),
  })
  const mqtt = broker
  const credentialWatch = watchCredentials(fleet, mqtt, config.fleet.credentialPollMs, log)
  if (cluster) {
    // mqemitter-redis delivers nothing to a node while its Redis link is down: after a grace
    // period this node ends its sessions, so clients reconnect (through the load balancer)
    // to a node that is linked, where persistent sessions resume from Redis
    let linkTimer: NodeJS.Timeout | undefined
    cluster.onLinkChange((up) => {
      clearTimeout(linkTimer)
      if (!up && config.cluster.linkDownDisconnectMs > 0) {
        linkTimer = setTimeout(() => {
          const n = mqtt.disconnectAll()
          log.warn({ sessions: n }, 'Redis link down: ended this node\'s MQTT sessions so clients move to a linked node')
        }, config.cluster.linkDownDisconnectMs)
        linkTimer.unref()
      }
    })
  }
  alerts.setNotifier((alert, delivered) => {
    mqtt.publish(topics.alerts(alert.residentId), Buffer.from(JSON.stringify(alert)), 1).then(delivered, (err: Error) => {
      log.warn({ err, alertId: alert.id }, 'could not publish an alert; it will be re-sent after a restart')
    })
  })

  let started = false
  let stopping = false
  const api = buildApi({
    logger,
    verifyApiKey: (t) => registry.verifyApiKey(t),
    queryReadings: (r, from, to, limit) => store.queryRange(r, from, to, limit),
    residentExists: (id) => registry.resident(id) !== undefined,
    mqttOverWebSocket: (stream, req) => mqtt.handle(stream, req),
    readiness: async () => {
      const checks: Record<string, string> = { app: started && !stopping ? 'ok' : 'starting or stopping' }
      try { await store.ping(); checks.store = 'ok' } catch (e) { checks.store = (e as Error).message }
      if (cluster) checks.redis = cluster.status()
      return checks
    },
    routes: [
      (app) => registerDeviceRoutes(app, {
        fleet,
        isOnline: (id) => mqtt.presence.isOnline(id),
        pendingLastSeen: (id) => mqtt.presence.pendingLastSeen(id),
        disconnect: (id) => mqtt.disconnectIdentity(id),
      }),
      (app) => registerMetricsRoute(app, [mqtt.metrics.registry], { requireApiKey: config.metrics.requireApiKey, verifyApiKey: (t) => registry.verifyApiKey(t), logger }),
    ],
  })
  const tlsFiles: TlsFiles | undefined = config.tls.cert && config.tls.key
    ? { cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, requireClientCert: config.tls.requireClientCert, handshakeTimeoutMs: m.connectTimeoutMs }
    : undefined

  let demo: DemoCredentials | undefined
  let listening: Listening | undefined

  return {
    config, registry, fleet, spool, store, alerts, drain, ingest, broker: mqtt, api,
    get demo () { return demo },
    /** the bound ports once started */
    get listening () { return listening },
    async start (): Promise<Listening> {
      if (config.demo.enabled) {
        const file = join(dataDir, 'demo-credentials.json')
        const r = await ensureDemo(registry, file)
        demo = r.credentials
        log.info({ file, resident: demo.resident.id, device: demo.device.deviceId, fleet: demo.fleet.length },
          r.created ? 'demo resident, device and fleet created; credentials written to the file (print them with `npm run vitalmesh -- demo`)' : 'demo credentials are in the file (print them with `npm run vitalmesh -- demo`)')
      }
      drain.start()
      alerts.resendUndelivered()
      fleet.resetOnline()
      mqtt.presence.start(config.fleet.lastSeenFlushMs)
      credentialWatch.start()
      const tcp = await mqtt.listenTcp(config.mqtt.host, config.mqtt.port)
      await api.listen({ host: config.http.host, port: config.http.port })
      const ports: Listening = { mqttPort: (tcp.address() as AddressInfo).port, httpPort: (api.server.address() as AddressInfo).port }
      if (tlsFiles && config.tls.port !== undefined) ports.tlsPort = ((await listenTls(mqtt, tlsFiles, config.mqtt.host, config.tls.port)).address() as AddressInfo).port
      if (tlsFiles && config.tls.wssPort !== undefined) ports.wssPort = ((await listenWss(mqtt, tlsFiles, config.http.host, config.tls.wssPort)).address() as AddressInfo).port
      listening = ports
      started = true
      log.info({ ...listening, dataDir, store: store.kind },
        `vitalmesh started: MQTT mqtt://${config.mqtt.host}:${listening.mqttPort}, MQTT over WebSocket ws://${config.http.host}:${listening.httpPort}/mqtt, HTTP http://${config.http.host}:${listening.httpPort}`)
      return listening
    },
    async stop (): Promise<void> {
      stopping = true
      credentialWatch.stop()
      await api.close()
      await mqtt.close()
      await cluster?.close()
      spool.flush()
      drain.stop()
      // a pass still writing to the store would read the spool after db.close()
      await drain.settled()
      alerts.flushDelivered()
      await store.close()
      db.close()
      log.info('vitalmesh stopped')
    },
  }
}

/**
 * Ends the sessions of devices whose credentials were rotated or revoked by anyone (the
 * API of this node, the CLI, another node sharing the registry): a cheap indexed poll.
 */
function watchCredentials (fleet: Fleet, broker: Broker, everyMs: number, log: Logger) {
  let cursor = fleet.latestChange()
  let timer: NodeJS.Timeout | undefined
  const poll = (): void => {
    try {
      for (const c of fleet.changedSince(cursor)) {
        broker.disconnectIdentity(c.id, c.at)
        cursor = Math.max(cursor, c.at)
      }
    } catch (err) { log.error({ err }, 'could not read credential changes') }
  }
  return {
    start () { timer ??= setInterval(poll, everyMs); timer.unref() },
    stop () { if (timer) clearInterval(timer); timer = undefined },
  }
}
