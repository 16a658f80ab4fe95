import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError, IdSchema } from '../core/index.ts'
import type { AuditLog, Registry } from '../registry/index.ts'
import { mayAccessResident, auditRead } from './access.ts'

export interface AuditViewsDeps { registry: Registry, audit: AuditLog }

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
 * (or, later, follower) read or changed what of a resident's data, and when. The resident's
 * own actions are left out; the key ids are not shown to the resident.
 */
export function auditViewRoutes (d: AuditViewsDeps) {
  return (app: FastifyInstance): void => {
    app.get<{ Params: { id: string } }>('/v1/residents/:id/access-log', { config: { roles: ['operator', 'resident'] } }, async (req) => {
      const p = req.principal!
      const id = IdSchema.safeParse(req.params.id)
      if (!id.success) throw new VitalmeshError('VM_BAD_REQUEST', `resident id: ${id.error.issues[0]!.message}`)
      if (!mayAccessResident(p, id.data, (r) => d.registry.resident(r)?.hospitalId)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the access log of resident ${id.data}`)
      if (!d.registry.resident(id.data)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id.data} is not registered`)
      const q = AccessLogQuery.safeParse(req.query)
      if (!q.success) throw new VitalmeshError('VM_BAD_REQUEST', q.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '))
      const entries = d.audit.aboutSubject(id.data, { exceptActor: `resident:${id.data}`, beforeSeq: q.data.before, limit: q.data.limit })
      // an operator reading it is itself a read of the resident's data
      auditRead(d.audit, p, 'pull.access-log', id.data, { count: entries.length })
      return {
        residentId: id.data,
        entries: entries.map((e) => ({ seq: e.seq, at: e.at, ...describeActor(e.actor), action: e.action, detail: e.detail })),
        next: entries.length === q.data.limit ? entries[entries.length - 1]!.seq : null,
      }
    })
  }
}
