import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyBaseLogger } from 'fastify'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'
import { z } from 'zod'
import { VitalmeshError, IdSchema, type Logger, type StoredReading } from '../core/index.ts'
import type { ApiKeyPrincipal } from '../registry/index.ts'

export interface ApiDeps {
  logger: Logger
  verifyApiKey(token: string): ApiKeyPrincipal | undefined
  queryReadings(residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]>
  residentExists(id: string): boolean
  /** the checks behind /readyz: each throws when its part is not ready */
  readiness(): Promise<Record<string, 'ok' | string>>
  /** MQTT over WebSocket: hands the stream of an upgraded `/mqtt` request to the broker */
  mqttOverWebSocket(stream: Duplex, req: IncomingMessage): void
  /** more routes, each in its own file (api/devices.ts, api/metrics.ts, ...) */
  routes?: ((app: FastifyInstance) => void)[]
}

const ReadingsQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional().describe('epoch ms, inclusive; default: 24 h ago'),
  to: z.coerce.number().int().min(0).optional().describe('epoch ms, exclusive; default: now'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
})

declare module 'fastify' {
  interface FastifyRequest { principal?: ApiKeyPrincipal }
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
    if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send({ code: 'VM_BAD_REQUEST', message: e.message })
    req.log.error({ err }, 'request failed')
    return reply.status(500).send({ code: 'VM_INTERNAL', message: 'internal error; see the server log' })
  })
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ code: 'VM_NOT_FOUND', message: `no route ${req.method} ${req.url}` }))

  app.decorateRequest('principal', undefined)
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/v1/')) return
    const token = bearer(req)
    const p = token ? deps.verifyApiKey(token) : undefined
    if (!p) throw new VitalmeshError('VM_UNAUTHORIZED', 'send a valid API key as "Authorization: Bearer <key>"')
    req.principal = p
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
    const allowed = p.role === 'operator' || (p.role === 'resident' && p.scope === id.data)
    if (!allowed) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the readings of resident ${id.data}`)
    const q = ReadingsQuery.safeParse(req.query)
    if (!q.success) throw new VitalmeshError('VM_BAD_REQUEST', q.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '))
    if (!deps.residentExists(id.data)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id.data} is not registered`)
    const to = q.data.to ?? Date.now()
    const from = q.data.from ?? to - 24 * 3600_000
    if (from > to) throw new VitalmeshError('VM_BAD_REQUEST', 'from must not be after to')
    const readings = await deps.queryReadings(id.data, from, to, q.data.limit)
    return { residentId: id.data, from, to, count: readings.length, readings }
  })

  for (const register of deps.routes ?? []) register(app)

  // MQTT over WebSocket on the HTTP port, at /mqtt
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/mqtt') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => stream.destroy())
      deps.mqttOverWebSocket(stream, req)
    })
  })
  app.addHook('onClose', async () => {
    for (const c of wss.clients) c.terminate()
    wss.close()
  })
  return app
}
