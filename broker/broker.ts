import { createServer, type Server, type Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import type { EventEmitter } from 'node:events'
import { Aedes, type Client, type AuthenticateError } from 'aedes'
import { parseVitalsTopic, topics, seqsOf, withSeqs, type Clock, type ErrorCode, type Logger, type ReadingError } from '../core/index.ts'
import type { Principal } from '../registry/index.ts'
import { mayPublish, maySubscribe, clientIdMatches, errorPayload } from './acl.ts'
import { guardPacketSize } from './packet-guard.ts'
import { PublishBudget, type RateLimit } from './rate-limit.ts'
import { Presence } from './presence.ts'
import { BrokerMetrics } from './metrics.ts'

/** The protections of one node; each is a setting (core/config.ts `mqtt.*`). */
export interface BrokerLimits {
  maxPayloadBytes: number
  /** per-device publish budget on `vitals/{id}` */
  rate: RateLimit
  /** largest keepalive (s) a client may ask for; 0 = any (and keepalive 0 is then allowed) */
  keepaliveLimitS: number
  /** time a new connection has to send CONNECT */
  connectTimeoutMs: number
  /** time a subscriber that stopped reading has before it is disconnected */
  drainTimeoutMs: number
  maxTopicLevels: number
  /** open connections per source address (0 = no cap) */
  maxConnectionsPerAddress: number
}

export interface BrokerDeps {
  logger: Logger
  clock: Clock
  authenticate(username: string, password: string): Promise<Principal | undefined>
  /** a device that presented a CA-signed client certificate with this CN (mutual TLS) */
  authenticateCertificate?(deviceId: string): Principal | undefined
  /** ingest one vitals payload; calls back once durable (or with an error: no PUBACK) */
  ingest(device: { id: string, deviceKey: number, residentId: string }, payload: Buffer, done: (err: Error | null) => void): void
  limits: BrokerLimits
  /** a resident (on `alerts/{id}/ack`) or one of its followers (on `followers/{id}/ack`) acknowledges an alert over MQTT */
  acknowledge?(who: { kind: 'resident', id: string } | { kind: 'follower', id: string, residentId: string }, payload: Buffer, done: (err: Error | null) => void): void
  /** batched last-seen and online write (registry) */
  recordLastSeen?(seen: Iterable<[string, number, boolean]>): void
  /** cluster backends (broker/cluster.ts); in-memory when absent */
  mq?: unknown
  persistence?: unknown
}

/** An MQTT PUBLISH header plus topic and message id fit well within this. */
const PACKET_OVERHEAD = 2 + 256 + 2

export interface Broker {
  aedes: Aedes
  metrics: BrokerMetrics
  presence: Presence
  /** attach one transport connection (TCP or TLS socket, or WebSocket stream) */
  handle(stream: Duplex, req?: IncomingMessage): void
  listenTcp(host: string, port: number): Promise<Server>
  /** a server created elsewhere (TLS) whose connections this broker handles */
  adopt(server: Server): void
  publish(topic: string, payload: Buffer, qos: 0 | 1, retain?: boolean): Promise<void>
  replyError(deviceId: string, e: ReadingError): void
  /** ends every session of an identity (revoked or rotated credentials); returns how many */
  disconnectIdentity(id: string, connectedBefore?: number): number
  /** ends every session on this node (its cluster link is down; clients reconnect elsewhere) */
  disconnectAll(): number
  readonly stats: { authFailures: number, aclDenied: number, oversized: number, rateLimited: number, refusedConnections: number }
  close(): Promise<void>
}

function authError (message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

/** Per-connection state; kept small, since a node holds tens of thousands. */
class Session {
  constructor (readonly principal: Principal, readonly connectedAt: number) {}
}

/** The transport socket under a client: the TCP/TLS socket, or the one under the WebSocket upgrade. */
function socketOf (client: Client): Socket | undefined {
  const c = client.conn as unknown
  if (c instanceof TLSSocket || (c as Socket).remoteAddress !== undefined) return c as Socket
  return client.req?.socket
}

function remoteOf (client: Client): string | undefined {
  return socketOf(client)?.remoteAddress
}

function statusPayload (online: boolean, at: number): Buffer {
  return Buffer.from(`{"online":${online},"at":${at}}`)
}

export async function createBroker (deps: BrokerDeps): Promise<Broker> {
  const log = deps.logger.child({ component: 'broker' })
  const limits = deps.limits
  const sessions = new WeakMap<Client, Session>()
  const stats = { authFailures: 0, aclDenied: 0, oversized: 0, rateLimited: 0, refusedConnections: 0 }
  const servers: Server[] = []
  const perAddress = new Map<string, number>()
  const liveSockets = new Set<Socket>()
  const closedBytes = { in: 0, out: 0 }
  // per device, not per connection: reconnecting (or a second id:suffix session) must not refill the bucket
  const budgets = new Map<string, PublishBudget>()
  const forgetIdleBudgets = (): void => {
    const now = deps.clock.now()
    for (const [id, b] of budgets) if (!presence.isOnline(id) && b.idle(now)) budgets.delete(id)
  }
  const presence = new Presence((seen) => { forgetIdleBudgets(); deps.recordLastSeen?.(seen) }, (err) => log.error({ err }, 'could not write last-seen times; retrying'))

  const metrics = new BrokerMetrics({
    connectedDevices: () => presence.onlineCount,
    connectedClients: () => aedes.connectedClients,
    bytes: () => {
      let i = closedBytes.in; let o = closedBytes.out
      for (const s of liveSockets) { i += s.bytesRead; o += s.bytesWritten }
      return { in: i, out: o }
    },
  })

  const refuse = (code: ErrorCode, message: string, returnCode: number): AuthenticateError => {
    stats.authFailures++
    metrics.authFailures.inc()
    metrics.error(code)
    return authError(message, returnCode)
  }

  const aedes = await Aedes.createBroker({
    ...(deps.mq ? { mq: deps.mq } : {}),
    ...(deps.persistence ? { persistence: deps.persistence } : {}),
    heartbeatInterval: 60_000,
    connectTimeout: limits.connectTimeoutMs,
    drainTimeout: limits.drainTimeoutMs,
    keepaliveLimit: limits.keepaliveLimitS,
    maxTopicLevels: limits.maxTopicLevels,
    preConnect (client, _packet, done) {
      // counted per socket in handle(); refused here so the client sees the connection end at CONNECT
      const addr = remoteOf(client)
      if (limits.maxConnectionsPerAddress > 0 && addr && (perAddress.get(addr) ?? 0) > limits.maxConnectionsPerAddress) {
        stats.refusedConnections++
        metrics.error('VM_CONNECTION_LIMIT')
        log.info({ remote: addr, limit: limits.maxConnectionsPerAddress }, 'too many connections from one address; refused')
        return done(new Error(`VM_CONNECTION_LIMIT: more than ${limits.maxConnectionsPerAddress} connections from ${addr}`), false)
      }
      done(null, true)
    },
    authenticate (client, username, password, done) {
      const accept = (p: Principal): void => {
        if (p.kind === 'device') {
          // the last will marks the device offline (retained) when it vanishes without DISCONNECT,
          // also when this node dies: another node of the cluster publishes the wills of dead nodes
          ;(client as unknown as { _will: unknown })._will = { cmd: 'publish', topic: topics.deviceStatus(p.id), payload: statusPayload(false, deps.clock.now()), qos: 1, retain: true }
        }
        sessions.set(client, new Session(p, deps.clock.now()))
        done(null, true)
      }
      // mutual TLS: a CA-signed client certificate whose CN is the device id replaces the password
      const sock = socketOf(client)
      if (sock instanceof TLSSocket && sock.authorized && deps.authenticateCertificate) {
        const cn = sock.getPeerCertificate().subject?.CN
        const name = Array.isArray(cn) ? cn[0] : cn
        if (name && (!username || username === name)) {
          if (!clientIdMatches(client.id, name)) return done(refuse('VM_CLIENT_ID_MISMATCH', 'clientId must be the certificate CN (or CN:suffix)', 2), false)
          const p = deps.authenticateCertificate(name)
          if (p) return accept(p)
          log.info({ cn: name, remote: remoteOf(client) }, 'client certificate of an unknown or revoked device')
          return done(refuse('VM_AUTH_FAILED', 'unknown or revoked device', 5), false)
        }
      }
      if (!username || !password) return done(refuse('VM_AUTH_FAILED', 'username and password are required', 4), false)
      deps.authenticate(username, password.toString('utf8')).then((p) => {
        if (!p) {
          log.info({ username, remote: remoteOf(client) }, 'authentication failed')
          return done(refuse('VM_AUTH_FAILED', 'bad username or password', 4), false)
        }
        if (!clientIdMatches(client.id, username)) {
          log.info({ username, clientId: client.id }, 'clientId is not the authenticated identity')
          return done(refuse('VM_CLIENT_ID_MISMATCH', 'clientId must be the username (or username:suffix)', 2), false)
        }
        accept(p)
      }, (err: Error) => {
        log.error({ err }, 'authentication error')
        done(authError('server unavailable', 3), false)
      })
    },
    authorizePublish (client, packet, done) {
      const s = client ? sessions.get(client) : undefined
      if (!client && packet.topic.startsWith('devices/') && packet.topic.endsWith('/status')) {
        return done(null) // the stored will of a device whose node died, published by this node
      }
      const p = s?.principal
      if (!s || !p || !mayPublish(p, packet.topic)) {
        stats.aclDenied++
        metrics.error('VM_ACL_DENIED')
        log.info({ id: p?.id, topic: packet.topic }, 'publish refused; disconnecting')
        return done(new Error(`VM_ACL_DENIED: ${p?.id ?? 'unknown'} may not publish to ${packet.topic}`))
      }
      metrics.publishes.inc()
      if (p.kind === 'device' && parseVitalsTopic(packet.topic) === p.id) {
        const now = deps.clock.now()
        presence.seen(p.id, now)
        let budget = budgets.get(p.id)
        if (!budget) budgets.set(p.id, budget = new PublishBudget(limits.rate, now))
        const verdict = budget.take(now)
        if (verdict !== 'ok') {
          stats.rateLimited++
          if (verdict === 'abuse') {
            metrics.error('VM_RATE_LIMITED')
            log.warn({ id: p.id, ratePerS: limits.rate.ratePerS }, 'device keeps publishing over its rate limit; disconnecting')
            return done(new Error(`VM_RATE_LIMITED: ${p.id} keeps publishing over ${limits.rate.ratePerS}/s`))
          }
          // acknowledged but not stored, and answered with the seqs it carried: the device must send those readings again later
          const refused = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
          broker.replyError(p.id, withSeqs({ code: 'VM_RATE_LIMITED', message: `over the limit of ${limits.rate.ratePerS} messages/s (burst ${limits.rate.burst}); this message was not stored, send it again later` }, refused.length <= limits.maxPayloadBytes ? seqsOf(refused) : []))
          return done(null)
        }
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
        if (payload.length > limits.maxPayloadBytes) {
          stats.oversized++
          // acknowledged and answered, like any other invalid payload, so the device does not resend it forever
          broker.replyError(p.id, withSeqs({ code: 'VM_PAYLOAD_TOO_LARGE', message: `payload of ${payload.length} bytes exceeds the limit of ${limits.maxPayloadBytes} bytes` }, seqsOf(payload)))
          return done(null)
        }
        return deps.ingest(p, payload, (err) => done(err))
      }
      if (p.kind === 'resident' && packet.topic === topics.alertAck(p.id) && deps.acknowledge) {
        return deps.acknowledge(p, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), done)
      }
      if (p.kind === 'follower' && packet.topic === topics.followerAck(p.id) && deps.acknowledge) {
        return deps.acknowledge(p, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), done)
      }
      done(null)
    },
    authorizeSubscribe (client, sub, done) {
      const p = sessions.get(client)?.principal
      if (!p || !maySubscribe(p, sub.topic)) {
        stats.aclDenied++
        metrics.error('VM_ACL_DENIED')
        log.info({ id: p?.id, topic: sub.topic }, 'subscription refused')
        return done(null, null) // SUBACK 128
      }
      done(null, sub)
    },
  })

  aedes.on('clientReady', (client) => {
    const s = sessions.get(client)
    if (!s) return
    metrics.connects.inc()
    if (s.principal.kind === 'device' && presence.connected(s.principal.id, s.connectedAt)) {
      broker.publish(topics.deviceStatus(s.principal.id), statusPayload(true, s.connectedAt), 1, true).catch(() => {})
    }
  })
  aedes.on('clientDisconnect', (client) => {
    const s = sessions.get(client)
    if (!s || s.principal.kind !== 'device') return
    const now = deps.clock.now()
    if (presence.disconnected(s.principal.id, now)) {
      if (budgets.get(s.principal.id)?.idle(now)) budgets.delete(s.principal.id)
      broker.publish(topics.deviceStatus(s.principal.id), statusPayload(false, now), 1, true).catch(() => {})
    }
  })
  // aedes emits 'error' when its persistence fails (Redis unreachable in a cluster); without a
  // listener that would end the process, while the node can recover when the link returns
  ;(aedes as unknown as EventEmitter).on('error', (err: Error) => log.error({ err: err.message }, 'broker persistence error'))
  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'connection error'))

  function track (sock: Socket | undefined): void {
    if (!sock || liveSockets.has(sock)) return
    const addr = sock.remoteAddress
    liveSockets.add(sock)
    if (addr) perAddress.set(addr, (perAddress.get(addr) ?? 0) + 1)
    sock.once('close', () => {
      liveSockets.delete(sock)
      closedBytes.in += sock.bytesRead
      closedBytes.out += sock.bytesWritten
      if (addr) {
        const n = (perAddress.get(addr) ?? 1) - 1
        if (n <= 0) perAddress.delete(addr)
        else perAddress.set(addr, n)
      }
    })
  }

  // aedes keeps its sessions by clientId; the type declarations do not expose the map
  const clients = (): Record<string, Client> => (aedes as unknown as { clients: Record<string, Client> }).clients

  function sessionsOf (id: string): Client[] {
    const out: Client[] = []
    const all = clients()
    const exact = all[id]
    if (exact) out.push(exact)
    const prefix = id + ':'
    for (const cid in all) if (cid.startsWith(prefix)) out.push(all[cid]!)
    return out
  }

  const broker: Broker = {
    aedes,
    stats,
    metrics,
    presence,
    handle (stream, req) {
      track((stream as Socket).remoteAddress !== undefined ? stream as Socket : req?.socket)
      const client = aedes.handle(stream, req)
      guardPacketSize(client, limits.maxPayloadBytes + PACKET_OVERHEAD, (length) => {
        stats.oversized++
        metrics.error('VM_PAYLOAD_TOO_LARGE')
        log.info({ clientId: client.id, length }, 'packet over the size limit; disconnecting')
      })
    },
    listenTcp (host, port) {
      const server = createServer((socket) => broker.handle(socket))
      servers.push(server)
      return new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => { server.off('error', reject); resolve(server) })
      })
    },
    adopt (server) { servers.push(server) },
    publish (topic, payload, qos, retain = false) {
      return new Promise((resolve, reject) => {
        aedes.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false }, (err) => err ? reject(err) : resolve())
      })
    },
    replyError (deviceId, e) {
      metrics.error(e.code)
      aedes.publish({ cmd: 'publish', topic: topics.deviceErrors(deviceId), payload: errorPayload(e), qos: 1, retain: false, dup: false }, (err) => {
        if (err) log.warn({ err, deviceId }, 'could not publish a device error')
      })
    },
    disconnectIdentity (id, connectedBefore = Infinity) {
      let n = 0
      for (const c of sessionsOf(id)) {
        const s = sessions.get(c)
        if (s && s.connectedAt > connectedBefore) continue
        c.close()
        n++
      }
      if (n) log.info({ id, sessions: n }, 'credentials changed; sessions ended')
      return n
    },
    disconnectAll () {
      let n = 0
      const all = clients()
      for (const cid in all) { all[cid]!.close(); n++ }
      return n
    },
    async close () {
      for (const s of servers) s.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      presence.stop()
    },
  }
  return broker
}
