import { AckPolicy, DeliverPolicy, createInbox, headers, nanos, nuid, type JetStreamClient, type JetStreamManager, type Msg, type NatsConnection, type StreamConfig, type Subscription } from 'nats'
import { createHash } from 'node:crypto'
import type { StoredReading } from '../core/index.ts'

/**
 * Cluster mode's reading log: one JetStream stream whose subjects are partitioned by resident
 * (`vm.readings.<partition>`), so that every reading of a resident, from any device and through
 * any node, lands in one partition in the order the stream received it, and one node at a time
 * can process that partition (cluster/partitions.ts).
 */

export interface LogOptions {
  /** stream name (default VITALMESH_READINGS) */
  stream?: string
  /** subjects are `<prefix>.<partition>` (default vm.readings) */
  subjectPrefix?: string
  /**
   * Fixed when the stream is created: a resident's partition is `partitionOf(resident, n)`, so
   * changing n would move residents to partitions whose checkpoints know nothing of them.
   */
  partitions: number
  /** 3 in production (the log survives one server of three); 1 is allowed for tests */
  replicas: number
  /**
   * How long JetStream remembers a Nats-Msg-Id to drop a retried publish (default 2 min, as
   * JetStream's). A device that resends after a lost PUBACK does so within seconds; a replay
   * hours later is older than any window and is the consumers' to de-duplicate by seq.
   */
  duplicateWindowMs?: number
  /** how long readings stay in the log (default 7 days): longer than any consumer may lag */
  maxAgeMs?: number
}

/** One reading as read back from the log. */
export interface LogEntry {
  partition: number
  /** the stream sequence of its message (the readings of one message share it): a partition's position is the last one its consumer committed */
  streamSeq: number
  reading: StoredReading
}

export interface AppendOutcome {
  accepted: number
  /** readings of retried messages JetStream recognised by their message id and did not store again */
  duplicates: number
  /** stream sequence of each record's message, in the order given (a duplicate's is the first copy's) */
  seqs: number[]
}

export const DEFAULT_STREAM = 'VITALMESH_READINGS'
export const DEFAULT_SUBJECT_PREFIX = 'vm.readings'

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193
const utf8 = new TextEncoder()

/** 32-bit FNV-1a of the UTF-8 bytes: stable across processes, versions and platforms (no seed). */
export function fnv1a (s: string): number {
  let h = FNV_OFFSET
  for (const b of utf8.encode(s)) h = Math.imul(h ^ b, FNV_PRIME)
  return h >>> 0
}

/** The partition of a resident's readings, among n. */
export function partitionOf (residentId: string, partitions: number): number {
  return fnv1a(residentId) % partitions
}

/** The message id JetStream de-duplicates by: a device's seq names a reading, and a resend reuses it. */
export function messageId (r: Pick<StoredReading, 'deviceId' | 'seq'>): string {
  return `${r.deviceId}:${r.seq}`
}

/** The partition count is kept in the stream's description: 2.9 has no stream metadata. */
const describe = (partitions: number): string => `vitalmesh reading log; partitions=${partitions}`
const partitionsIn = (description: string | undefined): number | undefined => {
  const m = /partitions=(\d+)/.exec(description ?? '')
  return m ? Number(m[1]) : undefined
}

export function streamConfig (o: Required<LogOptions>): Partial<StreamConfig> {
  return {
    name: o.stream,
    description: describe(o.partitions),
    subjects: [`${o.subjectPrefix}.*`],
    storage: 'file' as StreamConfig['storage'],
    retention: 'limits' as StreamConfig['retention'],
    discard: 'old' as StreamConfig['discard'],
    num_replicas: o.replicas,
    duplicate_window: nanos(o.duplicateWindowMs),
    max_age: nanos(o.maxAgeMs),
  }
}

/**
 * Runs a JetStream management call, retrying while the cluster is still forming: a meta leader
 * elected before every server has reported in answers "no suitable peers for placement" (or
 * "insufficient resources") for a stream or bucket with more replicas than the servers it knows
 * so far. That lasts a second or two after the servers start together, as they do after a
 * power cut; a node that then refused to start would need an operator for nothing. Any other
 * error, or the same one after `timeoutMs`, is thrown.
 */
export async function whileClusterForms<T> (call: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    try {
      return await call()
    } catch (err) {
      // TIMEOUT: the JetStream API got no answer within the request timeout, which a cluster
      // that is still electing its meta leader (or a loaded host) gives too; every call retried
      // here is safe to repeat (info, or an add whose second try reports 'already in use')
      const forming = /no suitable peers|insufficient resources|jetstream cluster not available|jetstream system temporarily unavailable|^timeout$/i.test((err as Error).message)
      if (!forming || Date.now() + wait > until) throw err
      await new Promise((r) => setTimeout(r, wait))
    }
  }
}

/**
 * Why an existing stream cannot serve as this log, as sentences (none: it can). Partitions and
 * subjects must match exactly (see LogOptions.partitions); replicas too, because an operator who
 * asked for 3 and silently got 1 has lost the failover they configured.
 */
export function streamProblems (have: Partial<StreamConfig>, want: Partial<StreamConfig>): string[] {
  const out: string[] = []
  const hp = partitionsIn(have.description); const wp = partitionsIn(want.description)
  if (hp !== wp) out.push(`it was created with ${hp ?? 'an unknown number of'} partitions, this node is configured for ${wp}`)
  if (JSON.stringify(have.subjects ?? []) !== JSON.stringify(want.subjects ?? [])) out.push(`its subjects are ${JSON.stringify(have.subjects)}, not ${JSON.stringify(want.subjects)}`)
  if (have.storage !== want.storage) out.push(`its storage is ${have.storage}, not ${want.storage}`)
  if (have.num_replicas !== want.num_replicas) out.push(`it has ${have.num_replicas} replicas, this node is configured for ${want.num_replicas}`)
  return out
}

export class JetStreamLog {
  readonly stream: string
  readonly subjectPrefix: string
  readonly partitions: number
  /** how long JetStream drops a message whose id it has seen (LogOptions.duplicateWindowMs) */
  readonly duplicateWindowMs: number
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  private readonly appends: Appends

  private constructor (o: Required<LogOptions>, nc: NatsConnection, jsm: JetStreamManager) {
    this.stream = o.stream
    this.subjectPrefix = o.subjectPrefix
    this.partitions = o.partitions
    this.duplicateWindowMs = o.duplicateWindowMs
    this.js = nc.jetstream()
    this.jsm = jsm
    this.appends = new Appends(nc)
  }

  /** Creates the stream, or checks that the existing one has this configuration (streamProblems). */
  static async open (nc: NatsConnection, opts: LogOptions): Promise<JetStreamLog> {
    const o: Required<LogOptions> = {
      stream: DEFAULT_STREAM, subjectPrefix: DEFAULT_SUBJECT_PREFIX, duplicateWindowMs: 120_000, maxAgeMs: 7 * 24 * 3600_000, ...opts,
    }
    if (!Number.isInteger(o.partitions) || o.partitions < 1) throw new Error(`partitions must be a positive integer, not ${o.partitions}`)
    const jsm = await nc.jetstreamManager()
    const want = streamConfig(o)
    let have: Partial<StreamConfig> | undefined
    try {
      have = (await whileClusterForms(async () => await jsm.streams.info(o.stream))).config
    } catch (err) {
      if (!/stream not found/i.test((err as Error).message)) throw err
    }
    if (have === undefined) {
      try {
        await whileClusterForms(async () => { await jsm.streams.add(want) })
      } catch (err) {
        // another node created it between our info and add: check it as we would have
        if (!/already in use/i.test((err as Error).message)) throw err
        have = (await jsm.streams.info(o.stream)).config
      }
    }
    if (have !== undefined) {
      const problems = streamProblems(have, want)
      if (problems.length) throw new Error(`stream ${o.stream} cannot be the reading log: ${problems.join('; ')}`)
    }
    return new JetStreamLog(o, nc, jsm)
  }

  partitionOf (residentId: string): number { return partitionOf(residentId, this.partitions) }

  subject (partition: number): string { return `${this.subjectPrefix}.${partition}` }

  /**
   * Publishes each reading to its resident's partition and resolves once JetStream acknowledged
   * every one, i.e. once it is stored on a majority of the stream's replicas: in cluster mode
   * the device's PUBACK follows this. Publishes go out together (one round trip for the batch,
   * not one per reading) and keep their order on the connection, so one device's readings keep
   * theirs in the partition.
   *
   * Readings of one commit (`id`: the ingest spool's record; readings without one travel alone)
   * and one partition travel in one message (`messages`): a phone's 30 readings are one message,
   * not 30 publishes, replications, acknowledgements and deliveries (npm run bench -- cluster).
   * A commit's readings are fixed once committed, so a batch sent again (a failed or timed-out
   * append, a restart before the drain's cursor moved) is made of the same messages with the
   * same ids, and JetStream stores nothing twice. A copy that travels in another message (a
   * device that resent to another node after a lost PUBACK) is in the log twice; every consumer
   * drops the second copy by device and seq (the feed, firstCopies, the store's one point).
   */
  async append (records: readonly (StoredReading & { id?: number })[], opts: { timeoutMs?: number } = {}): Promise<AppendOutcome> {
    const groups = messages(records, (r) => this.partitionOf(r.residentId))
    const acks = await this.appends.publish(groups.map((g) => ({ subject: this.subject(g.partition), data: encode(g.readings), id: g.readings.length === 1 ? messageId(g.readings[0]!) : batchId(g.readings) })), opts.timeoutMs ?? 5000)
    const seqs = new Array<number>(records.length)
    let duplicates = 0
    groups.forEach((g, k) => {
      for (const i of g.at) seqs[i] = acks[k]!.seq
      if (acks[k]!.duplicate) duplicates += g.at.length
    })
    return { accepted: records.length - duplicates, duplicates, seqs }
  }

  /** The stream's last sequence. */
  async lastSeq (): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq
  }

  /** How many entries each partition holds (JetStream counts them per subject). */
  async counts (): Promise<number[]> {
    const info = await this.jsm.streams.info(this.stream, { subjects_filter: `${this.subjectPrefix}.*` })
    const per = (info.state.subjects ?? {}) as Record<string, number>
    return Array.from({ length: this.partitions }, (_, p) => per[this.subject(p)] ?? 0)
  }

  /**
   * The entries of a partition that reached the log at or after `sinceMs` (wall clock), up to
   * stream sequence `upToSeq`: what a node taking a partition over reads to rebuild the recent
   * past of its residents (alerting's timelines) before it follows the partition from `upToSeq`.
   */
  async readSince (partition: number, sinceMs: number, upToSeq: number, opts: { batch?: number } = {}): Promise<LogEntry[]> {
    const out: LogEntry[] = []
    await this.scan(partition, { sinceMs }, upToSeq, (entries) => { for (const e of entries) out.push(e) }, opts)
    return out
  }

  /**
   * Hands the entries of a partition from `from` (those that reached the log at or after
   * `sinceMs`, or those after stream sequence `afterSeq`) up to `upToSeq` to `each`, a fetched
   * batch at a time, and resolves with the last sequence handed over (`afterSeq`, or 0, when
   * none): a day of a busy partition is millions of entries, which are folded as they come
   * rather than held. A throw from `each` ends the scan with it. An ephemeral consumer of its
   * own, as ConsumerRunner's (see there why not an ordered one).
   */
  async scan (partition: number, from: { sinceMs: number } | { afterSeq: number }, upToSeq: number, each: (entries: LogEntry[]) => void | Promise<void>, opts: { batch?: number } = {}): Promise<number> {
    let last = 'afterSeq' in from ? from.afterSeq : 0
    if (upToSeq <= last) return last
    const name = `vm-warm-p${partition}-${nuid.next()}`
    await this.jsm.consumers.add(this.stream, {
      name, filter_subject: this.subject(partition),
      ...('sinceMs' in from
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(from.sinceMs).toISOString() }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from.afterSeq + 1 }),
      ack_policy: AckPolicy.None, mem_storage: true, num_replicas: 1, inactive_threshold: nanos(30_000),
    })
    try {
      const consumer = await this.js.consumers.get(this.stream, name)
      for (;;) {
        const batch = await consumer.fetch({ max_messages: opts.batch ?? 1000, expires: 2000 })
        const entries: LogEntry[] = []
        let got = 0
        let pending = 0
        let done = false
        for await (const m of batch) {
          got++
          pending = m.info.pending
          if (m.seq > upToSeq) { done = true; break }
          for (const e of decodeEntries(partition, m.seq, m.data)) entries.push(e)
          if (m.seq === upToSeq) { done = true; break }
        }
        if (entries.length) { await each(entries); last = entries[entries.length - 1]!.streamSeq }
        // up to upToSeq, or nothing more in the partition
        if (done || got === 0 || pending === 0) return last
      }
    } finally {
      await this.jsm.consumers.delete(this.stream, name).catch(() => {})
    }
  }

  /**
   * Every entry of a partition after `afterSeq`, up to the partition's current end (tests, tools):
   * one direct get per entry, answered by the stream leader, so it creates no consumer (which
   * nats-server 2.9 may place on a server that is down, see ConsumerRunner).
   */
  async read (partition: number, afterSeq = 0): Promise<LogEntry[]> {
    const out: LogEntry[] = []
    for (let seq = afterSeq + 1; ;) {
      let m
      try {
        // next_by_subj (2.9): nats.js types it for direct gets only, the server takes it here too
        m = await this.jsm.streams.getMessage(this.stream, { seq, next_by_subj: this.subject(partition) } as unknown as { seq: number })
      } catch (err) {
        if (/no message found/i.test((err as Error).message)) return out
        throw err
      }
      for (const e of decodeEntries(partition, m.seq, m.data)) out.push(e)
      seq = m.seq + 1
    }
  }
}

interface PubAck { seq: number, duplicate: boolean }

/**
 * JetStream publishes whose acknowledgements come back on one subscription of this connection
 * (`<inbox>.<n>`), a batch at a time: one promise and one timer per batch. nats.js's
 * `js.publish` is a request each, with a timer each, and rejects each request's settled promise
 * with a new NatsError once it has answered (nats.js 2.29, request.js `RequestOne.cancel`): 3% of
 * a cluster node's CPU went to building those errors (npm run bench -- cluster, bench/README.md).
 * The protocol is JetStream's: a publish with a reply subject, answered with a PubAck
 * (`{"stream","seq","duplicate"}`), a JetStream error (`{"error":{"code","description"}}`), or a
 * 503 status when no server of the stream listens (no responders).
 */
class Appends {
  private readonly prefix = `${createInbox()}.`
  private readonly waiting = new Map<number, (ack: PubAck | Error) => void>()
  private next = 0
  private readonly sub: Subscription

  constructor (private readonly nc: NatsConnection) {
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (err, m) => { if (!err) this.answered(m) } })
  }

  private answered (m: Msg): void {
    const n = Number(m.subject.slice(this.prefix.length))
    const done = this.waiting.get(n)
    if (done === undefined) return // its batch timed out, or failed on another message
    this.waiting.delete(n)
    if (m.headers?.code === 503) { done(new Error('503: no JetStream server answers for the reading log now (no responders)')); return }
    let body: { seq?: number, duplicate?: boolean, error?: { code?: number, description?: string } }
    try { body = JSON.parse(utf8d.decode(m.data)) } catch { done(new Error(`the reading log answered a publish with something other than JSON (${m.data.length} bytes)`)); return }
    if (body.error) done(new Error(`${body.error.code ?? ''}: ${body.error.description ?? 'JetStream refused the publish'}`))
    else if (typeof body.seq !== 'number') done(new Error('the reading log answered a publish without a sequence'))
    else done({ seq: body.seq, duplicate: body.duplicate === true })
  }

  /** Publishes every message and resolves with their acknowledgements in order; rejects on the first failure, or after timeoutMs. */
  async publish (msgs: readonly { subject: string, data: Uint8Array, id: string }[], timeoutMs: number): Promise<PubAck[]> {
    if (msgs.length === 0) return []
    const acks = new Array<PubAck>(msgs.length)
    const mine: number[] = []
    let timer: NodeJS.Timeout | undefined
    try {
      return await new Promise<PubAck[]>((resolve, reject) => {
        let left = msgs.length
        timer = setTimeout(() => { reject(new Error('timeout')) }, timeoutMs)
        msgs.forEach((msg, i) => {
          const n = this.next++
          mine.push(n)
          this.waiting.set(n, (ack) => {
            if (ack instanceof Error) { reject(ack); return }
            acks[i] = ack
            if (--left === 0) resolve(acks)
          })
          const h = headers()
          h.set('Nats-Msg-Id', msg.id)
          this.nc.publish(msg.subject, msg.data, { reply: this.prefix + n, headers: h })
        })
      })
    } finally {
      clearTimeout(timer)
      for (const n of mine) this.waiting.delete(n)
    }
  }
}

/** Readings per message at most: a message stays far below NATS's max_payload (1 MB by default). */
export const MESSAGE_MAX = 1000

/**
 * The log's messages for a batch of readings: those of one commit (`id`) and partition
 * together, in their order, at most MESSAGE_MAX each; `at` are their places in the batch. The
 * same readings give the same messages however the batch around them was cut. Readings
 * without an id travel alone.
 */
export function messages<R extends StoredReading & { id?: number }> (records: readonly R[], partitionOf: (r: R) => number): { partition: number, readings: R[], at: number[] }[] {
  const out: { partition: number, readings: R[], at: number[] }[] = []
  const open = new Map<string, { partition: number, readings: R[], at: number[] }>()
  records.forEach((r, i) => {
    const partition = partitionOf(r)
    if (r.id === undefined) { out.push({ partition, readings: [r], at: [i] }); return }
    const key = `${r.id}/${partition}`
    let g = open.get(key)
    if (g === undefined || g.readings.length >= MESSAGE_MAX) {
      open.set(key, g = { partition, readings: [], at: [] })
      out.push(g)
    }
    g.readings.push(r)
    g.at.push(i)
  })
  return out
}

/**
 * The message id of several readings: their devices and seqs, hashed (SHA-256, 128 bits kept,
 * so two different sets never share one: JetStream would drop the second as a duplicate).
 */
export function batchId (readings: readonly Pick<StoredReading, 'deviceId' | 'seq'>[]): string {
  const h = createHash('sha256')
  for (const r of readings) h.update(`${r.deviceId}:${r.seq}\n`)
  return `${readings.length}:${h.digest('base64url').slice(0, 22)}`
}

/**
 * JSON: small, and readable with `nats stream view` when an operator looks at the log. One
 * reading is an object (as every message was until 2026-12-08), several an array.
 */
export function encode (readings: readonly (StoredReading & { id?: number })[]): Uint8Array {
  // the ingest spool's record id is that node's and means nothing in the log
  const plain = readings.map(({ id: _, ...r }) => r)
  return utf8.encode(JSON.stringify(plain.length === 1 ? plain[0] : plain))
}

const utf8d = new TextDecoder()

/** The entries of one message: its readings, each at the message's stream sequence. */
export function decodeEntries (partition: number, streamSeq: number, data: Uint8Array): LogEntry[] {
  const body = JSON.parse(utf8d.decode(data)) as StoredReading | StoredReading[]
  return Array.isArray(body) ? body.map((reading) => ({ partition, streamSeq, reading })) : [{ partition, streamSeq, reading: body }]
}
