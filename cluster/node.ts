import { connect, type Msg, type NatsConnection, type Subscription } from 'nats'
import { VitalmeshError, type ErrorCode, type Logger, type StoredReading } from '../core/index.ts'
import type { SpoolRow, TelemetryStore, WriteOutcome } from '../ingest/index.ts'
import type { CredentialLog } from '../registry/index.ts'
import { natsCredentialLog } from './credential-log.ts'
import { JetStreamLog, type LogEntry } from './log.ts'
import { ConsumerRunner, PartitionOwner, leaseBucket, type PartitionConsumer } from './partitions.ts'
import { firstCopies } from './window-rebuild.ts'
import { SeqSet } from '../ingest/seqset.ts'
import { PgCheckpointStore } from './pg-checkpoints.ts'

/**
 * One node of a cluster over NATS JetStream and PostgreSQL (cluster mode).
 *
 * Ingest is unchanged up to the spool: a device's readings are committed to this node's spool
 * as on a single node, only without an fsync (the log's acknowledgement, below, is what the
 * PUBACK waits for). The spool's drain then ships them to the reading log (cursor
 * `log`, in spool order, a sliding window of appends) instead of the telemetry store, and the
 * PUBACK waits for that: `hold` releases it once the log acknowledged every record committed
 * up to the reading's own commit, i.e. once the reading is on a majority of the log's replicas.
 * A node that dies after its spool commit and before the log's acknowledgement sent no PUBACK:
 * the device resends (to whichever node it reaches), and the dead node's spool ships its copy
 * when it comes back; the log drops the second copy by its message id (device and seq) within
 * its duplicate window, and the store keeps one point per device and seq in any case.
 *
 * Downstream of the log, each partition is processed by the one node that holds its lease
 * (cluster/partitions.ts), by one consumer of the partition: it appends the readings to this
 * node's feed as they arrive (a spool of its own, on the database alerting, the forwarder's
 * windows, clinical reports and the hospitals' feed keep their state in; they consume the feed
 * exactly as a single node's consume its spool), and at each commit writes them to the
 * telemetry store every node shares (InfluxDB) and checkpoints the partition's position in
 * PostgreSQL, fenced by the lease's epoch. So every reading of a resident, from any device
 * through any node, is judged on one timeline by one node, as one node would. When a node
 * dies, the others take its partitions over after the lease (`leaseMs`) and resume from the
 * checkpoints.
 *
 * Rotations and revocations travel between the nodes' registries on a JetStream stream too
 * (cluster/credential-log.ts), unless the node also uses Redis, whose stream then carries them.
 *
 * The feed's append is made durable (one fsync, `settled`) before the partition's position
 * commits; a reading appended on a node that died before that commit is appended again by the
 * next owner (the window: one PostgreSQL commit), and stored again (the same point).
 */
/** The spool cursor of the drain that ships to the log (the single node's drain moves 'store'). */
export const LOG_CURSOR = 'log'

export interface ClusterNodeOptions {
  servers: string[]
  node: string
  partitions: number
  replicas: number
  leaseMs: number
  postgresUrl: string
  /** where the partition owners store readings: shared by every node */
  store: Pick<TelemetryStore, 'kind' | 'write'>
  /** the spool's newest committed record (Spool.head) */
  head: () => number
  /** the spool position the log had everything up to when this node last stopped (Spool.cursor(LOG_CURSOR)) */
  shippedTo: number
  /** after a partition's readings were stored (roll-ups) */
  onStored?: (rows: readonly StoredReading[]) => void
  /** This node's downstream consumers of the partitions it owns */
  feed: {
    /** hands an owned partition's readings to the feed as they arrive; resolves once they are durable there */
    append(partition: number, rows: readonly StoredReading[]): Promise<void>
    /** before the partition's position commits past readings appended: resolves once it may (alerting judged them, their alerts are shared) */
    settled?(partition: number): Promise<void>
    /**
     * before the partition's readings after `fromSeq` reach the feed: take over what the previous owner held of its
     * residents. `recent`: the partition's readings that reached the log within `readBackMs` (at least the log's
     * duplicate window) up to fromSeq, each once, which the previous owner fed: to mark as fed (a copy of one after
     * fromSeq is a duplicate) and to rebuild the rules' timelines from
     */
    takeOver?(partition: number, fromSeq: number, recent: readonly StoredReading[]): Promise<void>
    /** how far back the takeover's `recent` must reach, besides the log's duplicate window (alerting's look-back) */
    readBackMs?(): number
    /** this node no longer follows the partition (after its last commit): stop what the takeover left running */
    released?(partition: number): Promise<void>
  }
  /** the NATS link is up again: the drain retries at once, so held PUBACKs go out without waiting for its back-off */
  onLinkUp?: () => void
  logger: Logger
}

/** The checkpointed state of a partition's one consumer: how many entries it took (operators, tests). */
interface OwnerState { fed: number }
/**
 * The name of that consumer's checkpoints. 'feed', as the feed's own consumer was named when a separate 'store'
 * consumer wrote the store: a cluster upgraded from then resumes each partition where its feed was.
 */
export const OWNER_CONSUMER = 'feed'
/** The consumer that wrote the store until 2026-12-08: what it had not stored yet is stored at a partition's takeover. */
export const RETIRED_STORE_CONSUMER = 'store'

const seqsOf = (m: Map<string, SeqSet>, deviceId: string): SeqSet => {
  let set = m.get(deviceId)
  if (!set) m.set(deviceId, set = new SeqSet())
  return set
}

/** How long a node gathers the readings its feed committed before it publishes them to the cluster's consoles (publishLive) */
const LIVE_GATHER_MS = 50
/** Requests to act on a resident's alerts go to the node that follows its partition (`judge`). */
const judgeSubject = (partition: number): string => `vm.judge.${partition}`
const utf8 = new TextEncoder()
const utf8d = new TextDecoder()
type JudgeReply = { ok: true, value: unknown } | { ok: false, code: ErrorCode, message: string }

export class ClusterNode {
  readonly stats = { shipped: 0, stored: 0, fed: 0, quarantined: 0, heldPubacks: 0 }
  private shipped: number
  /** PUBACKs waiting for the log, in commit order (their positions only grow) */
  private waiting: { upTo: number, release: () => void }[] = []
  private owner: PartitionOwner | undefined
  private readonly runner: ConsumerRunner<OwnerState>
  private linkUp = true
  private judgeHandler: ((op: string, args: unknown[]) => Promise<unknown>) | undefined
  private readonly judgeSubs = new Map<number, Subscription>()
  /** per followed partition, its takeover (alerts adopted, timelines rebuilt): what acts on its residents waits for it */
  private readonly takenOver = new Map<number, Promise<void>>()
  /** per partition, the lease epoch under which this node last took it over */
  private readonly takenAt = new Map<number, number>()

  private constructor (
    private readonly o: ClusterNodeOptions,
    private readonly nc: NatsConnection,
    readonly log: JetStreamLog,
    private readonly checkpoints: PgCheckpointStore<OwnerState>,
    private readonly kv: Awaited<ReturnType<typeof leaseBucket>>,
  ) {
    this.shipped = o.shippedTo
    const feed = o.feed
    // One consumer per owned partition does everything its owner does with the partition's readings: they reach the
    // feed as they arrive (a resident waits for an alert), and at each commit (at most every 100 ms) they are written
    // to the telemetry store and the feed's consumers have settled before the position commits. Two consumers (store
    // and feed) did this until 2026-12-08: every reading was delivered, decoded and checkpointed twice, for nothing
    // (npm run bench -- cluster, bench/README.md).
    const consumer: PartitionConsumer<OwnerState> = {
      name: OWNER_CONSUMER,
      initial: () => ({ fed: 0 }),
      consume: (s, entries) => ({ fed: s.fed + entries.length }),
      deliver: async (partition, entries) => { await feed.append(partition, entries.map((e) => e.reading)); this.stats.fed += entries.length },
      // the store write is at least once (a point per device and seq): done again by the next owner if this node dies before the commit
      apply: async (partition, entries) => { await Promise.all([this.store(partition, entries), feed.settled?.(partition)]) },
      prepare: async (partition, fromSeq, epoch) => {
        // once per lease: following the partition again after a failure under the same lease (a NATS hiccup, a
        // failed commit) goes on from this node's own state, which holds everything its feed got
        if (this.takenAt.get(partition) === epoch) return
        await this.storeWhatTheStoreConsumerLeft(partition, fromSeq, epoch)
        // what the previous owner took of the partition lately: the copies of those readings that come after fromSeq
        // are neither stored again (`store`) nor fed again (takeOver)
        const recent = firstCopies(new Map(), (await this.log.readSince(partition, Date.now() - Math.max(this.log.duplicateWindowMs, feed.readBackMs?.() ?? 0), fromSeq)).map((e) => e.reading))
        const stored = new Map<string, SeqSet>()
        for (const r of recent) seqsOf(stored, r.deviceId).add(r.seq)
        this.storedSeqs.set(partition, stored)
        const done = feed.takeOver?.(partition, fromSeq, recent) ?? Promise.resolve()
        this.takenOver.set(partition, done.catch(() => {}))
        await done
        this.takenAt.set(partition, epoch)
      },
    }
    // lingerMs: the position commits at most every 100 ms, not per reading under light load: committing it per reading
    // cost PostgreSQL about 120 µs per reading, and a store write per reading cost the store (npm run bench -- cluster)
    this.runner = new ConsumerRunner<OwnerState>({ log, store: checkpoints, consumer, logger: o.logger, lingerMs: 100 })
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') { this.linkUp = false; o.logger.warn({ server: s.data }, 'NATS link down: PUBACKs wait until the reading log is reachable again') }
        if (s.type === 'reconnect') { this.linkUp = true; o.logger.info({ server: s.data }, 'NATS link up again'); o.onLinkUp?.() }
      }
    })().catch(() => {})
  }

  /** Connects to NATS and PostgreSQL and checks (or creates) the reading log and the lease bucket. */
  static async open (o: ClusterNodeOptions): Promise<ClusterNode> {
    let nc: NatsConnection
    try {
      // noAsyncTraces: nats.js otherwise builds an Error per request (every append) for its stack, 7.5% of a node's CPU (bench -- cluster)
      nc = await connect({ servers: o.servers, name: o.node, maxReconnectAttempts: -1, reconnectTimeWait: 250, noAsyncTraces: true })
    } catch (err) {
      throw new Error(`cluster mode: cannot reach NATS at ${o.servers.join(', ')}: ${(err as Error).message}`, { cause: err })
    }
    try {
      const log = await JetStreamLog.open(nc, { partitions: o.partitions, replicas: o.replicas })
      const kv = await leaseBucket(nc.jetstream(), { replicas: o.replicas, leaseMs: o.leaseMs })
      const checkpoints = await PgCheckpointStore.open<OwnerState>(o.postgresUrl).catch((err: unknown) => {
        throw new Error(`cluster mode: cannot open the checkpoints in PostgreSQL: ${(err as Error).message}`, { cause: err })
      })
      return new ClusterNode(o, nc, log, checkpoints, kv)
    } catch (err) {
      await nc.close()
      throw err
    }
  }

  /** The drain's sink: appends a batch of spool rows to the log (the drain retries a failed batch with back-off). */
  readonly sink = {
    kind: 'jetstream',
    write: async (rows: readonly SpoolRow[]): Promise<WriteOutcome | void> => {
      // a commit's readings of one partition travel in one message (the row id: the commit's record)
      await this.log.append(rows)
    },
  }

  /** The drain's onDrained: the log has these rows, so the PUBACKs of their commits go out. */
  readonly shippedRows = (rows: readonly SpoolRow[]): void => {
    if (rows.length === 0) return
    this.shipped = Math.max(this.shipped, rows[rows.length - 1]!.id)
    this.stats.shipped += rows.length
    let i = 0
    while (i < this.waiting.length && this.waiting[i]!.upTo <= this.shipped) this.waiting[i++]!.release()
    if (i > 0) this.waiting = this.waiting.slice(i)
  }

  /** Ingest's PUBACK hold: releases once the log has everything committed so far (this append's commit included). */
  readonly hold = (release: () => void): void => {
    const upTo = this.o.head()
    if (upTo <= this.shipped) { release(); return }
    this.stats.heldPubacks++
    this.waiting.push({ upTo, release })
  }

  /** the store write that partitions committing now join (see `store`) */
  private storing: { rows: StoredReading[], partitions: Set<number>, written: Promise<void> } | undefined

  /**
   * Writes a partition's readings to the telemetry store, in one write with those of every other
   * partition committing at the same moment (their commits are aligned on the clock, lingerMs):
   * one InfluxDB request per node and 100 ms rather than one per partition, which was 8% of a
   * node's CPU at 16 partitions (a profile of npm run bench -- cluster). A failed write fails
   * each of those commits, and each is retried from its checkpoint (the store keeps one point per
   * device and seq).
   */
  private async store (partition: number, entries: readonly LogEntry[]): Promise<void> {
    // each reading once: a second copy in the log (a device that resent it to another node after a lost PUBACK) is left
    // out, even if it differs (a device that took its time anew): one point per device and seq, as on a single node.
    // The seqs count once written: a batch whose write failed is written again when the partition is retried
    let stored = this.storedSeqs.get(partition)
    if (!stored) this.storedSeqs.set(partition, stored = new Map())
    const inBatch = new Map<string, SeqSet>()
    const rows: StoredReading[] = []
    for (const { reading: r } of entries) {
      if (stored.get(r.deviceId)?.has(r.seq) || inBatch.get(r.deviceId)?.has(r.seq)) continue
      seqsOf(inBatch, r.deviceId).add(r.seq)
      rows.push(r)
    }
    if (rows.length) await this.storeTogether(partition, rows)
    for (const r of rows) { const set = seqsOf(stored, r.deviceId); if (!set.has(r.seq)) set.add(r.seq) }
  }

  /** per partition followed, per device, the seqs of the readings written to the store (and at a takeover, those the previous owner wrote lately) */
  private readonly storedSeqs = new Map<number, Map<string, SeqSet>>()

  private async storeTogether (partition: number, rows: readonly StoredReading[]): Promise<void> {
    let w = this.storing
    if (w === undefined) {
      const rows: StoredReading[] = []
      const partitions = new Set<number>()
      // gathered until the commits of this moment have run: setImmediate comes after the timers and their promises
      w = this.storing = { rows, partitions, written: new Promise<void>((resolve) => { setImmediate(resolve) }).then(async () => { this.storing = undefined; await this.write(rows, partitions) }) }
    }
    w.partitions.add(partition)
    for (const r of rows) w.rows.push(r)
    await w.written
  }

  private async write (rows: readonly StoredReading[], partitions: ReadonlySet<number>): Promise<void> {
    const out = await this.o.store.write(rows)
    const rejected = out?.rejected ?? []
    if (rejected.length) {
      // the single node quarantines these in its spool database; here they stay in the log, which keeps them for its max age
      this.stats.quarantined += rejected.length
      this.o.logger.warn({ partitions: [...partitions], rejected: rejected.length, first: { deviceId: rejected[0]!.row.deviceId, seq: rejected[0]!.row.seq, reason: rejected[0]!.reason } },
        'the telemetry store refused readings of the log for good; they are left out, the rest of the batch is stored')
    }
    this.stats.stored += rows.length - rejected.length
    this.o.onStored?.(rows)
  }

  /**
   * Until 2026-12-08 a consumer of its own ('store') wrote each partition's readings to the store, with a
   * position of its own that could be behind the feed's. A partition of a cluster upgraded from then has what
   * that consumer had not stored yet stored from the log (the store keeps one point per device and seq) before it
   * is followed; then that position is forgotten. Nothing to do for a partition that never had it.
   */
  private async storeWhatTheStoreConsumerLeft (partition: number, fromSeq: number, epoch: number): Promise<void> {
    const left = await this.checkpoints.retiredPosition(RETIRED_STORE_CONSUMER, partition, epoch)
    if (left === undefined) return
    if (left < fromSeq) await this.log.scan(partition, { afterSeq: left }, fromSeq, async (entries) => { await this.store(partition, entries) })
    await this.checkpoints.forget(RETIRED_STORE_CONSUMER, partition, epoch)
    this.o.logger.info({ partition, from: left, to: fromSeq }, 'stored what the retired store consumer had left of the partition')
  }

  /** The cluster's credential log on this connection (rotations and revocations between the nodes' registries). */
  async credentialLog (): Promise<CredentialLog> { return await natsCredentialLog(this.nc, { replicas: this.o.replicas }) }

  /** Starts claiming partitions; resolves after the first round of claims. */
  async start (): Promise<void> {
    this.owner = await PartitionOwner.start({
      kv: this.kv, node: this.o.node, partitions: this.o.partitions, leaseMs: this.o.leaseMs, renewMs: Math.floor(this.o.leaseMs * 0.3),
      onAcquire: (p, epoch) => { this.runner.start(p, epoch); this.answerFor(p) },
      onRelease: async (p) => {
        this.judgeSubs.get(p)?.unsubscribe()
        this.judgeSubs.delete(p)
        await this.runner.stop(p)
        this.storedSeqs.delete(p)
        await this.o.feed.released?.(p)
      },
      logger: this.o.logger,
    })
  }

  /**
   * What acts on the residents this node judges (their alerts: acknowledge, assign, close...):
   * the other nodes send such requests here for the partitions this node follows (`judge`).
   */
  serveJudge (handler: (op: string, args: unknown[]) => Promise<unknown>): void { this.judgeHandler = handler }

  /**
   * Runs `op` on the node judging the resident: here when this node follows the resident's
   * partition, else as a request to the node that does (NATS request/reply on `vm.judge.<p>`).
   * While the partition has no owner (a node died, its lease has not run out) there is no one
   * to answer: VM_STORE_UNAVAILABLE, to be tried again in a few seconds.
   */
  async judge (residentId: string, op: string, args: unknown[]): Promise<unknown> {
    const p = this.log.partitionOf(residentId)
    if (this.follows(p) && this.judgeHandler) {
      await this.takenOver.get(p)
      return await this.judgeHandler(op, args)
    }
    let reply: Msg
    try {
      reply = await this.nc.request(judgeSubject(p), utf8.encode(JSON.stringify({ op, args })), { timeout: 5000 })
    } catch (err) {
      throw new VitalmeshError('VM_STORE_UNAVAILABLE', `the node judging resident ${residentId} cannot be reached now (${(err as Error).message}): its partition may be moving to another node; try again in a few seconds`, { cause: err })
    }
    const r = JSON.parse(utf8d.decode(reply.data)) as JudgeReply
    if (!r.ok) throw new VitalmeshError(r.code, r.message)
    return r.value
  }

  private answerFor (p: number): void {
    if (!this.judgeHandler || this.judgeSubs.has(p)) return
    // a queue group: during a hand-over two nodes may listen for a moment, and one answers
    this.judgeSubs.set(p, this.nc.subscribe(judgeSubject(p), {
      queue: 'judge',
      callback: (err, m) => {
        if (err) return
        void (async (): Promise<JudgeReply> => {
          try {
            const { op, args } = JSON.parse(utf8d.decode(m.data)) as { op: string, args: unknown[] }
            await this.takenOver.get(p)
            return { ok: true, value: await this.judgeHandler!(op, args) }
          } catch (e) {
            return e instanceof VitalmeshError ? { ok: false, code: e.code, message: e.message } : { ok: false, code: 'VM_INTERNAL', message: (e as Error).message }
          }
        })().then((r) => { m.respond(utf8.encode(JSON.stringify(r))) })
      },
    }))
  }

  /**
   * The live stream's updates for every node's consoles: the judge of a resident publishes its
   * readings and alert changes, and every node (the judge too) passes them to its clients. Core
   * NATS, not the log: a console that misses one (a node's link was down) shows the next.
   */
  publishLive (kind: 'readings', rows: readonly unknown[]): void
  publishLive (kind: 'alert', alert: unknown): void
  publishLive (kind: 'readings' | 'alert', body: unknown): void {
    if (kind === 'readings') {
      // gathered for LIVE_GATHER_MS: one message per node and 50 ms instead of one (and a socket write) per feed commit,
      // most often a reading, whether or not a console anywhere watches (npm run bench -- cluster)
      for (const r of body as unknown[]) this.liveRows.push(r)
      this.liveTimer ??= setTimeout(() => { this.sendLiveReadings() }, LIVE_GATHER_MS)
      return
    }
    // an alert after the readings that raised it, as a console of a single node shows them
    this.sendLiveReadings()
    if (!this.nc.isClosed()) this.nc.publish('vm.live.alert', utf8.encode(JSON.stringify(body)))
  }

  private liveRows: unknown[] = []
  private liveTimer: NodeJS.Timeout | undefined

  private sendLiveReadings (): void {
    clearTimeout(this.liveTimer)
    this.liveTimer = undefined
    if (this.liveRows.length === 0) return
    const rows = this.liveRows
    this.liveRows = []
    if (!this.nc.isClosed()) this.nc.publish('vm.live.readings', utf8.encode(JSON.stringify(rows)))
  }

  /**
   * Passes the cluster's live updates to `handlers`: alert changes always (an operator's console
   * lists them), readings only between `watchReadings(true)` and `watchReadings(false)`, which
   * follow whether a console of this node watches a resident: the NATS servers then forward
   * every node's feed commits to this node only while somebody here looks at them.
   */
  onLive (handlers: { readings(data: Uint8Array): void, alert(data: Uint8Array): void }): void {
    this.liveHandlers = handlers
    this.nc.subscribe('vm.live.alert', { callback: (err, m) => { if (!err) this.passLive(m, handlers.alert) } })
  }

  watchReadings (on: boolean): void {
    if (!on) { this.liveReadings?.unsubscribe(); this.liveReadings = undefined; return }
    const handlers = this.liveHandlers
    if (this.liveReadings || !handlers || this.nc.isClosed()) return
    this.liveReadings = this.nc.subscribe('vm.live.readings', { callback: (err, m) => { if (!err) this.passLive(m, handlers.readings) } })
  }

  private liveHandlers: { readings(data: Uint8Array): void, alert(data: Uint8Array): void } | undefined
  private liveReadings: Subscription | undefined

  private passLive (m: Msg, to: (data: Uint8Array) => void): void {
    try { to(m.data) } catch (e) { this.o.logger.warn({ err: e, subject: m.subject }, 'a live update from the cluster could not be passed on') }
  }

  /** entries of each partition this node follows that are not fed, stored and checkpointed yet (/metrics) */
  partitionLag (): Map<number, number> {
    return this.runner.lag()
  }

  /** Does this node follow partition p now (as `owns` for a resident)? */
  follows (partition: number): boolean {
    return this.runner.following(partition)
  }

  /**
   * Does this node judge the resident now: does it follow the resident's partition into its
   * feed? From the lease's acquisition until the partition's last batch was judged and committed
   * after its release (so a batch in flight at a release is still judged here).
   */
  owns (residentId: string): boolean {
    return this.runner.following(this.log.partitionOf(residentId))
  }

  /** PUBACKs waiting for the log's acknowledgement (/metrics) */
  pubacksWaiting (): number { return this.waiting.length }

  /** 'ok', or why not (/readyz). */
  status (): string { return this.nc.isClosed() ? 'NATS connection closed' : this.linkUp ? 'ok' : 'NATS link down' }

  /** What operators see (/v1/stats). */
  summary (): Record<string, unknown> {
    return {
      node: this.o.node, partitions: this.o.partitions, owned: this.owner?.owned() ?? [], following: this.runner.running(),
      shippedTo: this.shipped, pubacksWaitingForLog: this.waiting.length, ...this.stats,
    }
  }

  /** Releases the partitions (after their last commit), then closes the connections. */
  async stop (): Promise<void> {
    await this.owner?.stop()
    await this.runner.stopAll()
    this.sendLiveReadings()
    await this.checkpoints.pool.end().catch(() => {})
    await this.nc.drain().catch(() => {})
  }
}
