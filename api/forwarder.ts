import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Registry, Role, AuditLog } from '../registry/index.ts'
import { checkRollup, type Aggregator, type Outbox, type RegionRollup, type WindowKind } from '../forwarder/index.ts'
export { RollupSchema } from '../forwarder/index.ts'

export interface ForwarderRoutesDeps {
  registry: Registry
  aggregator: Aggregator
  outbox: Outbox
  audit: AuditLog
  region: { id: string, level: string }
  windows: WindowKind[]
  /** region keys (other nodes) read aggregates without windows of fewer own residents than this */
  rollupK?: number
  residentChanged(residentId: string): void
}

export const ApiKeyBody = z.strictObject({
  role: z.enum(['operator', 'resident', 'hospital', 'research', 'region']),
  scope: z.string().min(1).max(64).nullable().default(null),
  label: z.string().max(200).optional(),
})

function bad (issues: z.core.$ZodIssue[]): VitalmeshError {
  return new VitalmeshError('VM_BAD_REQUEST', issues.slice(0, 5).map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
}

/** Federation (parent region), region aggregates, the outbox's dead letters, API keys, consent. */
export function forwarderRoutes (d: ForwarderRoutesDeps) {
  return (app: FastifyInstance): void => {
    app.post('/v1/federation/rollups', { config: { roles: ['region'] } }, async (req, reply) => {
      const p = req.principal!
      const region = (req.body as { region?: unknown } | null)?.region
      if (typeof region === 'string' && region !== p.scope) throw new VitalmeshError('VM_FORBIDDEN', `this key speaks for region ${p.scope}, not ${region}`)
      const r = checkRollup(req.body, d.windows)
      if (!r.ok) throw new VitalmeshError('VM_INVALID_ROLLUP', r.message)
      if (r.rollup.region !== p.scope) throw new VitalmeshError('VM_FORBIDDEN', `this key speaks for region ${p.scope}, not ${r.rollup.region}`)
      if (!d.aggregator.receiveRollup(r.rollup as RegionRollup)) throw new VitalmeshError('VM_INVALID_ROLLUP', 'the roll-up was not accepted')
      return reply.status(202).send({ accepted: true, region: r.rollup.region, window: r.rollup.window, version: r.rollup.version })
    })

    app.get<{ Params: { id: string }, Querystring: { window?: string, from?: string, to?: string } }>('/v1/regions/:id/aggregates', { config: { roles: ['operator', 'region'] } }, async (req) => {
      const p = req.principal!
      if (req.params.id !== d.region.id) throw new VitalmeshError('VM_NOT_FOUND', `this node serves region ${d.region.id}`)
      if (p.role === 'region' && p.scope !== d.region.id) throw new VitalmeshError('VM_FORBIDDEN', 'this key is for another region')
      const names = d.windows.map((w) => w.name)
      const kind = req.query.window ?? names[0]!
      if (!names.includes(kind)) throw new VitalmeshError('VM_BAD_REQUEST', `window must be one of ${names.join(', ')}`)
      const to = Number(req.query.to ?? Date.now())
      const from = Number(req.query.from ?? to - 7 * 86400_000)
      if (!Number.isFinite(from) || !Number.isFinite(to)) throw new VitalmeshError('VM_BAD_REQUEST', 'from and to are epoch milliseconds')
      // another node (a region key) gets what a roll-up would carry: no window of fewer own residents than rollupK
      return { region: d.region, window: kind, aggregates: d.aggregator.regionAggregates(kind, from, to, p.role === 'region' ? d.rollupK ?? 1 : 1) }
    })

    app.get('/v1/outbox/dead', { config: { roles: ['operator'] } }, async (req) => {
      return { deadLetters: d.outbox.deadLetters() }
    })

    app.post<{ Querystring: { sink?: string } }>('/v1/outbox/redrive', { config: { roles: ['operator'] } }, async (req) => {
      const n = d.outbox.redrive(req.query.sink)
      d.audit.append(`operator:${req.principal!.keyId}`, 'outbox.redrive', req.query.sink ?? 'all', { count: n })
      req.log.info({ sink: req.query.sink ?? 'all', count: n }, 'dead letters re-driven')
      return { redriven: n }
    })

    app.post('/v1/api-keys', { config: { roles: ['operator'] } }, async (req, reply) => {
      const p = req.principal!
      const r = ApiKeyBody.safeParse(req.body)
      if (!r.success) throw bad(r.error.issues)
      // the scope names something registered, checked before anything is written; the key and its audit entry in one transaction
      const problem = d.registry.scopeProblem(r.data.role as Role, r.data.scope)
      if (problem) throw problem
      const { key, id } = d.registry.atomically(() => {
        const key = d.registry.addApiKey(r.data.role as Role, r.data.scope, r.data.label ?? `by ${p.keyId}`)
        const id = key.split('_')[1]!
        d.audit.append(`operator:${p.keyId}`, 'api-key.created', id, { role: r.data.role, scope: r.data.scope })
        return { key, id }
      })
      return reply.status(201).send({ id, key, role: r.data.role, scope: r.data.scope })
    })

    app.get('/v1/api-keys', { config: { roles: ['operator'] } }, async (req) => {
      return { keys: d.registry.apiKeys() }
    })

    app.delete<{ Params: { id: string } }>('/v1/api-keys/:id', { config: { roles: ['operator'] } }, async (req) => {
      const p = req.principal!
      d.registry.atomically(() => {
        if (!d.registry.revokeApiKey(req.params.id)) throw new VitalmeshError('VM_NOT_FOUND', `no active API key ${req.params.id}`)
        d.audit.append(`operator:${p.keyId}`, 'api-key.revoked', req.params.id)
      })
      return { id: req.params.id, revoked: true }
    })

    app.get<{ Querystring: { after?: string, limit?: string } }>('/v1/audit', { config: { roles: ['operator'] } }, async (req) => {
      const after = Math.max(0, Number(req.query.after ?? 0) || 0)
      const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100))
      return { entries: d.audit.list(after, limit) }
    })

    app.get('/v1/audit/verify', { config: { roles: ['operator'] } }, async (req) => {
      return d.audit.verify()
    })

    app.put<{ Params: { id: string } }>('/v1/residents/:id/consent', { config: { roles: ['resident'] } }, async (req) => {
      const p = req.principal!
      if (p.scope !== req.params.id) throw new VitalmeshError('VM_FORBIDDEN', 'residents set only their own consent')
      const r = z.strictObject({ research: z.boolean() }).safeParse(req.body)
      if (!r.success) throw bad(r.error.issues)
      d.registry.atomically(() => {
        d.registry.updateResident(req.params.id, { researchConsent: r.data.research })
        d.audit.append(`resident:${p.scope}`, 'resident.consent', req.params.id, { research: r.data.research })
      })
      d.residentChanged(req.params.id)
      return { residentId: req.params.id, research: r.data.research }
    })
  }
}
