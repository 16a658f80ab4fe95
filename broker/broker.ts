import { createServer, type Server } from 'node:net'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { Aedes, type Client, type AuthenticateError } from 'aedes'
import { parseVitalsTopic, topics, type Logger, type ReadingError } from '../core/index.ts'
import type { Principal } from '../registry/index.ts'
import { mayPublish, maySubscribe, clientIdMatches, errorPayload } from './acl.ts'
import { guardPacketSize } from './packet-guard.ts'

export interface BrokerDeps {
  logger: Logger
  authenticate(username: string, password: string): Promise<Principal | undefined>
  /** ingest one vitals payload; calls back once durable (or with an error: no PUBACK) */
  ingest(device: { id: string, deviceKey: number, residentId: string }, payload: Buffer, done: (err: Error | null) => void): void
  maxPayloadBytes: number
  /** a resident acknowledges an alert over MQTT */
  acknowledge?(residentId: string, payload: Buffer, done: (err: Error | null) => void): void
}

/** An MQTT PUBLISH header plus topic and message id fit well within this. */
const PACKET_OVERHEAD = 2 + 256 + 2

export interface Broker {
  aedes: Aedes
  /** attach one transport connection (TCP socket or WebSocket stream) */
  handle(stream: Duplex, req?: IncomingMessage): void
  listenTcp(host: string, port: number): Promise<Server>
  publish(topic: string, payload: Buffer, qos: 0 | 1, retain?: boolean): Promise<void>
  replyError(deviceId: string, e: ReadingError): void
  readonly stats: { authFailures: number, aclDenied: number, oversized: number }
  close(): Promise<void>
}

function authError (message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

export async function createBroker (deps: BrokerDeps): Promise<Broker> {
  const log = deps.logger.child({ component: 'broker' })
  const who = new WeakMap<Client, Principal>()
  const stats = { authFailures: 0, aclDenied: 0, oversized: 0 }
  const servers: Server[] = []

  const aedes = await Aedes.createBroker({
    heartbeatInterval: 60_000,
    connectTimeout: 10_000,
    drainTimeout: 30_000,
    maxTopicLevels: 16,
    authenticate (client, username, password, done) {
      if (!username || !password) {
        stats.authFailures++
        return done(authError('username and password are required', 4), false)
      }
      deps.authenticate(username, password.toString('utf8')).then((p) => {
        if (!p) {
          stats.authFailures++
          log.info({ username, remote: remoteOf(client) }, 'authentication failed')
          return done(authError('bad username or password', 4), false)
        }
        if (!clientIdMatches(client.id, username)) {
          stats.authFailures++
          log.info({ username, clientId: client.id }, 'clientId is not the authenticated identity')
          return done(authError('clientId must be the username (or username:suffix)', 2), false)
        }
        who.set(client, p)
        done(null, true)
      }, (err: Error) => {
        log.error({ err }, 'authentication error')
        done(authError('server unavailable', 3), false)
      })
    },
    authorizePublish (client, packet, done) {
      const p = client && who.get(client)
      if (!p || !mayPublish(p, packet.topic)) {
        stats.aclDenied++
        log.info({ id: p?.id, topic: packet.topic }, 'publish refused; disconnecting')
        return done(new Error(`VM_ACL_DENIED: ${p?.id ?? 'unknown'} may not publish to ${packet.topic}`))
      }
      if (p.kind === 'device' && parseVitalsTopic(packet.topic) === p.id) {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
        if (payload.length > deps.maxPayloadBytes) {
          stats.oversized++
          // acknowledged and answered, like any other invalid payload, so the device does not resend it forever
          broker.replyError(p.id, { code: 'VM_PAYLOAD_TOO_LARGE', message: `payload of ${payload.length} bytes exceeds the limit of ${deps.maxPayloadBytes} bytes` })
          return done(null)
        }
        return deps.ingest(p, payload, (err) => done(err))
      }
      if (p.kind === 'resident' && packet.topic === topics.alertAck(p.id) && deps.acknowledge) {
        return deps.acknowledge(p.id, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), done)
      }
      done(null)
    },
    authorizeSubscribe (client, sub, done) {
      const p = who.get(client)
      if (!p || !maySubscribe(p, sub.topic)) {
        stats.aclDenied++
        log.info({ id: p?.id, topic: sub.topic }, 'subscription refused')
        return done(null, null) // SUBACK 128
      }
      done(null, sub)
    },
  })

  aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'connection error'))

  function remoteOf (client: Client): string | undefined {
    const c = client.conn as { remoteAddress?: string }
    return c.remoteAddress ?? client.req?.socket.remoteAddress
  }

  const broker: Broker = {
    aedes,
    stats,
    handle (stream, req) {
      const client = aedes.handle(stream, req)
      guardPacketSize(client, deps.maxPayloadBytes + PACKET_OVERHEAD, (length) => {
        stats.oversized++
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
    publish (topic, payload, qos, retain = false) {
      return new Promise((resolve, reject) => {
        aedes.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false }, (err) => err ? reject(err) : resolve())
      })
    },
    replyError (deviceId, e) {
      aedes.publish({ cmd: 'publish', topic: topics.deviceErrors(deviceId), payload: errorPayload(e), qos: 1, retain: false, dup: false }, (err) => {
        if (err) log.warn({ err, deviceId }, 'could not publish a device error')
      })
    },
    async close () {
      for (const s of servers) s.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
  return broker
}
