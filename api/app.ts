import Fastify, { LogController, type FastifyInstance, type FastifySchema, type FastifyReply, type FastifyRequest, type FastifyBaseLogger } from 'fastify'
import { WebSocketServer } from 'ws'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { openApiDocument } from './openapi.ts'
import { ReadingsQuery, ResidentParams } from './schemas.ts'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { zodValidatorCompiler, type ZodTypeProvider } from './zod.ts'
import { VitalmeshError, type ErrorCode, type Logger, type StoredReading } from '../core/index.ts'
import type { ApiKeyPrincipal, Role } from '../registry/index.ts'
import { mayAccessResident } from './access.ts'
import { LIVE_MAX_FRAME_BYTES, type LiveHub } from './live.ts'

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
  /** requests per minute per source address without a valid API key */
  anonymousRateLimitPerMinute?: number
  /** the per-address limiter, shared with the live stream's upgrades */
  anonymousLimiter?: KeyRateLimiter
  /** records a data access in the audit trail */
  audited?(actor: string, action: string, subject: string, detail: unknown): void
  /** the live stream at /v1/live */
  live?: LiveHub
  /** more routes, each in its own file (one function per audience or concern) */
  routes?: ((app: FastifyInstance) => void)[]
}


/**
 * A route as the app registered it, from its own options: who may call it (config.roles),
 * which resident, hospital... each role reaches (config.scope), and its schema (summary,
 * tags, the zod schemas of params, querystring and body, the body's content types). The
 * OpenAPI document is generated from these.
 */
export interface RegisteredRoute {
  method: string
  url: string
  roles: readonly Role[] | 'public'
  scope?: string
  schema?: FastifySchema
}

declare module 'fastify' {
  interface FastifyRequest { principal?: ApiKeyPrincipal }
  interface FastifyInstance { vitalmeshRoutes: RegisteredRoute[] }
  interface FastifyContextConfig {
    /**
     * Who may call the route: the roles whose API key it serves, checked by one hook on the
     * matched route (whatever spelling of the path reached it), or 'public' (no key). Every
     * /v1 route must declare it; the scope (which resident, hospital...) is checked by the handler.
     */
    roles?: readonly Role[] | 'public'
    /** which resident, hospital... a key of each role may reach, for the documentation (the handler checks it) */
    scope?: string
  }
}

/** A token bucket per key (an API key id, or a source address): `perMinute` requests a minute, refilled continuously. */
export class KeyRateLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly perMinute: number) {}
  take (key: string): boolean {
    const now = Date.now()
    const b = this.buckets.get(key) ?? { tokens: this.perMinute, at: now }
    b.tokens = Math.min(this.perMinute, b.tokens + ((now - b.at) / 60_000) * this.perMinute)
    b.at = now
    // full buckets are forgotten, so a scan of many addresses does not grow the map for ever
    if (b.tokens >= this.perMinute - 1 && this.buckets.size > 10_000) this.buckets.delete(key)
    else this.buckets.set(key, b)
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

/** The code of a 4xx that is not a VitalmeshError (fastify's own: body parser, content type, ...), by its status. */
const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: 'VM_BAD_REQUEST', 401: 'VM_UNAUTHORIZED', 403: 'VM_FORBIDDEN', 404: 'VM_NOT_FOUND', 409: 'VM_CONFLICT',
  413: 'VM_PAYLOAD_TOO_LARGE', 414: 'VM_URI_TOO_LONG', 415: 'VM_UNSUPPORTED_MEDIA_TYPE', 429: 'VM_RATE_LIMITED',
}

/** JSON bodies nest at most this deep: walking a 50,000-deep array (validation, JSON.stringify) overflows the stack. */
export const MAX_JSON_DEPTH = 64

/** The nesting depth of a parsed JSON value, without recursion; stops counting past `limit`. */
export function jsonDepth (value: unknown, limit = MAX_JSON_DEPTH): number {
  let max = 0
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length) {
    const [v, d] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (d > max) { max = d; if (max > limit) return max }
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (x !== null && typeof x === 'object') stack.push([x, d + 1])
  }
  return max
}

export function buildApi (deps: ApiDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'api' }) as FastifyBaseLogger,
    // one log line per request would dominate the log of a busy node; errors are still logged
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // a path fastify cannot decode or a parameter too long to route: answered here, not in fastify's own shape
    frameworkErrors: (err, _req, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400
      const code = CODE_BY_STATUS[status] ?? 'VM_BAD_REQUEST'
      void (reply as FastifyReply).status(status).send({ code, message: code === 'VM_URI_TOO_LONG' ? 'a path parameter is longer than 100 characters' : 'the path is not valid percent-encoded UTF-8' })
    },
  })

  const jsonParser = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    jsonParser(req, body as string, (err, value) => {
      if (err) return done(err)
      if (jsonDepth(value) > MAX_JSON_DEPTH) return done(new VitalmeshError('VM_BAD_REQUEST', `the JSON body nests deeper than ${MAX_JSON_DEPTH} levels`))
      done(null, value)
    })
  })

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof VitalmeshError) return reply.status(err.status).send(err.toJSON())
    const e = err as { statusCode?: number, message: string, code?: string }
    if (e.statusCode === 413) return reply.status(413).send({ code: 'VM_PAYLOAD_TOO_LARGE', message: 'the request body exceeds the limit of this route (1 MiB unless its documentation says otherwise)' })
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return reply.status(e.statusCode).send({ code: CODE_BY_STATUS[e.statusCode] ?? 'VM_BAD_REQUEST', message: e.message })
    req.log.error({ err }, 'request failed')
    return reply.status(500).send({ code: 'VM_INTERNAL', message: 'internal error; see the server log' })
  })
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'VM_NOT_FOUND', message: `no route ${req.method} ${req.url}` }))

  // params, querystring and body checked against the route's zod schemas (400 VM_BAD_REQUEST)
  app.setValidatorCompiler(zodValidatorCompiler)

  // every route with its own options (roles, scope, schema), so a test can check that each one
  // enforces role and scope, and the OpenAPI document is generated from them
  const routes: RegisteredRoute[] = []
  app.addHook('onRoute', (r) => {
    const config = r.config as { roles?: readonly Role[] | 'public', scope?: string } | undefined
    const roles = config?.roles
    // refused at start: a /v1 route that does not say who may call it
    if (roles === undefined && r.url.startsWith('/v1/')) throw new Error(`route ${String(r.method)} ${r.url} declares no config.roles`)
    for (const m of [r.method].flat()) {
      if (m !== 'HEAD') routes.push({ method: m, url: r.url, roles: roles ?? 'public', ...(config?.scope ? { scope: config.scope } : {}), ...(r.schema ? { schema: r.schema } : {}) })
    }
  })
  app.decorate('vitalmeshRoutes', routes)

  app.decorateRequest('principal', undefined)
  const perKey = deps.rateLimitPerMinute ?? 600
  const perAddress = deps.anonymousRateLimitPerMinute ?? 600
  const limiter = new KeyRateLimiter(perKey)
  const anonymous = deps.anonymousLimiter ?? new KeyRateLimiter(perAddress)
  const limitAddress = (req: FastifyRequest, reply: FastifyReply): void => {
    const ip = req.ip
    if (!anonymous.take(ip)) {
      reply.header('retry-after', String(anonymous.retryAfterS(ip)))
      throw new VitalmeshError('VM_RATE_LIMITED', `more than ${perAddress} requests a minute without a valid API key from this address; retry later`)
    }
  }
  // authentication and role on the route that matched (req.routeOptions), not on the raw URL:
  // `/%761/...` and `/v%31/...` reach the same handler as `/v1/...`
  app.addHook('onRequest', async (req, reply) => {
    const roles = req.routeOptions.config?.roles
    if (roles === undefined || roles === 'public') return limitAddress(req, reply)
    const token = bearer(req)
    const p = token ? deps.verifyApiKey(token) : undefined
    if (!p) {
      limitAddress(req, reply)
      throw new VitalmeshError('VM_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"')
    }
    req.principal = p
    if (!limiter.take(p.keyId)) {
      reply.header('retry-after', String(limiter.retryAfterS(p.keyId)))
      throw new VitalmeshError('VM_RATE_LIMITED', `more than ${perKey} requests a minute with this key; retry later`)
    }
    if (!roles.includes(p.role)) throw new VitalmeshError('VM_FORBIDDEN', `this route is for ${roles.join(' or ')} keys`)
  })

  app.get('/healthz', { config: { roles: 'public' } }, async () => ({ status: 'ok' }))
  app.get('/readyz', { config: { roles: 'public' } }, async (_req, reply) => {
    const checks = await deps.readiness()
    const ready = Object.values(checks).every((v) => v === 'ok')
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks })
  })

  app.withTypeProvider<ZodTypeProvider>().get('/v1/residents/:id/readings', {
    schema: {
      summary: "A resident's readings in [from, to); windows (mean, min, max) for long ranges with maxPoints",
      tags: ['residents'],
      params: ResidentParams,
      querystring: ReadingsQuery,
    },
    config: { roles: ['operator', 'resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
  }, async (req) => {
    const id = req.params.id
    const p = req.principal!
    if (!mayAccessResident(p, id, deps.hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the readings of resident ${id}`)
    if (!deps.residentExists(id)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} is not registered`)
    const q = req.query
    const to = q.to ?? Date.now()
    const from = q.from ?? to - 24 * 3600_000
    if (from > to) throw new VitalmeshError('VM_BAD_REQUEST', 'from must not be after to')
    const maxPoints = q.maxPoints
    if (maxPoints !== undefined && to - from > maxPoints * 60_000) {
      // a long range: windows, not raw readings (a month of 1-minute readings is 43,200 points)
      const windowMs = Math.ceil((to - from) / maxPoints / 60_000) * 60_000
      const windows = await deps.aggregateReadings(id, from, to, windowMs)
      if (p.role !== 'resident') deps.audited?.(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.readings', id, { from, to, windowMs, windows: windows.length })
      return { residentId: id, from, to, downsampled: true, windowMs, count: windows.length, windows }
    }
    const readings = await deps.queryReadings(id, from, to, q.limit)
    if (p.role !== 'resident') deps.audited?.(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.readings', id, { from, to, count: readings.length })
    return { residentId: id, from, to, downsampled: false, count: readings.length, readings }
  })

  for (const register of deps.routes ?? []) register(app)

  // OpenAPI 3, generated from the route table and the zod schemas, with Swagger UI at /docs;
  // filled in once every plugin has registered its routes
  const document: Record<string, unknown> = openApiDocument(routes)
  app.addHook('onReady', async () => { Object.assign(document, openApiDocument(routes)) })
  app.get('/openapi.json', { config: { roles: 'public' } }, async () => document)
  app.register(swagger, { mode: 'static', specification: { document: document as never } })
  app.register(swaggerUi, { routePrefix: '/docs' })

  // MQTT over WebSocket on the HTTP port, at /mqtt
  const liveWss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: LIVE_MAX_FRAME_BYTES })
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0]
    if (path === '/v1/live' && deps.live) {
      const ip = req.socket.remoteAddress ?? ''
      if (!anonymous.take(ip)) {
        socket.end(`HTTP/1.1 429 Too Many Requests\r\nretry-after: ${anonymous.retryAfterS(ip)}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`)
        return
      }
      liveWss.handleUpgrade(req, socket, head, (ws) => deps.live!.attach(ws, ip))
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
