import { join, resolve } from 'node:path'
import { hostname } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { AddressInfo } from 'node:net'
import { Gauge, Registry as MetricsRegistry } from 'prom-client'
import { atomically, openDatabase, WalCheckpointer, topics, VitalmeshError, type Clock, type Config, type Logger, type StoredReading } from './core/index.ts'
import { Registry, AuditLog, Fleet, CredentialSync, RegistryReplica, REPLICATED_TABLES, ensureDemo, type DemoCredentials } from './registry/index.ts'
import { Spool, EmbeddedStore, Drain, Ingest, InfluxStore, Rollups, AlertExport, type AppendRequest, type ConsumerStatus, type SpoolRow, type TelemetryStore } from './ingest/index.ts'
import { AlertBook, RuleSetStore, ALERT_PREFERENCES_REPLICA, type Alert, type EscalationChain, type Override } from './alerting/index.ts'
import { Outbox, Aggregator, parseWindow, hospitalSink, researchSink, parentSink, alertFlagSink, measurementSink, type SummarySink } from './forwarder/index.ts'
import { createBroker, createClusterBackends, redisCredentialLog, listenTls, listenWss, mqttUpgradeHandler, type Broker, type ClusterBackends, type TlsFiles } from './broker/index.ts'
import { buildApi, alertCareRoutes, alertingRoutes, localAlertActions, judgedAlertActions, localReportActions, judgedReportActions, type AlertActions, type ReportActions, type LiveReading, backtestRoutes, forwarderRoutes, operatorRoutes, dataRoutes, consoleRoutes, LiveHub, registerDeviceRoutes, registerMetricsRoute, reportRoutes, auditViewRoutes, publicStatsRoutes, followerRoutes } from './api/index.ts'
import { WindowRebuilds } from './cluster/window-rebuild.ts'
import { ClusterNode, LOG_CURSOR } from './cluster/node.ts'
import { AuditShipper, ClusterAuditChain } from './cluster/audit-chain.ts'
import { nodeSource } from './cluster/node-source.ts'
import { ClusterRegistryLog, RegistrySync } from './cluster/registry-log.ts'
import { AlertMirror, ClusterAlerts } from './cluster/alert-mirror.ts'
import { WindowMirror } from './cluster/window-mirror.ts'
import { OutboxMirror } from './cluster/outbox-mirror.ts'
import { ReportMirror } from './cluster/report-mirror.ts'
import { ReportBook, DeviceModelRegister, DEMO_DEVICE_MODELS, reportSink } from './reports/index.ts'

export interface AppDeps {
  config: Config
  logger: Logger
  clock: Clock
}

export interface Listening { mqttPort: number, httpPort: number, tlsPort?: number, wssPort?: number }

export type App = Awaited<ReturnType<typeof createApp>>

/** "c1=china-2018,*=acc-aha-2017" -> { c1: 'china-2018', '*': 'acc-aha-2017' } */
function parsePrimaryRuleSets (s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [region, id] = part.split('=').map((x) => x.trim())
    if (region && id) out[region] = id
  }
  return out
}

/** "c1=60/300/900" -> { c1: { followersAfterS: 60, deskAfterS: 300, hospitalAfterS: 900 } } (the config schema checked the form) */
function parseChains (s: string): Record<string, EscalationChain> {
  const out: Record<string, EscalationChain> = {}
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const [region, steps] = part.split('=') as [string, string]
    if (out[region]) throw new VitalmeshError('VM_CONFIG_INVALID', `alerting.escalationByRegion names region ${region} twice`)
    const [f, d, h] = steps.split('/').map(Number) as [number, number, number]
    if (!(f <= d && d <= h)) throw new VitalmeshError('VM_CONFIG_INVALID', `alerting.escalationByRegion: the steps of ${region} must not go backwards (followers ${f} s ≤ desk ${d} s ≤ hospital ${h} s)`)
    out[region] = { followersAfterS: f, deskAfterS: d, hospitalAfterS: h }
  }
  return out
}

/**
 * Wires the components of one vitalmesh node. Tests call this directly; only main.ts
 * reads the environment, creates the root logger, and handles signals.
 */
export async function createApp ({ config, logger, clock }: AppDeps) {
  const dataDir = resolve(config.dataDir)
  const log = logger.child({ component: 'app' })
  {
    const a = config.alerting
    // the chain's steps in order: a node that sends to the hospital before the desk (or the desk before the followers) is allowed (tests do it) but said
    if (!(a.followersAfterS <= a.deskAfterS && a.deskAfterS <= a.escalateAfterS)) log.warn({ followersAfterS: a.followersAfterS, deskAfterS: a.deskAfterS, escalateAfterS: a.escalateAfterS }, 'the escalation chain\'s steps are out of order (followers ≤ duty desk ≤ hospital expected)')
  }
  const db = openDatabase(join(dataDir, 'vitalmesh.db'))
  const registry = new Registry(db)
  const audit = new AuditLog(db, clock)
  const exported = (action: string, subject: string, detail: unknown): void => { audit.append('forwarder', action, subject, detail) }
  // cluster mode over NATS: what devices send here is committed to a spool of its own, which only
  // ships to the reading log; the node's database holds the feed, the readings of the partitions
  // this node owns, which alerting, the forwarder and the reports consume (cluster/node.ts)
  const ingestDb = config.cluster.nats ? openDatabase(join(dataDir, 'ingest-spool.db')) : db
  // In cluster mode neither spool fsyncs its commits: the PUBACK waits for the reading log (a majority of its
  // replicas), so the ingest spool's fsync promised nothing more, and the feed is synced once before its partition's
  // position commits (settled, below): two fsyncs per reading fewer at light load. (The nodes' CPU per reading did not
  // move measurably with them, bench/README.md: it is not where cluster mode's cost is.)
  const spool = new Spool(ingestDb, logger.child({ component: 'ingest' }), { deadLetterMax: config.ingest.deadLetterMax, maxRows: config.ingest.spoolMaxRows, maxBytes: config.ingest.spoolMaxBytes, drainCursor: config.cluster.nats ? LOG_CURSOR : 'store', fsync: !config.cluster.nats })
  // the feed's rows leave once alerting and every other consumer has them (no drain: the partition's owner stores readings from the log)
  const feed = config.cluster.nats ? new Spool(db, logger.child({ component: 'feed' }), { deadLetterMax: config.ingest.deadLetterMax, drainCursor: 'alerting', fsync: false }) : spool
  if (feed !== spool) {
    await shipUnshippedOfOldLayout(feed, spool, registry, log)
    // readings a crash left in the feed that no consumer had: their partition's position did not pass them (it commits only
    // once alerting judged what the feed got), so the log delivers them again to whichever node follows the partition now
    const cut = Math.max(...FEED_CONSUMERS.map((n) => feed.cursor(n)))
    if (cut < feed.head()) log.warn({ readings: feed.discardAfter(cut), after: cut }, 'readings a crash left unjudged in the feed dropped: the reading log delivers them again where their partition is followed now')
  }
  /** every cursor consumer of the node: the spool's, and in cluster mode the feed's (/readyz, /v1/stats, /metrics) */
  const consumerStatus = (): ConsumerStatus[] => feed === spool ? spool.consumerStatus() : [...spool.consumerStatus(), ...feed.consumerStatus()]
  const influx = config.store.kind === 'influx'
    ? new InfluxStore(config.store.influx, (id) => registry.device(id), logger.child({ component: 'influx' }))
    : undefined
  const embedded = influx ? undefined : new EmbeddedStore(join(dataDir, 'telemetry.db'), { writeOnThread: true })
  const store: TelemetryStore = influx ?? embedded!
  const checkpointer = new WalCheckpointer([db, ...(ingestDb !== db ? [ingestDb] : []), ...(embedded ? [embedded.connection] : [])], logger.child({ component: 'sqlite' }), { writtenElsewhere: embedded?.writesOnThread ? [embedded.connection] : [] })
  const rollups = influx && config.store.influx.rollups ? new Rollups(db, influx, clock, logger.child({ component: 'rollups' })) : undefined
  // cluster mode over NATS: the spool's drain ships to the reading log, PUBACKs wait for it, and the partitions' owners write the store (cluster/node.ts)
  const c = config.cluster
  const nodeId = c.nodeId ?? `${hostname().replace(/[^A-Za-z0-9_=-]/g, '-')}-${process.pid}`
  const feedKeyOf = feedDeviceKeys(registry)
  const clusterNode = c.nats
    ? await ClusterNode.open({
      servers: c.nats.split(','), node: nodeId,
      partitions: c.partitions, replicas: c.replicas, leaseMs: c.leaseMs, postgresUrl: c.postgresUrl!,
      store, head: () => spool.head(), shippedTo: spool.cursor(LOG_CURSOR), onStored: (rows) => rollups?.touch(rows), onLinkUp: () => drain.retryNow(),
      feed: {
        append: async (_partition, rows) => { await appendByDevice(feed, rows, feedKeyOf) },
        // the partition's position commits only once alerting, the reports and the hospitals' feed took what the feed
        // got, and the cluster's copies have what they made of it (alerts, report runs, outbox messages): a node that
        // takes the partition over then resumes after those readings holding all of it, and neither judges one twice nor
        // misses one (the windows are rebuilt from the log instead)
        settled: async () => {
          const head = feed.head()
          await Promise.all(FEED_COMMITTERS.map(async (n) => { await feed.whenConsumed(n, head) }))
          // the feed's rows, and what its consumers committed of them, on disk: a power loss must not take back what
          // the position is about to pass (the appends and the consumers' transactions are not fsynced one by one)
          await Promise.all([feed.sync(), alertMirror!.flush(), outboxMirror!.flush(), reportMirror!.flush()])
        },
        readBackMs: () => alerts.lookbackMs,
        takeOver: async (partition, fromSeq, recent) => {
          const t0 = Date.now()
          const theirs = (id: string): boolean => clusterNode!.log.partitionOf(id) === partition
          // what the feed holds of an earlier time this node followed the partition is consumed first: the rebuild
          // below replaces it (those readings are before fromSeq, so in the log's part it reads) rather than adds to it
          await Promise.all(FEED_CONSUMERS.map(async (n) => { await feed.whenConsumed(n, feed.head()) }))
          // with the alerts opened within the open windows' span, resolved or not: a summary counts the alerts opened in its window
          const windowSpanMs = Math.max(0, ...windows.map((w) => w.ms)) + 3600_000 + config.forwarder.latenessS * 1000
          alerts.adopt(theirs, await clusterAlerts!.handedOver(theirs, alerts.activeOf(theirs), clock.now() - windowSpanMs))
          reports.adopt(await reportMirror!.handedOver(theirs))
          // the residents' recent past up to where the partition resumes (`recent`: read back from the log before it
          // resumes, at least the rules' look-back and the log's duplicate window): what the rules look back on, so that
          // its next readings are judged on the whole timeline; and marked as fed, since a reading the previous owner
          // fed may be in the log twice (a device that resent it to another node after a lost PUBACK), the second copy
          // after where the partition resumes, which the feed then drops
          const now = clock.now()
          rememberFed(feed, feedKeyOf, recent)
          alerts.warm(recent.filter((r) => r.ts >= now - alerts.lookbackMs))
          // and the summary windows still open (a day's, from the resident's local midnight): readings reach the log after
          // they are taken, so all of it reached the log within that span (a phone's old history is recorded only). A busy
          // partition's day is millions of readings: read back while the partition goes on (windowRebuilds)
          // (a rebuild of an earlier time this node followed it, still under way, stops first: this one replaces it)
          await windowRebuilds.stop(partition)
          windowRebuilds.start(partition, theirs, fromSeq, now - windowSpanMs, now - 3 * config.cluster.leaseMs)
          log.info({ partition, fromSeq, readings: recent.length, ms: Date.now() - t0 }, 'took the partition over: its residents\' alerts adopted and their timelines rebuilt from the reading log; their open summary windows are being rebuilt')
        },
        // the partition moved on (or the node stops): a rebuild of its windows still under way stops first
        released: async (partition) => { await windowRebuilds.stop(partition) },
      },
      logger: logger.child({ component: 'cluster' }),
    })
    : undefined
  // cluster mode over NATS: this node's audit trail is shipped to the cluster's one chain in PostgreSQL, which the API reads
  const auditChain = clusterNode
    ? await ClusterAuditChain.open(c.postgresUrl!).catch((err: unknown) => { throw new Error(`cluster mode: cannot open the audit chain in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  // this node's name in the cluster's shared logs (audit chain, registry, alerts), read once
  const source = clusterNode ? nodeSource(db, nodeId) : ''
  const auditShipper = auditChain && new AuditShipper({ local: audit, chain: auditChain, source, logger: logger.child({ component: 'audit' }) })
  const auditTrail = auditShipper ?? audit
  // cluster mode: what acts on time passing (alerting's timers, closing windows, finishing reports) acts only on the residents this node judges
  const judging = clusterNode ? { owns: (id: string): boolean => clusterNode.owns(id) } : {}
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
    // the hospital's `alerts` FHIR feed: a Flag per live critical alert (beside the JSON escalation webhook)
    followers: (id) => ({
      residentName: registry.resident(id)?.name ?? id,
      followers: registry.followers.active(id).map((f) => ({ id: f.id, language: f.language, channels: f.channels, notify: f.notify })),
    }),
    followerActive: (id) => registry.followers.isActive(id),
    // cluster mode: only the owner of the resident's partition acts on time passing
    ...judging,
    criticalAlert: alertFlagSink({ node: config.region.id, clock, hospital: (id) => registry.hospital(id), enqueue: (e) => { outbox.enqueue(e) }, audit: exported }),
    options: {
      tickMs: config.alerting.tickMs,
      escalateAfterS: config.alerting.escalateAfterS,
      deskAfterS: config.alerting.deskAfterS,
      followersAfterS: config.alerting.followersAfterS,
      chainByRegion: parseChains(config.alerting.escalationByRegion),
      renotifyS: { critical: config.alerting.renotifyCriticalS, warning: config.alerting.renotifyWarningS, info: config.alerting.renotifyInfoS },
      liveHorizonS: config.alerting.liveHorizonS,
      recordHorizonS: config.alerting.recordHorizonS,
      flapCount: config.alerting.flapCount,
      flapWindowS: config.alerting.flapWindowS,
      maxSnoozeS: config.alerting.maxSnoozeS,
      timeZone: config.alerting.timeZone,
      primaryRuleSets: parsePrimaryRuleSets(config.alerting.primaryRuleSets),
    },
  })
  // alerting is a cursor consumer of the spool: it runs after the PUBACK, so nothing in it can stop ingest
  alerts.attachTo(feed)
  // acting on an alert happens where its resident is judged: here, or in cluster mode on the owner of the resident's partition
  const localActions = localAlertActions(alerts)
  const alertActions: AlertActions = clusterNode ? judgedAlertActions(async (residentId, op, args) => await clusterNode.judge(residentId, `alerts.${op}`, args)) : localActions

  const windows = config.forwarder.windows.split(',').map((w) => parseWindow(w))
  const sinks: SummarySink[] = [
    hospitalSink({ node: config.region.id, ...(source ? { sender: source } : {}), maxEntries: config.forwarder.fhirMaxEntries, clock, hospitals: () => registry.hospitals(), enqueue: (e) => { outbox.enqueue(e) }, audit: exported }),
  ]
  // what is about the whole region (research cells, the parent's roll-up) needs every resident's window: in cluster
  // mode one node sends it, from the cluster's copy of every node's windows (cluster/window-mirror.ts)
  const regionSinks: SummarySink[] = [researchSink({ k: config.forwarder.k, institutions: () => registry.institutions(), enqueue: (e) => { outbox.enqueue(e) }, audit: exported })]
  if (config.region.parentUrl) regionSinks.push(parentSink({ parentUrl: config.region.parentUrl, token: config.region.parentToken ?? null, enqueue: (e) => { outbox.enqueue(e) }, audit: exported }))
  if (!clusterNode) sinks.push(...regionSinks)
  const aggregator = new Aggregator({
    db, clock, spool: feed, logger: logger.child({ component: 'forwarder' }), windows,
    latenessMs: config.forwarder.latenessS * 1000, retainMs: config.forwarder.retainS * 1000,
    region: { id: config.region.id, level: config.region.level }, rollupK: config.forwarder.rollupK ?? config.forwarder.k,
    resident: (id) => {
      const r = registry.resident(id)
      return r && { region: r.region, birthYear: r.birthYear, hospitalId: r.hospitalId, researchConsent: r.researchConsent }
    },
    // daily windows start at the resident's local midnight: their own zone, else the region's
    timeZone: (id) => alerts.timeZoneOf(id),
    alertsIn: (id, from, to) => alerts.openedBetween(id, from, to),
    sinks,
    // cluster mode: only the resident's judge sends its windows
    ...judging,
  })
  // cluster mode: the summary windows of a partition taken over, rebuilt from the reading log while the partition goes on
  const windowRebuilds = new WindowRebuilds({ log: { scan: async (...a) => await clusterNode!.log.scan(...a) }, windows: aggregator, logger: logger.child({ component: 'cluster' }) })
  // the forwarder keeps its windows in memory and writes them with its cursor every few seconds
  feed.attach({ name: 'forwarder', checkpointsItself: true, consume: (rows) => aggregator.prepare(rows), failed: () => aggregator.failed() })
  // clinical reports (issue 15): readings feed protocol runs, their state committed with the reports cursor; finished reports go to hospitals through the outbox
  // the validated-device register (operators, PUT /v1/device-models/:model); the demo's two models are built in while the demo is on
  const deviceModels = new DeviceModelRegister(db, clock, config.demo.enabled ? DEMO_DEVICE_MODELS : [])
  const reports = new ReportBook({
    db, clock, logger: logger.child({ component: 'reports' }), deviceModel: (id) => registry.device(id)?.model, catalogue: deviceModels,
    // cluster mode: only the node judging the resident finishes its runs
    ...judging,
  })
  // cluster mode: every node's runs in PostgreSQL, for the node that takes a resident over (cluster/report-mirror.ts)
  if (!clusterNode) ReportMirror.uninstall(db)
  const reportMirror = clusterNode
    ? await ReportMirror.open({ db, postgresUrl: c.postgresUrl!, clock, logger: logger.child({ component: 'report-mirror' }), source, snapshot: (id) => reports.snapshot(id), amendMs: reports.amendWindowMs })
      .catch((err: unknown) => { throw new Error(`cluster mode: cannot open the cluster's report runs in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  feed.attach({ name: 'reports', consume: (rows) => reports.consume(rows) })
  // a resident's report runs are kept where its readings go: here, or in cluster mode on the node judging the resident
  const localReports = localReportActions(reports)
  const reportActions: ReportActions = clusterNode ? judgedReportActions(async (residentId, op, args) => await clusterNode.judge(residentId, `reports.${op}`, args)) : localReports
  // what the other nodes of a cluster ask of the residents this node judges: `alerts.<action>` and `reports.<action>`
  const judged = new Map<string, object>([['alerts', localActions], ['reports', localReports]])
  clusterNode?.serveJudge(async (op, args) => {
    const [scope, name] = op.split('.') as [string, string | undefined]
    const actions = judged.get(scope) as Record<string, unknown> | undefined
    const f = actions && name !== undefined && Object.hasOwn(actions, name) ? actions[name] : undefined
    if (!f) throw new VitalmeshError('VM_BAD_REQUEST', `no action ${op} on a resident's alerts or reports`)
    const out = await (f as (...a: unknown[]) => Promise<unknown>)(...args)
    // what the action changed (a report run started, an alert acknowledged) is in the cluster's copy before the answer:
    // a judge that dies right after answering leaves it to the next, which adopts it from there. Without it a run
    // answered 201 lived only on the judge until the next shipping round (every 250 ms), and a kill -9 in between left
    // the next owner without it (test/cluster-nats.test.ts failed so, 404, three times in a row on a loaded host).
    // PostgreSQL unreachable: answered anyway, as the resident is told of an alert; the copy gets it when it is back
    await Promise.all([reportMirror!.flush(), alertMirror!.flush(), outboxMirror!.flush()]).catch((err: unknown) => {
      log.warn({ err, op }, 'an action on a resident was done on its judge, but not shipped to the cluster\'s copy yet (PostgreSQL unreachable); it is shipped when the link is back')
    })
    return out
  })
  // the hospitals' `measurements` FHIR feed: every reading as an Observation, enqueued with this consumer's cursor
  const sendMeasurements = measurementSink({ node: config.region.id, maxEntries: config.forwarder.fhirMaxEntries, clock, hospitals: () => registry.hospitals(), hospitalOf: (id) => registry.resident(id)?.hospitalId, enqueue: (e) => { outbox.enqueue(e) }, audit: exported })
  feed.attach({ name: 'hospital-measurements', consume: (rows) => { sendMeasurements(rows) } })
  const sendReports = reportSink({ node: config.region.id, hospitals: () => registry.hospitals(), hospitalOf: (id) => registry.resident(id)?.hospitalId, enqueue: (e) => { outbox.enqueue(e) }, audit: exported })
  const alertExport = influx ? new AlertExport(db, (after, limit) => alerts.eventsAfter(after, limit), influx, (id) => registry.resident(id)?.region, logger.child({ component: 'alert-export' })) : undefined
  // in cluster mode a PUBACK waits for this drain: it ships each commit at once, not gathered for intervalMs
  const drain = clusterNode
    ? new Drain(spool, clusterNode.sink, logger.child({ component: 'drain' }), { cursor: LOG_CURSOR, batch: config.ingest.drainBatch, intervalMs: 0, concurrency: config.ingest.drainConcurrency, ackEveryMs: 100 })
    : new Drain(spool, store, logger.child({ component: 'drain' }), { batch: config.ingest.drainBatch, intervalMs: config.ingest.drainIntervalMs, concurrency: config.ingest.drainConcurrency })
  if (clusterNode) drain.onDrained(clusterNode.shippedRows)
  else if (rollups) drain.onDrained((rows) => rollups.touch(rows))

  const fleet = new Fleet(registry, clock)
  const cluster: ClusterBackends | undefined = config.cluster.redisUrl ? createClusterBackends(config.cluster.redisUrl, logger) : undefined

  let broker: Broker | undefined
  const ingest = new Ingest(spool, clock, (deviceId, e) => broker?.replyError(deviceId, e), undefined, clusterNode?.hold)
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
    acknowledge: (who, payload, done) => {
      const residentId = who.kind === 'resident' ? who.id : who.residentId
      let id: unknown
      try { id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id } catch { /* reported below */ }
      if (typeof id !== 'string') {
        log.info({ residentId, by: who.id }, 'alert acknowledgement without {"id": "<alert id>"} ignored')
        return done(null)
      }
      if (who.kind === 'follower' && !registry.followers.isActive(who.id)) return done(null)
      const alertId = id
      // in cluster mode on the node judging the resident, whichever node the phone is connected to
      alertActions.acknowledge(residentId, alertId, `${who.kind}:${who.id}`, residentId).then(() => {
        if (who.kind === 'follower') audit.append(`follower:${who.id}:mqtt`, 'alert.acknowledged', residentId, { alertId, via: 'mqtt' })
      }, (e: unknown) => { log.info({ residentId, by: who.id, alertId, err: (e as Error).message }, 'alert acknowledgement refused') })
      done(null)
    },
  })
  const mqtt = broker
  // in a cluster every node's registry is its own SQLite file; rotations and revocations (devices, API keys) reach the others
  // through a Redis stream, or with NATS (and no Redis) through a JetStream stream
  const credentialLog = config.cluster.redisUrl ? redisCredentialLog(config.cluster.redisUrl) : await clusterNode?.credentialLog()
  const credentialSync = credentialLog
    ? new CredentialSync(db, fleet, registry, credentialLog, `${hostname()}:${process.pid}`, (id, at) => mqtt.disconnectIdentity(id, at), logger.child({ component: 'credential-sync' }))
    : undefined
  const credentialWatch = watchCredentials(fleet, mqtt, config.fleet.credentialPollMs, log, credentialSync)
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
  const mqttUpgrade = mqttUpgradeHandler((stream, req) => mqtt.handle(stream, req))
  const live = new LiveHub({
    verifyApiKey: (t) => registry.verifyApiKey(t), apiKey: (id) => registry.apiKeyById(id), revision: () => registry.revision(),
    hospitalOf: (id) => registry.resident(id)?.hospitalId, followersOf: (id) => registry.followers.active(id), followedBy: (fid) => registry.followers.residentOf(fid), framesPerS: config.http.liveFramesPerS, logger: logger.child({ component: 'live' }),
    audited: (actor, action, subject, detail) => { audit.append(actor, action, subject, detail) },
  })
  /** cluster mode: resolves once the alerts changed so far are in the cluster's copy (or it cannot be reached now); set once that copy is open */
  let shared = async (): Promise<void> => {}
  if (clusterNode) {
    // cluster mode: a console on any node sees the readings and alerts of the residents every node judges
    const slim = (r: SpoolRow): LiveReading => ({ residentId: r.residentId, deviceId: r.deviceId, seq: r.seq, ts: r.ts, hr: r.hr, sys: r.sys, dia: r.dia })
    feed.onCommit((rows) => { if (rows.length) clusterNode.publishLive('readings', rows.map(slim)) })
    const utf8d = new TextDecoder()
    clusterNode.onLive({
      readings: (data) => { live.readings(JSON.parse(utf8d.decode(data)) as LiveReading[]) },
      alert: (data) => { live.alert(JSON.parse(utf8d.decode(data)) as Alert) },
    })
    live.onWatching((watching) => { clusterNode.watchReadings(watching) })
  } else spool.onCommit((rows) => live.readings(rows))
  alerts.setNotifier({
    changed: (alert) => { if (clusterNode) clusterNode.publishLive('alert', alert); else live.alert(alert) },
    digest: (residentId, body) => {
      mqtt.publish(topics.alerts(residentId), Buffer.from(JSON.stringify({ type: 'digest', ...body })), 1).catch((err: Error) => log.warn({ err }, 'could not publish an alert digest'))
    },
    alert: (alert, delivered) => {
      // cluster mode: told only once the cluster's copy has the alert, so a node that dies right after telling leaves
      // the next owner holding it (and not telling again); PostgreSQL unreachable, the resident is told anyway
      void shared().then(() => mqtt.publish(topics.alerts(alert.residentId), Buffer.from(JSON.stringify(alert)), 1)).then(delivered, (err: Error) => {
        log.warn({ err, alertId: alert.id }, 'could not publish an alert; it will be re-sent after a restart')
      })
    },
    follower: (n, delivered) => {
      mqtt.publish(topics.followerAlerts(n.followerId), Buffer.from(JSON.stringify(n.body)), 1).then(delivered, (err: Error) => {
        log.warn({ err, alertId: n.alertId, followerId: n.followerId }, 'could not publish a follower notice; it will be re-sent after a restart')
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
  const rulesChanged = (residentId?: string, actor?: string): void => {
    alerts.rulesChanged(residentId, actor)
    if (!residentId) publishStandards()
  }

  // cluster mode over NATS: every node's alerts are read through any node (cluster/alert-mirror.ts)
  const clusterAlerts = clusterNode
    ? await ClusterAlerts.open(c.postgresUrl!).catch((err: unknown) => { throw new Error(`cluster mode: cannot open the cluster's alerts in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  if (!clusterAlerts) AlertMirror.uninstall(db)
  if (!clusterNode) WindowMirror.uninstall(db)
  const windowMirror = clusterNode
    ? await WindowMirror.open({
      db, postgresUrl: c.postgresUrl!, clock, logger: logger.child({ component: 'window-mirror' }), source, windows,
      latenessMs: config.forwarder.latenessS * 1000, retainMs: config.forwarder.retainS * 1000, region: config.region, rollupK: config.forwarder.rollupK ?? config.forwarder.k,
      sinks: regionSinks, emitter: () => clusterNode.follows(0), alertsIn: async (id, from, to) => await clusterAlerts!.openedBetween(id, from, to),
      facts: (id) => {
        const r = registry.resident(id)
        return r && { region: r.region, birthYear: r.birthYear, hospitalId: r.hospitalId, researchConsent: r.researchConsent }
      },
    }).catch((err: unknown) => { throw new Error(`cluster mode: cannot open the cluster's summary windows in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  // cluster mode: what a node queued is delivered even if it dies and does not come back (cluster/outbox-mirror.ts)
  if (!clusterNode) OutboxMirror.uninstall(db)
  const outboxMirror = clusterNode
    ? await OutboxMirror.open({
      db, postgresUrl: c.postgresUrl!, clock, logger: logger.child({ component: 'outbox-mirror' }), source,
      enqueue: (e) => outbox.enqueue(e), rescuer: () => clusterNode.follows(0), deadAfterMs: 3 * c.leaseMs,
    }).catch((err: unknown) => { throw new Error(`cluster mode: cannot open the cluster's outbox in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  const alertMirror = clusterAlerts && new AlertMirror({ db, alert: (id) => alerts.get(id), handover: (id) => alerts.handover(id), cluster: clusterAlerts, source, logger: logger.child({ component: 'alert-mirror' }) })
  if (alertMirror) shared = async () => { await alertMirror.flush().catch(() => {}) }

  // cluster mode over NATS: the registry is the cluster's (cluster/registry-log.ts); this node's
  // SQLite is a replica of it, kept in step every 100 ms. Every registry table exists by now
  const registryLog = clusterNode
    ? await ClusterRegistryLog.open(c.postgresUrl!).catch((err: unknown) => { throw new Error(`cluster mode: cannot open the registry log in PostgreSQL: ${(err as Error).message}`, { cause: err }) })
    : undefined
  // and the residents' care preferences, set through any node and read where the resident is judged
  const replicated = [...REPLICATED_TABLES, ALERT_PREFERENCES_REPLICA]
  if (!registryLog) RegistryReplica.uninstall(db, replicated)
  const registrySync = registryLog && new RegistrySync({
    replica: new RegistryReplica(db, replicated), log: registryLog, source, clock, logger: logger.child({ component: 'registry-sync' }),
    applied: (ch) => {
      if (ch.tables.has('api_keys') || ch.tables.has('residents') || ch.tables.has('followers')) registry.changedElsewhere()
      for (const id of ch.newDevices) credentialSync?.deviceAppeared(id)
      for (const d of ch.revokedDevices) mqtt.disconnectIdentity(d.id, d.at)
      if (ch.tables.has('rule_sets') || ch.tables.has('rule_set_active')) rulesChanged(undefined, 'cluster')
      else for (const id of ch.residents) alerts.rulesChanged(id, 'cluster')
      if (ch.tables.has('alert_preferences')) for (const id of ch.residents) alerts.preferencesChanged(id)
    },
  })

  // node statistics for operators (console, /v1/stats), sampled once a second
  let lastAccepted = 0
  let readingsPerS = 0
  // event-loop delay: a long synchronous step (a big commit, a slow query) shows up here
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  let loopDelayP99Ms = 0
  const stats = (): Record<string, unknown> => {
    const bySeverity: Record<string, number> = { info: 0, warning: 0, critical: 0 }
    for (const a of alerts.activeAlerts()) bySeverity[a.severity] = (bySeverity[a.severity] ?? 0) + 1
    return {
      at: clock.now(), readingsPerS, readingsAccepted: spool.stats.accepted, duplicates: spool.stats.duplicates,
      mqttClients: mqtt.aedes.connectedClients, openAlerts: bySeverity, outboxPending: outbox.pending(), drained: drain.stats.drained,
      spoolRows: spool.pressure().rows, backpressureEpisodes: spool.stats.backpressureEpisodes, eventLoopDelayP99Ms: loopDelayP99Ms,
      consumers: consumerStatus(),
      ...(clusterNode ? { cluster: { ...clusterNode.summary(), audit: auditShipper?.summary(), registry: registrySync?.summary(), alerts: alertMirror?.summary(), windows: { ...windowMirror?.summary(), rebuilding: windowRebuilds.partitions(), rebuilds: windowRebuilds.stats }, outbox: outboxMirror?.summary(), reports: reportMirror?.summary() } } : {}),
      rssMb: Math.round(process.memoryUsage().rss / 1048576),
    }
  }
  let statsTimer: NodeJS.Timeout | undefined
  const sampleStats = (): void => {
    readingsPerS = spool.stats.accepted - lastAccepted
    lastAccepted = spool.stats.accepted
    loopDelayP99Ms = Math.round(loopDelay.percentile(99) / 1e4) / 100
    loopDelay.reset()
    live.stats(stats())
  }

  let started = false
  let stopping = false
  const api = buildApi({
    logger,
    verifyApiKey: (t) => registry.verifyApiKey(t),
    queryReadings: (r, from, to, limit) => store.queryRange(r, from, to, limit),
    aggregateReadings: (r, from, to, windowMs) => store.aggregate(r, from, to, windowMs),
    residentExists: (id) => registry.resident(id) !== undefined,
    hospitalOf: (id) => registry.resident(id)?.hospitalId,
    mqttUpgrade,
    rateLimitPerMinute: config.http.rateLimitPerMinute,
    anonymousRateLimitPerMinute: config.http.anonymousRateLimitPerMinute,
    live,
    audited: (actor, action, subject, detail) => { audit.append(actor, action, subject, detail) },
    readiness: async () => {
      const checks: Record<string, string> = { app: started && !stopping ? 'ok' : 'starting or stopping' }
      try { await store.ping(); checks.store = 'ok' } catch (e) { checks.store = (e as Error).message }
      if (cluster) checks.redis = cluster.status()
      if (clusterNode) checks.nats = clusterNode.status()
      if (auditShipper) checks.audit = auditShipper.status()
      if (registrySync) checks.registry = registrySync.status()
      if (alertMirror) checks.alerts = alertMirror.status()
      if (windowMirror) checks.windows = windowMirror.status()
      if (outboxMirror) checks.outbox = outboxMirror.status()
      if (reportMirror) checks.reports = reportMirror.status()
      // a consumer stopped by a failure: ingest goes on, but what it feeds (alerts, summaries) does not
      for (const c of consumerStatus()) checks[`consumer:${c.name}`] = c.failing ? `${c.failing.code}: ${c.failing.message}` : 'ok'
      return checks
    },
    routes: [
      consoleRoutes({ registry, audit, stats }),
      alertingRoutes({ registry, ruleSets, alerts, alertReads: alertMirror, alertActions, audit, rulesChanged }),
      alertCareRoutes({ registry, alerts, alertReads: alertMirror, alertActions, audit }),
      backtestRoutes({ registry, ruleSets, store, audit, clock, k: config.forwarder.k, alerting: { tickMs: config.alerting.tickMs, flapCount: config.alerting.flapCount, flapWindowS: config.alerting.flapWindowS, liveHorizonS: config.alerting.liveHorizonS } }),
      dataRoutes({ registry, aggregator, windowReads: windowMirror, audit, windows: windows.map((w) => w.name), k: config.forwarder.k, reportOutcomes: async (from, to) => await (reportMirror ?? reports).finishedOutcomes(from, to) }),
      operatorRoutes({ registry, audit, residentChanged: (id) => alerts.rulesChanged(id) }),
      forwarderRoutes({ registry, aggregator, windowReads: windowMirror, outbox, audit, auditTrail, region: config.region, windows, rollupK: config.forwarder.rollupK ?? config.forwarder.k, residentChanged: (id) => alerts.rulesChanged(id), keyRevoked: () => credentialWatch.poll() }),
      reportRoutes({ registry, reports, reportActions, audit, timeZoneOf: (id) => alerts.timeZoneOf(id) }),
      auditViewRoutes({ registry, audit, auditTrail }),
      followerRoutes({ registry, audit, disconnect: (id) => mqtt.disconnectIdentity(id) }),
      publicStatsRoutes({ aggregator, windowReads: windowMirror, region: config.region, windows, k: config.forwarder.k }),
      (app) => registerDeviceRoutes(app, {
        fleet,
        isOnline: (id) => mqtt.presence.isOnline(id),
        pendingLastSeen: (id) => mqtt.presence.pendingLastSeen(id),
        // and at once what the credential poll does with a change (in a cluster: to the other nodes), not at its next round
        disconnect: (id) => { const n = mqtt.disconnectIdentity(id); credentialWatch.poll(); return n },
        audited: (actor, action, subject, detail) => { audit.append(actor, action, subject, detail) },
        models: deviceModels,
      }),
      (app) => registerMetricsRoute(app, [mqtt.metrics.registry, consumerMetrics(spool, consumerStatus, clusterNode, windowRebuilds)], { requireApiKey: config.metrics.requireApiKey, verifyApiKey: (t) => registry.verifyApiKey(t), logger }),
    ],
  })
  const tlsFiles: TlsFiles | undefined = config.tls.cert && config.tls.key
    ? { cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, requireClientCert: config.tls.requireClientCert, handshakeTimeoutMs: m.connectTimeoutMs }
    : undefined

  let demo: DemoCredentials | undefined
  let listening: Listening | undefined

  return {
    config, registry, fleet, audit, live, spool, store, alerts, ruleSets, outbox, aggregator, drain, ingest, broker: mqtt, api, rulesChanged, rollups, alertExport, reports, deviceModels,
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
      checkpointer.start()
      drain.start()
      await clusterNode?.start()
      auditShipper?.start()
      registrySync?.start()
      alertMirror?.start()
      windowMirror?.start()
      reportMirror?.start()
      rollups?.start()
      alertExport?.start()
      alerts.resendUndelivered()
      alerts.start()
      // what another node delivered for this one while it was gone is not sent again
      await outboxMirror?.reconcile().catch((err: unknown) => log.warn({ err }, 'could not read what other nodes delivered for this one while it was gone; some messages may be sent twice (receivers drop repeats by their key)'))
      outbox.start()
      outboxMirror?.start()
      aggregator.start(config.forwarder.tickMs)
      reports.every(config.forwarder.tickMs, (tick) => { atomically(db, () => sendReports(tick())) })
      loopDelay.enable()
      statsTimer = setInterval(sampleStats, 1000)
      publishStandards()
      fleet.resetOnline()
      mqtt.presence.start(config.fleet.lastSeenFlushMs)
      credentialWatch.start()
      credentialSync?.start()
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
      if (statsTimer) clearInterval(statsTimer)
      loopDelay.disable()
      credentialWatch.stop()
      await credentialSync?.stop()
      await api.close()
      for (const c of mqttUpgrade.wss.clients) c.terminate()
      mqttUpgrade.wss.close()
      await mqtt.close()
      await cluster?.close()
      spool.flush()
      spool.stopConsumers()
      drain.stop()
      // a pass still writing to the store would read the spool after db.close()
      await drain.settled()
      // the partitions' last batches reach the feed before its consumers stop
      await clusterNode?.stop()
      if (feed !== spool) { feed.flush(); feed.stopConsumers() }
      await auditShipper?.stop()
      await auditChain?.close()
      await registrySync?.stop()
      await registryLog?.close()
      await alertMirror?.stop()
      await windowMirror?.stop()
      await reportMirror?.stop()
      await outboxMirror?.stop()
      await clusterAlerts?.close()
      rollups?.stop()
      alertExport?.stop()
      alerts.stop()
      aggregator.stop()
      reports.stop()
      outbox.stop()
      // a delivery under way would record its outcome after db.close()
      await outbox.settled()
      await checkpointer.stop()
      await store.close()
      db.close()
      if (ingestDb !== db) ingestDb.close()
      log.info('vitalmesh stopped')
    },
  }
}

/** The feed's cursor consumers (cluster mode), wired below. */
const FEED_CONSUMERS = ['alerting', 'forwarder', 'reports', 'hospital-measurements']
/** those whose state commits with their cursor, and is shipped before a partition's position passes what they consumed */
const FEED_COMMITTERS = ['alerting', 'reports', 'hospital-measurements']

/**
 * Appends readings of an owned partition to the node's feed (cluster mode), one request per
 * device; resolves once they are committed (not fsynced: `settled` syncs before the position commits). The feed de-duplicates by device and seq
 * like the spool, so a batch the log delivers again (its checkpoint did not commit) is dropped.
 */
/**
 * A device's key in this node's registry (the replica of the cluster's), by id, for the feed's
 * appends; remembered, because a key never changes (devices are revoked, never deleted), and a
 * registry query per delivery was 2.8% of a cluster node's CPU (npm run bench -- cluster).
 */
function feedDeviceKeys (registry: Registry): (deviceId: string) => number {
  const keys = new Map<string, number>()
  return (deviceId) => {
    let key = keys.get(deviceId)
    if (key !== undefined) return key
    key = registry.device(deviceId)?.key
    // the registration reaches every node within a second or two
    if (key === undefined) throw new VitalmeshError('VM_NOT_FOUND', `device ${deviceId} is not in this node's registry yet; the partition is retried`)
    keys.set(deviceId, key)
    return key
  }
}

/** Marks readings as fed (Spool.remember); a device not in this node's registry yet is left out (nothing of it can be fed either). */
function rememberFed (feed: Spool, keyOf: (deviceId: string) => number, readings: readonly StoredReading[]): void {
  for (const r of readings) {
    let key: number
    try { key = keyOf(r.deviceId) } catch { continue }
    feed.remember(key, r.seq)
  }
}

/** Appends stored readings (a spool row's id left out) to a spool, one request per device, and resolves once they are committed. */
async function appendByDevice (to: Spool, rows: readonly (StoredReading & { id?: number })[], keyOf: (deviceId: string) => number): Promise<void> {
  const byDevice = new Map<string, AppendRequest>()
  for (const { id: _, deviceId, residentId, ...reading } of rows) {
    let req = byDevice.get(deviceId)
    if (!req) byDevice.set(deviceId, req = { deviceKey: keyOf(deviceId), deviceId, residentId, readings: [] })
    req.readings.push(reading)
  }
  await Promise.all([...byDevice.values()].map((req) => to.appendAsync(req)))
}

/**
 * A node's database from before the feed (cluster mode's first layout) held the spool of what
 * devices sent, shipped to the log from cursor `log`: what it had not shipped yet moves to the
 * ingest spool, which ships it; the rest was consumed there already, and its seqs stay in the
 * feed's de-duplication, so the log's copies are not consumed twice.
 */
async function shipUnshippedOfOldLayout (feed: Spool, ingest: Spool, registry: Registry, log: Logger): Promise<void> {
  const from = feed.cursor(LOG_CURSOR)
  if (from === 0 || from >= feed.head()) return
  let moved = 0
  for (let rows = feed.read(from, 5000); rows.length > 0; rows = feed.read(rows[rows.length - 1]!.id, 5000)) {
    await appendByDevice(ingest, rows, (deviceId) => registry.device(deviceId)?.key ?? -1)
    moved += rows.length
  }
  feed.ack(LOG_CURSOR, feed.head())
  log.warn({ moved }, 'readings this node had not shipped to the reading log moved from the database of the earlier layout to the ingest spool, which ships them')
}

/** Lag and failures of each spool consumer, read when /metrics is scraped. */
function consumerMetrics (spool: Spool, consumerStatus: () => ConsumerStatus[], cluster?: ClusterNode, rebuilds?: WindowRebuilds): MetricsRegistry {
  const registry = new MetricsRegistry()
  if (cluster) {
    // cluster mode over NATS: what this node owns of the reading log, and how far behind it is
    new Gauge({
      name: 'vitalmesh_partition_lag_entries', help: 'entries of a partition this node owns that are not stored and checkpointed yet', labelNames: ['partition'], registers: [registry],
      collect () { this.reset(); for (const [p, n] of cluster.partitionLag()) this.set({ partition: String(p) }, n) },
    })
    new Gauge({
      name: 'vitalmesh_pubacks_waiting_for_log', help: 'PUBACKs held until the reading log acknowledges their readings', registers: [registry],
      collect () { this.set(cluster.pubacksWaiting()) },
    })
    // while above 0 this node's due summary windows wait (cluster/window-rebuild.ts): minutes at county scale
    new Gauge({
      name: 'vitalmesh_window_rebuilds', help: 'partitions taken over whose summary windows are being rebuilt from the reading log', registers: [registry],
      collect () { this.set(rebuilds?.partitions().length ?? 0) },
    })
  }
  new Gauge({
    name: 'vitalmesh_spool_consumer_lag_records', help: 'committed spool records a consumer has not consumed yet', labelNames: ['consumer'], registers: [registry],
    collect () { this.reset(); for (const c of consumerStatus()) this.set({ consumer: c.name }, c.lagRecords) },
  })
  new Gauge({
    name: 'vitalmesh_spool_consumer_failures', help: 'failures of a spool consumer since the process started', labelNames: ['consumer'], registers: [registry],
    collect () { this.reset(); for (const c of consumerStatus()) this.set({ consumer: c.name }, c.failures) },
  })
  new Gauge({
    name: 'vitalmesh_spool_consumer_failing', help: '1 while a consumer is stopped by a failure', labelNames: ['consumer'], registers: [registry],
    collect () { this.reset(); for (const c of consumerStatus()) this.set({ consumer: c.name }, c.failing ? 1 : 0) },
  })
  // counters read from the spool's own: commits against readings is the group commit's size, the
  // lever on the cost of an fsync per reading
  new Gauge({
    name: 'vitalmesh_spool_commits_total', help: 'group commits of the spool (one fsync each) since the process started', registers: [registry],
    collect () { this.set(spool.stats.commits) },
  })
  new Gauge({
    name: 'vitalmesh_spool_readings_accepted_total', help: 'readings the spool accepted (committed, not duplicates) since the process started', registers: [registry],
    collect () { this.set(spool.stats.accepted) },
  })
  return registry
}

/**
 * Ends the sessions of devices whose credentials were rotated or revoked by anyone (the
 * API of this node, the CLI, another node sharing the registry): a cheap indexed poll.
 */
function watchCredentials (fleet: Fleet, broker: Broker, everyMs: number, log: Logger, sync?: CredentialSync) {
  let cursor = fleet.latestChange()
  let timer: NodeJS.Timeout | undefined
  const poll = (): void => {
    try {
      for (const c of fleet.changedSince(cursor)) {
        broker.disconnectIdentity(c.id, c.at)
        sync?.changed(c.id, c.at)
        cursor = Math.max(cursor, c.at)
      }
      sync?.pollKeys()
    } catch (err) { log.error({ err }, 'could not read credential changes') }
  }
  return {
    poll,
    start () { timer ??= setInterval(poll, everyMs); timer.unref() },
    stop () { if (timer) clearInterval(timer); timer = undefined },
  }
}
