import { join, resolve } from 'node:path'
import type { AddressInfo } from 'node:net'
import { openDatabase, topics, type Clock, type Config, type Logger } from './core/index.ts'
import { Registry, ensureDemo, type DemoCredentials } from './registry/index.ts'
import { Spool, EmbeddedStore, Drain, Ingest, InfluxStore, Rollups, AlertExport, type TelemetryStore } from './ingest/index.ts'
import { AlertBook, defaultRuleSet } from './alerting/index.ts'
import { createBroker, type Broker } from './broker/index.ts'
import { buildApi } from './api/index.ts'

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
  const spool = new Spool(db, logger.child({ component: 'ingest' }), { deadLetterMax: config.ingest.deadLetterMax, maxRows: config.ingest.spoolMaxRows, maxBytes: config.ingest.spoolMaxBytes })
  const influx = config.store.kind === 'influx'
    ? new InfluxStore(config.store.influx, (id) => registry.device(id), logger.child({ component: 'influx' }))
    : undefined
  const store: TelemetryStore = influx ?? new EmbeddedStore(join(dataDir, 'telemetry.db'))
  const rollups = influx && config.store.influx.rollups ? new Rollups(db, influx, clock, logger.child({ component: 'rollups' })) : undefined
  const alerts = new AlertBook(db, defaultRuleSet, clock, logger.child({ component: 'alerting' }))
  const alertExport = influx ? new AlertExport(db, influx, (id) => registry.resident(id)?.region, logger.child({ component: 'alert-export' })) : undefined
  spool.addParticipant(alerts)
  const drain = new Drain(spool, store, logger.child({ component: 'drain' }), { batch: config.ingest.drainBatch, intervalMs: config.ingest.drainIntervalMs, concurrency: config.ingest.drainConcurrency })
  if (rollups) drain.onDrained((rows) => rollups.touch(rows))

  let broker: Broker | undefined
  const ingest = new Ingest(spool, clock, (deviceId, e) => broker?.replyError(deviceId, e))
  broker = await createBroker({
    logger,
    authenticate: (u, p) => registry.authenticate(u, p),
    ingest: (device, payload, done) => ingest.accept(device, payload, done),
    maxPayloadBytes: config.mqtt.maxPayloadBytes,
  })
  const mqtt = broker
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
      return checks
    },
  })

  let demo: DemoCredentials | undefined

  return {
    config, registry, spool, store, alerts, drain, ingest, broker: mqtt, api, rollups, alertExport,
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
      rollups?.start()
      alertExport?.start()
      alerts.resendUndelivered()
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
      await api.close()
      await mqtt.close()
      spool.flush()
      drain.stop()
      rollups?.stop()
      alertExport?.stop()
      alerts.flushDelivered()
      await store.close()
      db.close()
      log.info('vitalmesh stopped')
    },
  }
}
