import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyBaseLogger } from 'fastify'
import { WebSocketServer } from 'ws'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { openApiDocument } from './openapi.ts'
import { ReadingsQuery } from './schemas.ts'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { VitalmeshError, IdSchema, type Logger, type StoredReading } from '../core/index.ts'
import type { ApiKeyPrincipal } from '../registry/index.ts'
import { mayAccessResident } from './access.ts'
import type { LiveHub } from './live.ts'

export interface ApiDeps {
  logger: Logger
  verifyApiKey(token: string): ApiKeyPrincipal | undefined
  queryReadings(residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]>
  /** windows of a resident's readings (mean, min, max), for long ranges */
  aggregateReadings(residentId: string, from: number, to: number, windowMs: number): Promise<unknown[]>
  residentExists(id: string): boolean
  /** the hospital caring for a resident, for scope checks */
  hospitalOf(residentId: string): string | null | undefined
  /** the checks behind /readyz: each throws when its part is not ready */
  readiness(): Promise<Record<string, 'ok' | string>>
  /** MQTT over WebSocket: takes every upgrade request but /v1/live (the broker serves `/mqtt`, 404 otherwise) */
  mqttUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** requests per minute per API key (token bucket; bursts up to the same number) */
  rateLimitPerMinute?: number
  /** records a data access in the audit trail */
  audited?(actor: string, action: string, subject: string, detail: unknown): void
  /** the live stream at /v1/live */
  live?: LiveHub
  /** more routes, each in its own file (one function per audience or concern) */
  routes?: ((app: FastifyInstance) => void)[]
}


declare module 'fastify' {
  interface FastifyRequest { principal?: ApiKeyPrincipal }
  interface FastifyInstance { vitalmeshRoutes: { method: string, url: string }[] }
}

/** A token bucket per API key: `perMinute` requests a minute, refilled continuously. */
class KeyRateLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly perMinute: number) {}
  take (key: string): boolean {
    const now = Date.now()
    const b = this.buckets.get(key) ?? { tokens: this.perMinute, at: now }
    b.tokens = Math.min(this.perMinute, b.tokens + ((now - b.at) / 60_000) * this.perMinute)
    b.at = now
    this.buckets.set(key, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
  retryAfterS (key: string): number {
    const b = this.buckets.get(key)
    return b ? Math.max(1, Math.ceil(((1 - b.tokens) / this.perMinute) * 60)) : 1
  }
}

function bearer (req: FastifyRequest): string | undefined {
  const h = req.headers.authorization
  return h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined
}

export function buildApi (deps: ApiDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'api' }) as FastifyBaseLogger,
    // one log line per request would dominate the log of a busy node; errors are still logged
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
  })

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof VitalmeshError) return reply.status(err.status).send(err.toJSON())
    const e = err as { statusCode?: number, message: string, code?: string }
    if (e.statusCode === 413) return reply.status(413).send({ code: 'VM_PAYLOAD_TOO_LARGE', message: 'the request body exceeds the 1 MiB limit' })
    if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send({ code: 'VM_BAD_REQUEST', message: e.message })
    req.log.error({ err }, 'request failed')
    return reply.status(500).send({ code: 'VM_INTERNAL', message: 'internal error; see the server log' })
  })
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'VM_NOT_FOUND', message: `no route ${req.method} ${req.url}` }))

  // every route, so a test can check that each one enforces role and scope
  const routes: { method: string, url: string }[] = []
  app.addHook('onRoute', (r) => { for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push({ method: m, url: r.url }) })
  app.decorate('vitalmeshRoutes', routes)

  app.decorateRequest('principal', undefined)
  const limiter = new KeyRateLimiter(deps.rateLimitPerMinute ?? 600)
  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/v1/')) return
    const token = bearer(req)
    const p = token ? deps.verifyApiKey(token) : undefined
    if (!p) throw new VitalmeshError('VM_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"')
    req.principal = p
    if (!limiter.take(p.keyId)) {
      reply.header('retry-after', String(limiter.retryAfterS(p.keyId)))
      throw new VitalmeshError('VM_RATE_LIMITED', `more than ${deps.rateLimitPerMinute ?? 600} requests a minute with this key; retry later`)
    }
  })

  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_req, reply) => {
    const checks = await deps.readiness()
    const ready = Object.values(checks).every((v) => v === 'ok')
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks })
  })

  app.get<{ Params: { id: string } }>('/v1/residents/:id/readings', async (req) => {
    const id = IdSchema.safeParse(req.params.id)
    if (!id.success) throw new VitalmeshError('VM_BAD_REQUEST', 'resident id: ' + id.error.issues[0]!.message)
    const p = req.principal!
    if (!mayAccessResident(p, id.data, deps.hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the readings of resident ${id.data}`)
    const q = ReadingsQuery.safeParse(req.query)
    if (!q.success) throw new VitalmeshError('VM_BAD_REQUEST', q.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '))
    if (!deps.residentExists(id.data)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id.data} is not registered`)
    const to = q.data.to ?? Date.now()
    const from = q.data.from ?? to - 24 * 3600_000
    if (from > to) throw new VitalmeshError('VM_BAD_REQUEST', 'from must not be after to')
    const maxPoints = q.data.maxPoints
    if (maxPoints !== undefined && to - from > maxPoints * 60_000) {
      // a long range: windows, not raw readings (a month of 1-minute readings is 43,200 points)
      const windowMs = Math.ceil((to - from) / maxPoints / 60_000) * 60_000
      const windows = await deps.aggregateReadings(id.data, from, to, windowMs)
      if (p.role !== 'resident') deps.audited?.(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.readings', id.data, { from, to, windowMs, windows: windows.length })
      return { residentId: id.data, from, to, downsampled: true, windowMs, count: windows.length, windows }
    }
    const readings = await deps.queryReadings(id.data, from, to, q.data.limit)
    if (p.role !== 'resident') deps.audited?.(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.readings', id.data, { from, to, count: readings.length })
    return { residentId: id.data, from, to, downsampled: false, count: readings.length, readings }
  })

  for (const register of deps.routes ?? []) register(app)

  // OpenAPI 3, generated from the route table and the zod schemas, with Swagger UI at /docs;
  // filled in once every plugin has registered its routes
  const document: Record<string, unknown> = openApiDocument(routes)
  app.addHook('onReady', async () => { Object.assign(document, openApiDocument(routes)) })
  app.get('/openapi.json', async () => document)
  app.register(swagger, { mode: 'static', specification: { document: document as never } })
  app.register(swaggerUi, { routePrefix: '/docs' })

  // MQTT over WebSocket on the HTTP port, at /mqtt
  const liveWss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 })
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0]
    if (path === '/v1/live' && deps.live) {
      liveWss.handleUpgrade(req, socket, head, (ws) => deps.live!.attach(ws))
      return
    }
    deps.mqttUpgrade(req, socket, head)
  })
  app.addHook('onClose', async () => {
    deps.live?.close()
    liveWss.close()
  })
  return app
}
