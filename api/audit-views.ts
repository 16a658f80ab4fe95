import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { AuditLog, AuditTrail, Registry } from '../registry/index.ts'
import { mayAccessResident, auditRead } from './access.ts'
import { ResidentParams } from './schemas.ts'
import type { ZodTypeProvider } from './zod.ts'

export interface AuditViewsDeps {
  registry: Registry
  audit: AuditLog
  /** what the access log reads: this node's trail (default), or in cluster mode the cluster's one chain */
  auditTrail?: AuditTrail
}

export const AccessLogQuery = z.strictObject({
  before: z.coerce.number().int().positive().optional().describe('entries before this audit sequence number (paging: the last `seq` of the page before)'),
  limit: z.coerce.number().int().min(1).max(500).default(100),
})

/** Who acted, as the audit trail names it (`role:scope:keyId`, or a component such as `forwarder`). */
export function describeActor (actor: string): { role: string, scope: string | null } {
  const [role, scope] = actor.split(':')
  return { role: role!, scope: scope ? scope : null }
}

/**
 * The audit trail as the person it is about sees it: which hospital, institution, operator
 * or follower read or changed what of a resident's data, and when. The resident's
 * own actions are left out; the key ids are not shown to the resident.
 */
export function auditViewRoutes (d: AuditViewsDeps) {
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    app.get('/v1/residents/:id/access-log', {
      schema: {
        summary: "Who read or changed a resident's data, and when (the audit trail, without the resident's own actions)",
        tags: ['audit', 'residents'], params: ResidentParams, querystring: AccessLogQuery,
      },
      config: { roles: ['operator', 'resident'], scope: 'resident (own)' },
    }, async (req) => {
      const p = req.principal!
      const id = req.params.id
      if (!mayAccessResident(p, id, (r) => d.registry.resident(r)?.hospitalId)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the access log of resident ${id}`)
      if (!d.registry.resident(id)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} is not registered`)
      const q = req.query
      const entries = await (d.auditTrail ?? d.audit).aboutSubject(id, { exceptActor: `resident:${id}`, beforeSeq: q.before, limit: q.limit })
      // an operator reading it is itself a read of the resident's data
      auditRead(d.audit, p, 'pull.access-log', id, { count: entries.length })
      return {
        residentId: id,
        entries: entries.map((e) => {
          const who = describeActor(e.actor)
          // a follower is named as the resident named them ("my daughter"), not by an id
          const f = who.role === 'follower' && who.scope ? d.registry.followers.get(who.scope) : undefined
          return { seq: e.seq, at: e.at, ...who, ...(f ? { follower: { name: f.name, relation: f.relation } } : {}), action: e.action, detail: e.detail }
        }),
        next: entries.length === q.limit ? entries[entries.length - 1]!.seq : null,
      }
    })
  }
}
