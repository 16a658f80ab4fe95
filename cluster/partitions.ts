import { AckPolicy, ConsumerEvents, DeliverPolicy, nanos, nuid, type ConsumerMessages, type JetStreamClient, type KV, type KvEntry, type QueuedIterator } from 'nats'
import type { Logger } from '../core/index.ts'
import { silentLogger } from '../core/index.ts'
import { StaleEpochError, type Checkpoint, type CheckpointStore } from './checkpoints.ts'
import { decodeEntries, fnv1a, whileClusterForms, type JetStreamLog, type LogEntry } from './log.ts'

/**
 * Partition ownership by leases in a JetStream key-value bucket, and the runner that feeds an
 * owned partition to a consumer from its checkpoint.
 *
 * The bucket holds `lease.<p>` (value: owner node id and expiry) for each partition and
 * `node.<id>` for each live node. Every write is a compare-and-swap on the key's revision
 * (create: none yet; update: the revision we read), so two nodes never both win a lease. The
 * revision that won a lease is its epoch: it only grows, and checkpoints are fenced by it
 * (cluster/checkpoints.ts), so a node that kept working after losing its lease cannot commit.
 * Expiry compares the value's expiry with the reader's clock: nodes' clocks must agree within a
 * fraction of the lease (NTP does); a skew costs availability or overlap, never correctness,
 * thanks to the epoch.
 */

export interface Lease { node: string, expiresAt: number }

/** Node ids become key tokens: letters, digits, '-', '_' and '='. */
const NODE_ID = /^[A-Za-z0-9_=-]+$/

export const leaseKey = (p: number): string => `lease.${p}`
export const nodeKey = (node: string): string => `node.${node}`

/** Each node's fair share: ceil(N / live nodes), so the live nodes together cover every partition. */
export function fairShare (partitions: number, liveNodes: number): number {
  return Math.ceil(partitions / Math.max(1, liveNodes))
}

/**
 * How much a node wants a partition (rendezvous hashing): nodes claim the partitions they want
 * most and shed those they want least, so two nodes claiming at once mostly go for different
 * partitions, and a node that comes back tends to get the same ones.
 */
export function preference (node: string, p: number): number {
  return fnv1a(`${node}/${p}`)
}

export interface PlanInput {
  node: string
  partitions: number
  now: number
  /** the lease of each partition as last seen, undefined where none (never claimed, released, aged out) */
  leases: readonly (Lease | undefined)[]
  /** nodes whose heartbeat has not expired, this one included or not */
  liveNodes: readonly string[]
  /** partitions this node holds */
  held: ReadonlySet<number>
}

/** What a node should do now: claim free or expired partitions up to its fair share, or shed those above it. Pure. */
export function plan (i: PlanInput): { claim: number[], release: number[] } {
  const live = new Set(i.liveNodes).add(i.node)
  const share = fairShare(i.partitions, live.size)
  const byWant = (a: number, b: number): number => preference(i.node, b) - preference(i.node, a)
  if (i.held.size > share) return { claim: [], release: [...i.held].sort(byWant).slice(share).sort((a, b) => a - b) }
  const free: number[] = []
  for (let p = 0; p < i.partitions; p++) {
    if (i.held.has(p)) continue
    const l = i.leases[p]
    if (l === undefined || l.expiresAt <= i.now) free.push(p)
  }
  return { claim: free.sort(byWant).slice(0, share - i.held.size), release: [] }
}

export interface OwnerOptions {
  kv: KV
  /** unique among the live nodes; a restarted process may reuse it */
  node: string
  partitions: number
  /** how long a lease lasts without renewal (default 5000 ms): a dead node's partitions move after about this long */
  leaseMs?: number
  /** how often leases are renewed (default 1500 ms): three renewals may fail before a lease is lost */
  renewMs?: number
  /** this node won the partition's lease; `epoch` fences its checkpoints */
  onAcquire(partition: number, epoch: number): void
  /** this node no longer owns the partition: stop processing it (resolve once stopped, so the next owner starts after) */
  onRelease(partition: number, why: 'rebalance' | 'lost' | 'stop'): void | Promise<void>
  logger?: Logger
  now?: () => number
}

/** The lease bucket: history 1 (only the last value matters); the TTL only removes keys of nodes that never came back. */
export async function leaseBucket (js: JetStreamClient, opts: { bucket?: string, replicas: number, leaseMs?: number }): Promise<KV> {
  return await whileClusterForms(async () => await js.views.kv(opts.bucket ?? 'vm_partition_leases', { history: 1, replicas: opts.replicas, ttl: 10 * (opts.leaseMs ?? 5000) }))
}

interface Held { revision: number, epoch: number, validUntil: number }

const wrongRevision = (err: unknown): boolean => /wrong last sequence/i.test((err as Error).message)

/**
 * Claims free and expired partitions up to its fair share, renews its leases, sheds partitions
 * above its share when nodes join, and releases everything on stop. It learns the bucket
 * through a watch and acts at the next renewal, at the next foreign expiry, or as soon as a
 * lease is released or a node joins, whichever comes first: no polling.
 */
export class PartitionOwner {
  readonly node: string
  private readonly o: Required<Omit<OwnerOptions, 'logger' | 'now'>> & { logger: Logger, now: () => number }
  private readonly seen = new Map<string, KvEntry>()
  private readonly held = new Map<number, Held>()
  private watch: QueuedIterator<KvEntry> | undefined
  private timer: NodeJS.Timeout | undefined
  private ticking: Promise<void> | undefined
  private again = false
  private stopped = false

  private constructor (o: OwnerOptions) {
    if (!NODE_ID.test(o.node)) throw new Error(`node id ${JSON.stringify(o.node)} may hold only letters, digits, '-', '_' and '='`)
    this.node = o.node
    this.o = { leaseMs: 5000, renewMs: 1500, logger: silentLogger(), now: Date.now, ...o }
    if (this.o.renewMs * 2 >= this.o.leaseMs) throw new Error('renewMs must be under half of leaseMs, or one late renewal loses the lease')
  }

  static async start (o: OwnerOptions): Promise<PartitionOwner> {
    const owner = new PartitionOwner(o)
    let initialized!: () => void
    const ready = new Promise<void>((resolve) => { initialized = resolve })
    owner.watch = await o.kv.watch({ key: '>', initializedFn: () => initialized() })
    void (async () => { for await (const e of owner.watch!) owner.observe(e) })().catch((err: unknown) => owner.o.logger.error({ err }, 'partition lease watch ended'))
    await ready
    await owner.tick()
    return owner
  }

  /** Partitions this node holds now. */
  owned (): number[] { return [...this.held.keys()].sort((a, b) => a - b) }

  private observe (e: KvEntry): void {
    const before = this.seen.get(e.key)
    this.seen.set(e.key, e)
    // a released lease or a new node changes the plan now, not at the next renewal
    if ((e.key.startsWith('lease.') && e.operation !== 'PUT') || (e.key.startsWith('node.') && e.operation === 'PUT' && (before === undefined || before.operation !== 'PUT'))) this.kick(20)
  }

  private value (e: KvEntry | undefined): Lease | undefined {
    if (e === undefined || e.operation !== 'PUT') return undefined
    try { return e.json<Lease>() } catch { return undefined }
  }

  private kick (ms: number): void {
    if (this.stopped) return
    if (this.ticking) { this.again = true; return }
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.tick() }, Math.max(0, ms))
  }

  private tick (): Promise<void> {
    if (this.ticking) { this.again = true; return this.ticking }
    clearTimeout(this.timer)
    this.ticking = this.round().catch((err: unknown) => this.o.logger.error({ err }, 'partition lease round failed')).finally(() => {
      this.ticking = undefined
      if (this.stopped) return
      if (this.again) { this.again = false; this.kick(0); return }
      this.kick(this.nextWake() - this.o.now())
    })
    return this.ticking
  }

  /** The next renewal, or the next foreign lease or heartbeat expiry if sooner (that is when its partitions may be claimed). */
  private nextWake (): number {
    const now = this.o.now()
    let at = now + this.o.renewMs
    for (const [k, e] of this.seen) {
      const v = this.value(e)
      if (v && v.node !== this.node && k !== nodeKey(this.node) && v.expiresAt > now) at = Math.min(at, v.expiresAt + 10)
    }
    return at
  }

  private async round (): Promise<void> {
    const { kv, leaseMs } = this.o
    const sentAt = this.o.now()
    const value = JSON.stringify({ node: this.node, expiresAt: sentAt + leaseMs } satisfies Lease)
    await kv.put(nodeKey(this.node), value).catch((err: unknown) => this.o.logger.warn({ err }, 'partition heartbeat failed'))
    await Promise.all([...this.held].map(async ([p, h]) => {
      try {
        h.revision = await kv.update(leaseKey(p), value, h.revision)
        // measured from before the request: the others count from the value, written no earlier
        h.validUntil = sentAt + leaseMs
      } catch (err) {
        if (wrongRevision(err)) { await this.drop(p, 'lost'); return }
        this.o.logger.warn({ err, partition: p }, 'partition lease renewal failed')
      }
      // not renewed in time (NATS unreachable): the others may own it by now, so stop
      if (this.held.has(p) && this.o.now() >= h.validUntil) await this.drop(p, 'lost')
    }))
    if (this.stopped) return

    const now = this.o.now()
    const liveNodes: string[] = []
    for (const [k, e] of this.seen) {
      const v = this.value(e)
      if (k.startsWith('node.') && v && v.expiresAt > now) liveNodes.push(v.node)
    }
    const leases = Array.from({ length: this.o.partitions }, (_, p) => this.value(this.seen.get(leaseKey(p))))
    const { claim, release } = plan({ node: this.node, partitions: this.o.partitions, now, leases, liveNodes, held: new Set(this.held.keys()) })
    for (const p of release) await this.drop(p, 'rebalance')
    for (const p of claim) {
      const seen = this.seen.get(leaseKey(p))
      let revision: number
      try {
        // update over the expired value we saw; create where there is none, or where the TTL removed it since
        revision = seen?.operation === 'PUT'
          ? await kv.update(leaseKey(p), value, seen.revision).catch(async (err: unknown) => { if (wrongRevision(err)) return kv.create(leaseKey(p), value); throw err })
          : await kv.create(leaseKey(p), value)
      } catch (err) {
        if (!wrongRevision(err)) this.o.logger.warn({ err, partition: p }, 'partition lease claim failed')
        continue // another node won it
      }
      this.held.set(p, { revision, epoch: revision, validUntil: sentAt + leaseMs })
      this.o.logger.info({ partition: p, epoch: revision, node: this.node }, 'partition acquired')
      try { this.o.onAcquire(p, revision) } catch (err) { this.o.logger.error({ err, partition: p }, 'onAcquire failed') }
    }
  }

  /** Stops processing p, then (unless the lease was lost) deletes the lease so another node may claim it at once. */
  private async drop (p: number, why: 'rebalance' | 'lost' | 'stop'): Promise<void> {
    const h = this.held.get(p)
    if (!h) return
    this.held.delete(p)
    this.o.logger.info({ partition: p, why, node: this.node }, 'partition released')
    try { await this.o.onRelease(p, why) } catch (err) { this.o.logger.error({ err, partition: p }, 'onRelease failed') }
    if (why !== 'lost') await this.o.kv.delete(leaseKey(p), { previousSeq: h.revision }).catch((err: unknown) => this.o.logger.warn({ err, partition: p }, 'partition lease delete failed'))
  }

  /** Releases every partition (after their processing stopped) and the heartbeat, and stops watching. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    await this.ticking
    for (const p of this.owned()) await this.drop(p, 'stop')
    await this.o.kv.delete(nodeKey(this.node)).catch(() => {})
    this.watch?.stop()
  }
}

/**
 * A consumer of the reading log's partitions: like the spool's consumers (ingest/spool.ts), it
 * receives the entries in order and its state is committed together with its position. Here
 * the state is a value: `consume` returns the next state from the entries and must not change
 * anything outside it, because whatever it returns is committed only if the node still owns
 * the partition (effects such as alerts belong in the state, or in the same transaction of the
 * store that cluster mode will have). A throw stops this partition only; it is retried from its
 * checkpoint with back-off.
 */
export interface PartitionConsumer<S> {
  readonly name: string
  /** the state of a partition that was never checkpointed */
  initial(partition: number): S
  consume(state: S, entries: readonly LogEntry[]): S
  /**
   * An effect outside the checkpoint store, done before the entries' checkpoint commits (the
   * telemetry store's write): at least once, so it must be idempotent. After a failover the new
   * owner does it again for the entries after the last checkpoint; a throw retries the batch.
   */
  apply?(partition: number, entries: readonly LogEntry[]): Promise<void>
  /**
   * Entries as they arrive, before the batch they belong to commits (lingerMs): what must not wait
   * for the commit (the feed: a resident waits for an alert). At least once, like `apply`, which
   * runs at the commit after every delivery of its entries has resolved.
   */
  deliver?(partition: number, entries: readonly LogEntry[]): Promise<void>
  /**
   * Before the first entry of each time the partition is followed (its checkpoint claimed, at
   * `fromSeq`): what this node needs to take the partition over from another (alerting's hand-over).
   */
  prepare?(partition: number, fromSeq: number, epoch: number): Promise<void>
}

export interface RunnerOptions<S> {
  log: JetStreamLog
  store: CheckpointStore<S>
  consumer: PartitionConsumer<S>
  /** entries per commit at most (default 500; a message's entries are never split, so one more message's at most): fewer under light load, where each commit follows what has arrived */
  maxBatch?: number
  /**
   * When caught up, wait up to this long for more entries before committing (default 0: commit
   * at once). Under light load every entry would otherwise be a commit of its own, with its own
   * effect (a store write) and checkpoint transaction: 100 ms turns about one commit per reading
   * into one per 100 ms. The wait ends at the next multiple of lingerMs on the clock, so every
   * partition a node follows commits at the same moments, and their effects can be gathered
   * (ClusterNode's store writes: one per node and moment, not one per partition).
   */
  lingerMs?: number
  logger?: Logger
  /** after each commit (tests, metrics) */
  onCommit?(cp: Checkpoint<S>): void
  /** when a partition starts being followed, with the position it resumes from */
  onStart?(partition: number, fromSeq: number): void
}

interface Task {
  stopped: boolean
  messages: ConsumerMessages | undefined
  wake: (() => void) | undefined
  done: Promise<void>
}

/** Feeds each partition this node owns to the consumer, from the partition's checkpoint. */
export class ConsumerRunner<S> {
  private readonly tasks = new Map<number, Task>()
  private readonly logger: Logger

  constructor (private readonly o: RunnerOptions<S>) {
    this.logger = o.logger ?? silentLogger()
  }

  running (): number[] { return [...this.tasks.keys()].sort((a, b) => a - b) }

  /** Is p followed now (from start until its last commit after stop)? */
  following (partition: number): boolean { return this.tasks.has(partition) }

  /** entries of each followed partition not committed yet: what the server said was pending after the last delivery, and the batch not yet committed */
  private readonly behind = new Map<number, { pending: number, batch: number }>()
  lag (): Map<number, number> {
    const out = new Map<number, number>()
    for (const p of this.tasks.keys()) { const b = this.behind.get(p); out.set(p, b ? b.pending + b.batch : 0) }
    return out
  }

  /** Starts following p under `epoch` (PartitionOwner's onAcquire). */
  start (partition: number, epoch: number): void {
    const prev = this.tasks.get(partition)
    const task: Task = { stopped: false, messages: undefined, wake: undefined, done: Promise.resolve() }
    // a new epoch for a partition still stopping waits for it: one follower per partition at a time
    task.done = (prev ? this.stop(partition) : Promise.resolve()).then(() => this.run(task, partition, epoch))
    this.tasks.set(partition, task)
  }

  /** Stops following p and resolves once its last commit is done (PartitionOwner's onRelease). */
  async stop (partition: number): Promise<void> {
    const t = this.tasks.get(partition)
    if (!t) return
    t.stopped = true
    t.messages?.stop()
    t.wake?.()
    await t.done
    if (this.tasks.get(partition) === t) this.tasks.delete(partition)
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.running().map((p) => this.stop(p)))
  }

  private async run (t: Task, partition: number, epoch: number): Promise<void> {
    try { await this.loop(t, partition, epoch) } finally {
      // ended by itself (fenced): forget it, unless a new epoch's task replaced it already
      if (this.tasks.get(partition) === t) this.tasks.delete(partition)
    }
  }

  private async loop (t: Task, partition: number, epoch: number): Promise<void> {
    let streak = 0
    while (!t.stopped) {
      try {
        await this.follow(t, partition, epoch)
        return
      } catch (err) {
        if (err instanceof StaleEpochError) {
          // another node owns the partition: its lease renewal will tell PartitionOwner too
          this.logger.warn({ err, partition, epoch }, 'partition checkpoint fenced: stopping')
          t.stopped = true
          return
        }
        // stopped meanwhile (the lease went): nothing to retry, and stop() must not wait out a back-off
        if (t.stopped) return
        streak++
        const backoffMs = Math.min(30_000, 500 * 2 ** Math.min(6, streak - 1))
        this.logger.error({ err, code: 'VM_CONSUMER_FAILED', consumer: this.o.consumer.name, partition, retryInMs: backoffMs },
          `partition consumer ${this.o.consumer.name} failed on partition ${partition}; it is retried from its checkpoint`)
        await new Promise<void>((resolve) => { const timer = setTimeout(resolve, backoffMs); t.wake = () => { clearTimeout(timer); resolve() } })
        t.wake = undefined
      }
    }
  }

  private async follow (t: Task, partition: number, epoch: number): Promise<void> {
    const { log, store, consumer } = this.o
    const maxBatch = this.o.maxBatch ?? 500
    const cp = await store.open(consumer.name, partition, epoch)
    let state = cp ? cp.state : consumer.initial(partition)
    let seq = cp?.seq ?? 0
    if (t.stopped) return
    await consumer.prepare?.(partition, seq, epoch)
    if (t.stopped) return
    this.o.onStart?.(partition, seq)
    // Our own ephemeral consumer rather than nats.js's ordered one: nats-server 2.9 may place
    // an R1 consumer on a server that just died, and the ordered consumer then waits on its
    // creation for minutes; a create request here fails within the manager's timeout and is
    // retried with back-off. Nothing is acked: the position that counts is the checkpoint, and
    // any anomaly (a delivery missing, heartbeats missing) restarts from it.
    const name = `vm-${consumer.name.replace(/[^A-Za-z0-9_-]/g, '_')}-p${partition}-${nuid.next()}`
    await log.jsm.consumers.add(log.stream, {
      name, filter_subject: log.subject(partition),
      deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq + 1,
      ack_policy: AckPolicy.None, max_deliver: 1, mem_storage: true, num_replicas: 1,
      // the server removes it by itself when this node dies
      inactive_threshold: nanos(30_000),
    })
    // 100 messages pulled ahead at most: a message holds a commit's readings of the partition (up to MESSAGE_MAX)
    const messages = await (await log.js.consumers.get(log.stream, name)).consume({ max_messages: Math.min(maxBatch, 100), expires: 5000 })
    t.messages = messages
    if (t.stopped) messages.stop()
    void (async () => {
      for await (const s of await messages.status()) {
        if ((s.type === ConsumerEvents.HeartbeatsMissed && Number(s.data) >= 2) || s.type === ConsumerEvents.ConsumerDeleted || s.type === ConsumerEvents.ConsumerNotFound) {
          messages.stop(new Error(`partition ${partition}: ${s.type}`))
        }
      }
    })().catch(() => {})
    // what a partition followed before (by an earlier task) had behind says nothing of this one
    this.behind.delete(partition)
    const lingerMs = this.o.lingerMs ?? 0
    let batch: LogEntry[] = []
    // entries of the batch not handed to `deliver` yet, and the deliveries under way (a commit waits for them)
    let undelivered: LogEntry[] = []
    let deliveries: Promise<void>[] = []
    const deliver = (): void => {
      if (!consumer.deliver || undelivered.length === 0) return
      const d = consumer.deliver(partition, undelivered)
      undelivered = []
      // a failed delivery fails the commit that waits for it; until then it must not be an unhandled rejection
      d.catch(() => {})
      deliveries.push(d)
    }
    let linger: NodeJS.Timeout | undefined
    // one commit at a time, in order: from the loop below, or from the linger timer
    let committing: Promise<void> = Promise.resolve()
    const commit = async (): Promise<void> => {
      clearTimeout(linger)
      linger = undefined
      if (batch.length === 0 || t.stopped) return
      const entries = batch
      batch = []
      deliver()
      const delivered = deliveries
      deliveries = []
      await Promise.all(delivered)
      if (consumer.apply) await consumer.apply(partition, entries)
      const next = consumer.consume(state, entries)
      const last = entries[entries.length - 1]!.streamSeq
      const c: Checkpoint<S> = { consumer: consumer.name, partition, seq: last, state: next, epoch }
      await store.commit(c)
      state = next
      seq = last
      this.o.onCommit?.(c)
      const b = this.behind.get(partition)
      if (b) b.batch = batch.length
    }
    const queue = (): Promise<void> => (committing = committing.then(commit))
    try {
      let delivered = 0
      for await (const m of messages) {
        // a fresh consumer numbers its deliveries 1, 2, 3...: a gap is a message lost on the way
        if (m.info.deliverySequence !== ++delivered) throw new Error(`partition ${partition}: delivery ${delivered} missing (got ${m.info.deliverySequence})`)
        // a message holds the readings of one commit (JetStreamLog.append): they are consumed and committed together
        for (const entry of decodeEntries(partition, m.seq, m.data)) {
          batch.push(entry)
          if (consumer.deliver) undelivered.push(entry)
        }
        if (consumer.deliver && (m.info.pending === 0 || undelivered.length >= 100)) deliver()
        this.behind.set(partition, { pending: m.info.pending, batch: batch.length })
        // commit when caught up (nothing pending on the server), after lingerMs, or when the batch is full
        if (batch.length >= maxBatch) await queue()
        else if (m.info.pending === 0) {
          if (lingerMs === 0) await queue()
          // a failed commit from the timer ends the messages with its error, so the loop retries from the checkpoint
          else linger ??= setTimeout(() => { queue().catch((err: unknown) => { messages.stop(err as Error) }) }, lingerMs - (Date.now() % lingerMs))
        }
        if (t.stopped) break
      }
      await committing
      if (!t.stopped) throw new Error(`the messages of partition ${partition} ended`)
    } finally {
      // a commit the linger timer started must end before this task does: otherwise stop() would
      // release the lease (and the next follow read the checkpoint) with it still writing
      clearTimeout(linger)
      linger = undefined
      await committing.catch(() => {})
      messages.stop()
      await log.jsm.consumers.delete(log.stream, name).catch(() => {})
    }
  }
}
