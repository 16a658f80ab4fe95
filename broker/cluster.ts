import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import { Redis } from 'ioredis'
import type { Logger } from '../core/index.ts'
import type { CredentialEntry, CredentialLog } from '../registry/index.ts'

const require = createRequire(import.meta.url)

export interface ClusterBackends {
  mq: unknown
  persistence: unknown
  /** 'ok' while both Redis links are up */
  status(): string
  /** called when the message link goes down or comes back */
  onLinkChange(listener: (up: boolean) => void): void
  close(): Promise<void>
}

/**
 * Redis-backed Aedes: `mqemitter-redis` carries every publish to every node (Redis
 * pub/sub: at most once, nothing is buffered for a node whose link is down), and
 * `aedes-persistence-redis` keeps subscriptions, retained messages, wills and the QoS 1
 * queues of persistent sessions, so a session can resume on any node.
 *
 * aedes 1.x needs an async persistence: aedes-persistence-redis 11.2.x's main export is
 * a callback wrapper, so we construct its async class (asyncPersistence.js) directly.
 * (12.x declares aedes-persistence 11 but is outside aedes 1.2's peer range ^11.2.1.)
 * One mismatch remains: aedes 1.2 `.pipe()`s createRetainedStreamCombi's result, which
 * 11.2.2 returns as an async generator; we wrap it in a Readable (else the first
 * SUBSCRIBE crashes the process with "stream.pipe is not a function").
 * 11.2.2 has no cleanIncoming (aedes feature-detects it): see aedes' MIGRATION.md.
 */
export function createClusterBackends (redisUrl: string, logger: Logger): ClusterBackends {
  const log = logger.child({ component: 'cluster' })
  const MQEmitterRedis = require('mqemitter-redis') as (opts: object) => { subConn: Redis, pubConn: Redis, state: NodeJS.EventEmitter, close(cb: () => void): void }
  type Retained = AsyncIterable<unknown>
  const AsyncPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: object) => { createRetainedStreamCombi(patterns: string[]): Retained }
  class RedisPersistence extends AsyncPersistence {
    override createRetainedStreamCombi (patterns: string[]): Retained { return Readable.from(super.createRetainedStreamCombi(patterns)) }
    createRetainedStream (pattern: string): Retained { return this.createRetainedStreamCombi([pattern]) }
  }
  const mq = MQEmitterRedis({ connectionString: redisUrl })
  const db = new Redis(redisUrl, { lazyConnect: false })
  const persistence = new RedisPersistence({ conn: db })
  const listeners: ((up: boolean) => void)[] = []
  // the link starts as down until both connections are ready (no alarm at start-up)
  let up = false
  let wasUp = false
  const check = (): void => {
    const now = mq.subConn.status === 'ready' && mq.pubConn.status === 'ready'
    if (now !== up) {
      up = now
      if (!up && !wasUp) return
      wasUp = true
      if (up) log.info('Redis link is up')
      else log.error('Redis link is down: this node neither sends nor receives cluster messages')
      for (const l of listeners) l(up)
    }
  }
  for (const c of [mq.subConn, mq.pubConn]) {
    c.on('ready', check)
    c.on('close', check)
    c.on('end', check)
    c.on('error', (err: Error) => log.debug({ err: err.message }, 'redis error'))
  }
  // mqemitter-redis re-emits connection errors on `state`; unhandled, one ECONNRESET would end the process
  mq.state.on('error', (err: Error) => log.debug({ err: err.message }, 'redis error'))
  db.on('error', (err: Error) => log.debug({ err: err.message }, 'redis error'))
  return {
    mq,
    persistence,
    status: () => mq.subConn.status === 'ready' && mq.pubConn.status === 'ready' && db.status === 'ready' ? 'ok' : `redis link ${mq.subConn.status}/${db.status}`,
    onLinkChange: (l) => { listeners.push(l) },
    close: async () => { if (db.status !== 'end') db.disconnect() },
  }
}

/** entries Redis keeps of the credential log (about; MAXLEN ~): a node away for longer is re-provisioned */
const CREDENTIAL_LOG_KEEP = 100_000

/**
 * The cluster's credential changes as a Redis stream (registry/credential-sync.ts): XADD keeps
 * one order for every node, and each node reads from its own position, so a node whose link was
 * down reads what it missed (pub/sub would have lost it). Its own connection blocks in XREAD.
 */
export function redisCredentialLog (redisUrl: string, key = 'vitalmesh:credentials'): CredentialLog {
  // an append fails (and is retried by the sync) rather than waiting in ioredis' queue while Redis is away
  const writer = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const reader = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  for (const c of [writer, reader]) c.on('error', () => { /* status and retries are ioredis's; reads and appends report failures */ })
  return {
    async append (c) {
      await writer.xadd(key, 'MAXLEN', '~', String(CREDENTIAL_LOG_KEEP), '*', 'node', c.node, 'kind', c.kind, 'id', c.id, 'revoked', c.revoked ? '1' : '0', 'hash', c.secretHash)
    },
    async read (position, blockMs) {
      const res = await reader.xread('COUNT', 500, 'BLOCK', blockMs, 'STREAMS', key, position) as [string, [string, string[]][]][] | null
      const out: CredentialEntry[] = []
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          const f: Record<string, string> = {}
          for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!
          // an entry not written by vitalmesh has no device id: applying it changes nothing, and the position moves past it
          if (f.kind === 'apiKey') out.push({ position: id, node: f.node ?? '', kind: 'apiKey', id: f.id ?? '', revoked: true, secretHash: '' })
          else out.push({ position: id, node: f.node ?? '', kind: 'device', id: f.id ?? '', revoked: f.revoked === '1', secretHash: f.hash ?? '' })
        }
      }
      return out
    },
    async close () {
      reader.disconnect()
      await writer.quit().catch(() => writer.disconnect())
    },
  }
}
