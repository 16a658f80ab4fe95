import { z } from 'zod'
import { ErrorCodes } from '../core/index.ts'
import type { RegisteredRoute } from './app.ts'

const json = (s: z.ZodType): Record<string, unknown> => z.toJSONSchema(s, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>

const isZod = (s: unknown): s is z.ZodType => s instanceof z.ZodType

/**
 * OpenAPI 3 for the routes the app registered, each from its own options: `schema.summary`,
 * `schema.tags`, the zod schemas of `schema.params`, `.querystring` and `.body`, the body's
 * content types (`schema.consumes`, default JSON), `config.roles` and `config.scope`.
 */
export function openApiDocument (routes: readonly RegisteredRoute[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const r of routes) {
    if (!r.url.startsWith('/v1/')) continue
    const s = r.schema ?? {}
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}')
    const paramSchemas = (isZod(s.params) ? json(s.params).properties ?? {} : {}) as Record<string, unknown>
    const params = [...r.url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: paramSchemas[m[1]!] ?? { type: 'string' } }))
    const query = isZod(s.querystring) ? Object.entries((json(s.querystring).properties ?? {}) as Record<string, unknown>).map(([name, schema]) => ({ name, in: 'query', required: false, schema })) : []
    const op: Record<string, unknown> = {
      summary: s.summary ?? r.url,
      description: Array.isArray(r.roles) ? `Who may call it: ${r.roles.join(', ')}${r.scope ? `; scope: ${r.scope}` : ''}.` : undefined,
      tags: s.tags ?? ['other'],
      security: [{ apiKey: [] }],
      parameters: [...params, ...query],
      responses: {
        200: { description: 'OK' },
        ...Object.fromEntries([...new Set(Object.values(ErrorCodes).map((e) => e.status))].map((st) => [st, { description: Object.entries(ErrorCodes).filter(([, e]) => e.status === st).map(([c]) => c).join(', '), content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }])),
      },
    }
    const types = s.consumes ?? ['application/json']
    if (isZod(s.body)) op.requestBody = { required: true, content: Object.fromEntries(types.map((t) => [t, { schema: json(s.body as z.ZodType) }])) }
    else if (s.consumes) op.requestBody = { required: true, content: Object.fromEntries(types.map((t) => [t, {}])) }
    ;(paths[path] ??= {})[r.method.toLowerCase()] = op
  }
  return {
    openapi: '3.0.3',
    info: { title: 'vitalmesh API', version: '0.1.0', description: 'Wearable vital-sign telemetry. Send an API key as `Authorization: Bearer vm_...`. Errors are `{code, message}`; the codes are listed in docs/errors.md. Live stream: WebSocket `/v1/live`. MQTT over WebSocket: `/mqtt`.' },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'vm_<id>_<secret>' } },
      schemas: { Error: { type: 'object', properties: { code: { type: 'string', enum: Object.keys(ErrorCodes) }, message: { type: 'string' } }, required: ['code', 'message'] } },
    },
    paths,
  }
}
