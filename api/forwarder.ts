import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Registry, Role, AuditLog, AuditTrail } from '../registry/index.ts'
import { checkRollup, type Aggregator, type Outbox, type RegionRollup, type WindowKind, type WindowReads } from '../forwarder/index.ts'
import { RollupSchema } from '../forwarder/index.ts'
import type { ZodTypeProvider } from './zod.ts'
export { RollupSchema }

export interface ForwarderRoutesDeps {
  registry: Registry
  aggregator: Aggregator
  /** cluster mode: windows are read from the cluster's copy of every node's (default: the aggregator's) */
  windowReads?: WindowReads
  outbox: Outbox
  audit: AuditLog
  /** what /v1/audit reads: this node's trail (default), or in cluster mode the cluster's one chain */
  auditTrail?: AuditTrail
  region: { id: string, level: string }
  windows: WindowKind[]
  /** region keys (other nodes) read aggregates without windows of fewer own residents than this */
  rollupK?: number
  residentChanged(residentId: string): void
  /** an API key was revoked here: in a cluster, the other nodes are told at once, not at the next credential poll */
  keyRevoked?(): void
}

export const ApiKeyBody = z.strictObject({
  role: z.enum(['operator', 'resident', 'hospital', 'research', 'region']),
  scope: z.string().min(1).max(64).nullable().default(null),
  label: z.string().max(200).optional(),
})

export const ConsentBody = z.strictObject({ research: z.boolean() })

const OPERATOR = { roles: ['operator'] as const }

/** Federation (parent region), region aggregates, the outbox's dead letters, API keys, consent. */
export function forwarderRoutes (d: ForwarderRoutesDeps) {
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    // the roll-up is checked in the handler (checkRollup: VM_INVALID_ROLLUP, after the key's region); the schema documents it
    app.post('/v1/federation/rollups', {
      schema: { summary: "A child region's roll-up", tags: ['federation'], body: RollupSchema },
      attachValidation: true,
      config: { roles: ['region'], scope: 'region (the child region)' },
    }, async (req, reply) => {
      const p = req.principal!
      const region = (req.body as { region?: unknown } | null)?.region
      if (typeof region === 'string' && region !== p.scope) throw new VitalmeshError('VM_FORBIDDEN', `this key speaks for region ${p.scope}, not ${region}`)
      const r = checkRollup(req.body, d.windows)
      if (!r.ok) throw new VitalmeshError('VM_INVALID_ROLLUP', r.message)
      if (r.rollup.region !== p.scope) throw new VitalmeshError('VM_FORBIDDEN', `this key speaks for region ${p.scope}, not ${r.rollup.region}`)
      if (!d.aggregator.receiveRollup(r.rollup as RegionRollup)) throw new VitalmeshError('VM_INVALID_ROLLUP', 'the roll-up was not accepted')
      return reply.status(202).send({ accepted: true, region: r.rollup.region, window: r.rollup.window, version: r.rollup.version })
    })

    app.get<{ Params: { id: string }, Querystring: { window?: string, from?: string, to?: string } }>('/v1/regions/:id/aggregates', {
      schema: { summary: "This node's region aggregates per window", tags: ['federation'] },
      config: { roles: ['operator', 'region'], scope: 'region (own)' },
    }, async (req) => {
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
      return { region: d.region, window: kind, aggregates: await (d.windowReads ?? d.aggregator).regionAggregates(kind, from, to, p.role === 'region' ? d.rollupK ?? 1 : 1) }
    })

    app.get('/v1/outbox/dead', { schema: { summary: 'Deliveries set aside after failing too long', tags: ['operators'] }, config: OPERATOR }, async (req) => {
      return { deadLetters: d.outbox.deadLetters() }
    })

    app.post<{ Querystring: { sink?: string } }>('/v1/outbox/redrive', { schema: { summary: 'Send the dead letters again', tags: ['operators'] }, config: OPERATOR }, async (req) => {
      const n = d.outbox.redrive(req.query.sink)
      d.audit.append(`operator:${req.principal!.keyId}`, 'outbox.redrive', req.query.sink ?? 'all', { count: n })
      req.log.info({ sink: req.query.sink ?? 'all', count: n }, 'dead letters re-driven')
      return { redriven: n }
    })

    app.post('/v1/api-keys', { schema: { summary: 'Create an API key (shown once)', tags: ['auth'], body: ApiKeyBody }, config: OPERATOR }, async (req, reply) => {
      const p = req.principal!
      const body = req.body
      // the scope names something registered, checked before anything is written; the key and its audit entry in one transaction
      const problem = d.registry.scopeProblem(body.role as Role, body.scope)
      if (problem) throw problem
      const { key, id } = d.registry.atomically(() => {
        const key = d.registry.addApiKey(body.role as Role, body.scope, body.label ?? `by ${p.keyId}`)
        const id = key.split('_')[1]!
        d.audit.append(`operator:${p.keyId}`, 'api-key.created', id, { role: body.role, scope: body.scope })
        return { key, id }
      })
      return reply.status(201).send({ id, key, role: body.role, scope: body.scope })
    })

    app.get('/v1/api-keys', { schema: { summary: 'API keys (without secrets)', tags: ['auth'] }, config: OPERATOR }, async (req) => {
      return { keys: d.registry.apiKeys() }
    })

    app.delete<{ Params: { id: string } }>('/v1/api-keys/:id', { schema: { summary: 'Revoke an API key', tags: ['auth'] }, config: OPERATOR }, async (req) => {
      const p = req.principal!
      d.registry.atomically(() => {
        if (!d.registry.revokeApiKey(req.params.id)) throw new VitalmeshError('VM_NOT_FOUND', `no active API key ${req.params.id}`)
        d.audit.append(`operator:${p.keyId}`, 'api-key.revoked', req.params.id)
      })
      d.keyRevoked?.()
      return { id: req.params.id, revoked: true }
    })

    app.get<{ Querystring: { after?: string, limit?: string } }>('/v1/audit', { schema: { summary: 'The audit trail', tags: ['audit'] }, config: OPERATOR }, async (req) => {
      const after = Math.max(0, Number(req.query.after ?? 0) || 0)
      const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100))
      return { entries: await (d.auditTrail ?? d.audit).list(after, limit) }
    })

    app.get('/v1/audit/verify', { schema: { summary: "Verify the audit trail's hash chain", tags: ['audit'] }, config: OPERATOR }, async (req) => {
      return await (d.auditTrail ?? d.audit).verify()
    })

    app.put<{ Params: { id: string }, Body: z.output<typeof ConsentBody> }>('/v1/residents/:id/consent', {
      schema: { summary: 'Consent (or not) to research use', tags: ['residents'], body: ConsentBody },
      config: { roles: ['resident'], scope: 'resident (own)' },
    }, async (req) => {
      const p = req.principal!
      if (p.scope !== req.params.id) throw new VitalmeshError('VM_FORBIDDEN', 'residents set only their own consent')
      const body = req.body
      d.registry.atomically(() => {
        d.registry.updateResident(req.params.id, { researchConsent: body.research })
        d.audit.append(`resident:${p.scope}`, 'resident.consent', req.params.id, { research: body.research })
      })
      d.residentChanged(req.params.id)
      return { residentId: req.params.id, research: body.research }
    })
  }
}
