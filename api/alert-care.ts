import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError, IdSchema } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { ConcernSchema, type AlertBook } from '../alerting/index.ts'
import { mayAccessResident, auditRead } from './access.ts'

export interface AlertCareDeps { registry: Registry, alerts: AlertBook, audit: AuditLog }

const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a local time such as 22:00')
export const AlertPreferencesBody = z.strictObject({
  timeZone: z.string().min(1).max(64).nullable().optional().describe('IANA time zone, e.g. Asia/Shanghai; null for the node default'),
  quietHours: z.strictObject({ start: HHMM, end: HHMM }).nullable().optional().describe('warnings and notes are held for a digest in these hours; criticals never'),
})
export const SnoozeBody = z.strictObject({
  concern: ConcernSchema,
  minutes: z.number().int().min(1).max(7 * 1440).describe('bounded by alerting.maxSnoozeS'),
})
export const CloseAlertBody = z.strictObject({ reason: z.string().min(1).max(500) })

function parse<T> (schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {})
  if (!r.success) throw new VitalmeshError('VM_BAD_REQUEST', r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
  return r.data
}

/**
 * What residents choose about their alerts (time zone, quiet hours, snoozes), and what
 * those who handle alerts need: the alerts that still want attention, and closing an alert
 * whose standard was withdrawn.
 */
export function alertCareRoutes (d: AlertCareDeps) {
  return (app: FastifyInstance): void => {
    const hospitalOf = (id: string): string | null | undefined => d.registry.resident(id)?.hospitalId
    const resident = (p: Parameters<typeof mayAccessResident>[0], raw: string): string => {
      const r = IdSchema.safeParse(raw)
      if (!r.success) throw new VitalmeshError('VM_BAD_REQUEST', `resident id: ${r.error.issues[0]!.message}`)
      if (!mayAccessResident(p, r.data, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access resident ${r.data}`)
      if (!d.registry.resident(r.data)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${r.data} is not registered`)
      return r.data
    }
    const actor = (p: { role: string, scope: string | null, keyId: string }): string => `${p.role}:${p.scope ?? p.keyId}`

    app.get<{ Params: { id: string } }>('/v1/residents/:id/alert-preferences', { config: { roles: ['operator', 'resident'] } }, async (req) => {
      const id = resident(req.principal!, req.params.id)
      auditRead(d.audit, req.principal!, 'pull.alert-preferences', id)
      return { residentId: id, ...d.alerts.preferences(id) }
    })

    app.put<{ Params: { id: string } }>('/v1/residents/:id/alert-preferences', { config: { roles: ['resident'] } }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const body = parse(AlertPreferencesBody, req.body)
      const prefs = d.alerts.setPreferences(id, body, actor(p))
      d.audit.append(actor(p), 'alert-preferences.set', id, body)
      return { residentId: id, ...prefs }
    })

    app.post<{ Params: { id: string } }>('/v1/residents/:id/snoozes', { config: { roles: ['resident'] } }, async (req, reply) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const body = parse(SnoozeBody, req.body)
      const prefs = d.alerts.snooze(id, body.concern, body.minutes * 60, actor(p))
      d.audit.append(actor(p), 'alert.snoozed', id, body)
      return reply.status(201).send({ residentId: id, ...prefs })
    })

    app.delete<{ Params: { id: string, concern: string } }>('/v1/residents/:id/snoozes/:concern', { config: { roles: ['resident'] } }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const prefs = d.alerts.unsnooze(id, req.params.concern)
      d.audit.append(actor(p), 'alert.unsnoozed', id, { concern: req.params.concern })
      return { residentId: id, ...prefs }
    })

    app.get('/v1/alerts/attention', { config: { roles: ['operator', 'hospital'] } }, async (req) => {
      const p = req.principal!
      const alerts = d.alerts.needingAttention(p.role === 'hospital' ? (id) => hospitalOf(id) === p.scope : undefined)
      auditRead(d.audit, p, 'pull.alerts-attention', p.scope ?? 'all', { count: alerts.length })
      return { alerts }
    })

    app.post<{ Params: { id: string } }>('/v1/alerts/:id/close', { config: { roles: ['operator', 'hospital'] } }, async (req) => {
      const p = req.principal!
      const a = d.alerts.get(req.params.id)
      if (!a) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${req.params.id}`)
      if (!mayAccessResident(p, a.residentId, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access alert ${req.params.id}`)
      const body = parse(CloseAlertBody, req.body)
      const closed = d.alerts.close(a.id, actor(p), body.reason)
      d.audit.append(actor(p), 'alert.closed', a.residentId, { alertId: a.id, reason: body.reason })
      return closed
    })
  }
}
