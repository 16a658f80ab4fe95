import { join, resolve } from 'node:path'
import type { AddressInfo } from 'node:net'
import { openDatabase, topics, type Clock, type Config, type Logger } from './core/index.ts'
import { Registry, AuditLog, ensureDemo, type DemoCredentials } from './registry/index.ts'
import { Spool, EmbeddedStore, Drain, Ingest, type TelemetryStore } from './ingest/index.ts'
import { AlertBook, RuleSetStore, type Override } from './alerting/index.ts'
import { Outbox, Aggregator, parseWindow, hospitalSink, researchSink, parentSink, type SummarySink } from './forwarder/index.ts'
import { createBroker, type Broker } from './broker/index.ts'
import { buildApi, alertingRoutes, forwarderRoutes, operatorRoutes, dataRoutes, consoleRoutes, LiveHub } from './api/index.ts'

export interface AppDeps {
  config: Config
  logger: Logger
  clock: Clock
}

export interface Listening { mqttPort: number, httpPort: number }

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
  const audit = new AuditLog(db, clock)
  const exported = (action: string, subject: string, detail: unknown): void => { audit.append('forwarder', action, subject, detail) }
  const spool = new Spool(db, logger.child({ component: 'ingest' }), { deadLetterMax: config.ingest.deadLetterMax })
  const store: TelemetryStore = new EmbeddedStore(join(dataDir, 'telemetry.db'))
  const ruleSets = new RuleSetStore(db)
  const outbox = new Outbox(db, clock, logger.child({ component: 'outbox' }), { ...config.outbox, deadLetterAfterMs: config.outbox.deadLetterAfterS * 1000 })
  const alerts = new AlertBook({
    db, clock, logger: logger.child({ component: 'alerting' }),
    activeRuleSets: () => ruleSets.active(),
    resident: (id) => {
      const r = registry.resident(id)
      return r && { id: r.id, birthYear: r.birthYear, conditions: r.conditions, region: r.region, language: r.language, hospitalId: r.hospitalId }
    },
    overrides: (id) => new Map<string, Override>(registry.overrides(id).map((o) => [o.ruleKey, o.params])),
    hospitalEndpoint: (id) => {
      const h = registry.hospital(id)
      return h?.webhookUrl ? { url: h.webhookUrl, token: h.webhookToken } : undefined
    },
    enqueueWebhook: (e) => { outbox.enqueue(e) },
    options: {
      tickMs: config.alerting.tickMs,
      escalateAfterS: config.alerting.escalateAfterS,
      renotifyS: { critical: config.alerting.renotifyCriticalS, warning: config.alerting.renotifyWarningS, info: config.alerting.renotifyInfoS },
    },
  })
  spool.addParticipant(alerts)

  const windows = config.forwarder.windows.split(',').map((w) => parseWindow(w))
  const sinks: SummarySink[] = [
    hospitalSink({ node: config.region.id, maxEntries: config.forwarder.fhirMaxEntries, clock, hospitals: () => registry.hospitals(), enqueue: (e) => { outbox.enqueue(e) }, audit: exported }),
    researchSink({ k: config.forwarder.k, institutions: () => registry.institutions(), enqueue: (e) => { outbox.enqueue(e) }, audit: exported }),
  ]
  if (config.region.parentUrl) sinks.push(parentSink({ parentUrl: config.region.parentUrl, token: config.region.parentToken ?? null, enqueue: (e) => { outbox.enqueue(e) }, audit: exported }))
  const aggregator = new Aggregator({
    db, clock, logger: logger.child({ component: 'forwarder' }), windows,
    latenessMs: config.forwarder.latenessS * 1000, retainMs: config.forwarder.retainS * 1000,
    region: { id: config.region.id, level: config.region.level },
    resident: (id) => {
      const r = registry.resident(id)
      return r && { region: r.region, birthYear: r.birthYear, hospitalId: r.hospitalId, researchConsent: r.researchConsent }
    },
    alertsIn: (id, from, to) => alerts.openedBetween(id, from, to),
    sinks,
  })
  spool.addParticipant({ prepare: (rows) => aggregator.prepare(rows), commit: () => {} })
  const drain = new Drain(spool, store, logger.child({ component: 'drain' }), { batch: config.ingest.drainBatch, intervalMs: config.ingest.drainIntervalMs })

  let broker: Broker | undefined
  const ingest = new Ingest(spool, clock, (deviceId, e) => broker?.replyError(deviceId, e))
  broker = await createBroker({
    logger,
    authenticate: (u, p) => registry.authenticate(u, p),
    ingest: (device, payload, done) => ingest.accept(device, payload, done),
    maxPayloadBytes: config.mqtt.maxPayloadBytes,
    acknowledge: (residentId, payload, done) => {
      let id: unknown
      try { id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id } catch { /* reported below */ }
      if (typeof id !== 'string') {
        log.info({ residentId }, 'alert acknowledgement without {"id": "<alert id>"} ignored')
        return done(null)
      }
      try { alerts.acknowledge(id, `resident:${residentId}`, residentId) } catch (e) { log.info({ residentId, alertId: id, err: (e as Error).message }, 'alert acknowledgement refused') }
      done(null)
    },
  })
  const mqtt = broker
  const live = new LiveHub({ verifyApiKey: (t) => registry.verifyApiKey(t), hospitalOf: (id) => registry.resident(id)?.hospitalId })
  spool.onCommit((rows) => live.readings(rows))
  alerts.setNotifier({
    alert: (alert, delivered) => {
      live.alert(alert)
      mqtt.publish(topics.alerts(alert.residentId), Buffer.from(JSON.stringify(alert)), 1).then(delivered, (err: Error) => {
        log.warn({ err, alertId: alert.id }, 'could not publish an alert; it will be re-sent after a restart')
      })
    },
    status: (residentId, body) => {
      mqtt.publish(topics.alertStatus(residentId), Buffer.from(JSON.stringify(body)), 1, true).catch((err: Error) => log.warn({ err }, 'could not publish an alert status'))
    },
  })
  /** devices read the standards in force from a retained topic, to warn locally */
  const publishStandards = (): void => {
    const body = { ruleSets: alerts.activeRuleSets, updatedAt: new Date(clock.now()).toISOString() }
    mqtt.publish(topics.standards, Buffer.from(JSON.stringify(body)), 1, true).catch((err: Error) => log.warn({ err }, 'could not publish the standards'))
  }
  const rulesChanged = (residentId?: string): void => {
    alerts.rulesChanged(residentId)
    if (!residentId) publishStandards()
  }

  // node statistics for operators (console, /v1/stats), sampled once a second
  let lastAccepted = 0
  let readingsPerS = 0
  const stats = (): Record<string, unknown> => {
    const bySeverity: Record<string, number> = { info: 0, warning: 0, critical: 0 }
    for (const a of alerts.activeAlerts()) bySeverity[a.severity] = (bySeverity[a.severity] ?? 0) + 1
    return {
      at: clock.now(), readingsPerS, readingsAccepted: spool.stats.accepted, duplicates: spool.stats.duplicates,
      mqttClients: mqtt.aedes.connectedClients, openAlerts: bySeverity, outboxPending: outbox.pending(), drained: drain.stats.drained,
    }
  }
  let statsTimer: NodeJS.Timeout | undefined
  const sampleStats = (): void => {
    readingsPerS = spool.stats.accepted - lastAccepted
    lastAccepted = spool.stats.accepted
    live.stats(stats())
  }

  let started = false
  let stopping = false
  const api = buildApi({
    logger,
    verifyApiKey: (t) => registry.verifyApiKey(t),
    queryReadings: (r, from, to, limit) => store.queryRange(r, from, to, limit),
    residentExists: (id) => registry.resident(id) !== undefined,
    hospitalOf: (id) => registry.resident(id)?.hospitalId,
    mqttOverWebSocket: (stream, req) => mqtt.handle(stream, req),
    rateLimitPerMinute: config.http.rateLimitPerMinute,
    live,
    audited: (actor, action, subject, detail) => { audit.append(actor, action, subject, detail) },
    routes: [
      consoleRoutes({ registry, stats }),
      alertingRoutes({ registry, ruleSets, alerts, audit, rulesChanged }),
      dataRoutes({ registry, aggregator, audit, windows: windows.map((w) => w.name), k: config.forwarder.k }),
      operatorRoutes({ registry, audit, residentChanged: (id) => alerts.rulesChanged(id) }),
      forwarderRoutes({ registry, aggregator, outbox, audit, region: config.region, windows: windows.map((w) => w.name), residentChanged: (id) => alerts.rulesChanged(id) }),
    ],
    readiness: async () => {
      const checks: Record<string, string> = { app: started && !stopping ? 'ok' : 'starting or stopping' }
      try { await store.ping(); checks.store = 'ok' } catch (e) { checks.store = (e as Error).message }
      return checks
    },
  })

  let demo: DemoCredentials | undefined

  return {
    config, registry, audit, live, spool, store, alerts, ruleSets, outbox, aggregator, drain, ingest, broker: mqtt, api, rulesChanged,
    get demo () { return demo },
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
      alerts.start()
      outbox.start()
      aggregator.start(config.forwarder.tickMs)
      statsTimer = setInterval(sampleStats, 1000)
      publishStandards()
      const tcp = await mqtt.listenTcp(config.mqtt.host, config.mqtt.port)
      await api.listen({ host: config.http.host, port: config.http.port })
      const listening = { mqttPort: (tcp.address() as AddressInfo).port, httpPort: (api.server.address() as AddressInfo).port }
      started = true
      log.info({ ...listening, dataDir, store: store.kind },
        `vitalmesh started: MQTT mqtt://${config.mqtt.host}:${listening.mqttPort}, MQTT over WebSocket ws://${config.http.host}:${listening.httpPort}/mqtt, HTTP http://${config.http.host}:${listening.httpPort}`)
      return listening
    },
    async stop (): Promise<void> {
      stopping = true
      if (statsTimer) clearInterval(statsTimer)
      await api.close()
      await mqtt.close()
      spool.flush()
      drain.stop()
      alerts.stop()
      aggregator.stop()
      outbox.stop()
      await store.close()
      db.close()
      log.info('vitalmesh stopped')
    },
  }
}
