import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { VitalmeshError, type Logger } from '../core/index.ts'
import type { ApiKeyPrincipal } from '../registry/index.ts'

/**
 * `/metrics` in Prometheus text format. Open by default, as scrapers expect (it shows
 * counts, no personal data); `metrics.requireApiKey` makes it need an operator key.
 */
export function registerMetricsRoute (app: FastifyInstance, registries: Registry[], opts: { requireApiKey: boolean, verifyApiKey(token: string): ApiKeyPrincipal | undefined, logger: Logger }): void {
  app.get('/metrics', { config: { roles: 'public' } }, async (req, reply) => {
    if (opts.requireApiKey) {
      const h = req.headers.authorization
      const p = h?.startsWith('Bearer ') ? opts.verifyApiKey(h.slice(7).trim()) : undefined
      if (!p) throw new VitalmeshError('VM_UNAUTHORIZED', 'send an operator API key as "Authorization: Bearer <key>"')
      if (p.role !== 'operator') throw new VitalmeshError('VM_FORBIDDEN', 'only an operator API key may read /metrics')
    }
    const text = (await Promise.all(registries.map((r) => r.metrics()))).join('\n')
    return reply.header('content-type', registries[0]?.contentType ?? 'text/plain; version=0.0.4').send(text)
  })
}
