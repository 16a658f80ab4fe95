import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { ConcernSchema, type AlertBook } from '../alerting/index.ts'
import { mayAccessResident, auditRead, actorOf, requireResident } from './access.ts'
import { ResidentParams } from './schemas.ts'
import { alertOf, localAlertActions, type AlertActions, type AlertReads } from './alerting.ts'
import { orEmpty, type ZodTypeProvider } from './zod.ts'

export interface AlertCareDeps {
  registry: Registry
  alerts: AlertBook
  /** where the worklist is read: this node's alerts (default), or in cluster mode every node's */
  alertReads?: AlertReads
  /** where an alert is acted on: here (default), or in cluster mode on the node judging its resident */
  alertActions?: AlertActions
  audit: AuditLog
}

const HHMM = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a local time such as 22:00')
export const AlertPreferencesBody = orEmpty(z.strictObject({
  timeZone: z.string().min(1).max(64).nullable().optional().describe('IANA time zone, e.g. Asia/Shanghai; null for the node default'),
  quietHours: z.strictObject({ start: HHMM, end: HHMM }).nullable().optional().describe('warnings and notes are held for a digest in these hours; criticals never'),
}))
export const SnoozeBody = orEmpty(z.strictObject({
  concern: ConcernSchema,
  minutes: z.number().int().min(1).max(7 * 1440).describe('bounded by alerting.maxSnoozeS'),
}))
export const CloseAlertBody = orEmpty(z.strictObject({ reason: z.string().min(1).max(500) }))
export const AssignAlertBody = orEmpty(z.strictObject({ to: z.string().trim().min(1).max(100).describe('the staff member handling it, as the centre names them') }))
export const AlertNoteBody = orEmpty(z.strictObject({ text: z.string().trim().min(1).max(2000) }))
export const ResolveAlertBody = orEmpty(z.strictObject({ reason: z.string().trim().min(1).max(500).describe('why it is resolved by hand; a reading that still meets the rule opens a new alert') }))
const SnoozeParams = ResidentParams.extend({ concern: z.string() })

const ALERTS = ['alerts']
const OWN = 'resident (own)'

/**
 * What residents choose about their alerts (time zone, quiet hours, snoozes), and what
 * those who handle alerts need: the alerts that still want attention, and closing an alert
 * whose standard was withdrawn.
 */
export function alertCareRoutes (d: AlertCareDeps) {
  const actions = d.alertActions ?? localAlertActions(d.alerts)
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    const hospitalOf = (id: string): string | null | undefined => d.registry.resident(id)?.hospitalId
    const resident = (p: Parameters<typeof mayAccessResident>[0], id: string): string => requireResident(p, id, d.registry)
    const actor = (p: { role: string, scope: string | null, keyId: string }): string => `${p.role}:${p.scope ?? p.keyId}`

    app.get('/v1/residents/:id/alert-preferences', {
      schema: { summary: "A resident's time zone, quiet hours and snoozes", tags: ALERTS, params: ResidentParams },
      config: { roles: ['operator', 'resident'], scope: OWN },
    }, async (req) => {
      const id = resident(req.principal!, req.params.id)
      auditRead(d.audit, req.principal!, 'pull.alert-preferences', id)
      return { residentId: id, ...d.alerts.preferences(id) }
    })

    app.put('/v1/residents/:id/alert-preferences', {
      schema: { summary: 'Set time zone and quiet hours (warnings wait for a morning digest; criticals never)', tags: ALERTS, params: ResidentParams, body: AlertPreferencesBody },
      config: { roles: ['resident'], scope: OWN },
    }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const body = req.body
      const prefs = d.alerts.setPreferences(id, body, actor(p))
      d.audit.append(actor(p), 'alert-preferences.set', id, body)
      return { residentId: id, ...prefs }
    })

    app.post('/v1/residents/:id/snoozes', {
      schema: { summary: 'Snooze a concern (never a critical), bounded in time', tags: ALERTS, params: ResidentParams, body: SnoozeBody },
      config: { roles: ['resident'], scope: OWN },
    }, async (req, reply) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const body = req.body
      const prefs = d.alerts.snooze(id, body.concern, body.minutes * 60, actor(p))
      d.audit.append(actor(p), 'alert.snoozed', id, body)
      return reply.status(201).send({ residentId: id, ...prefs })
    })

    app.delete('/v1/residents/:id/snoozes/:concern', {
      schema: { summary: 'End a snooze', tags: ALERTS, params: SnoozeParams },
      config: { roles: ['resident'], scope: OWN },
    }, async (req) => {
      const p = req.principal!
      const id = resident(p, req.params.id)
      const prefs = d.alerts.unsnooze(id, req.params.concern)
      d.audit.append(actor(p), 'alert.unsnoozed', id, { concern: req.params.concern })
      return { residentId: id, ...prefs }
    })

    app.get('/v1/alerts/attention', {
      schema: { summary: 'Open alerts, and criticals whose standard was withdrawn until someone closes them', tags: ALERTS },
      config: { roles: ['operator', 'hospital'], scope: 'hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      const alerts = await (d.alertReads ?? d.alerts).needingAttention(p.role === 'hospital' ? (id) => hospitalOf(id) === p.scope : undefined)
      auditRead(d.audit, p, 'pull.alerts-attention', p.scope ?? 'all', { count: alerts.length })
      return { alerts }
    })

    /** an alert the key may handle: the operator any, a hospital its residents' */
    const handled = async (p: Parameters<typeof mayAccessResident>[0], alertId: string) => {
      const a = await alertOf(d.alerts, d.alertReads, alertId)
      if (!mayAccessResident(p, a.residentId, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access alert ${alertId}`)
      return a
    }
    const WORKLIST = { roles: ['operator', 'hospital'] as const, scope: 'hospital (its residents)' }

    app.post<{ Params: { id: string }, Body: z.output<typeof AssignAlertBody> }>('/v1/alerts/:id/assign', {
      schema: { summary: 'Assign an alert to the staff member handling it (the worklist)', tags: ALERTS, body: AssignAlertBody },
      config: WORKLIST,
    }, async (req) => {
      const p = req.principal!
      const a = await handled(p, req.params.id)
      const out = await actions.assign(a.residentId, a.id, req.body.to, actor(p))
      d.audit.append(actorOf(p), 'alert.assigned', a.residentId, { alertId: a.id, to: req.body.to })
      return out
    })

    app.post<{ Params: { id: string }, Body: z.output<typeof AlertNoteBody> }>('/v1/alerts/:id/notes', {
      schema: { summary: 'Add a note to an alert (a call made, a visit arranged)', tags: ALERTS, body: AlertNoteBody },
      config: WORKLIST,
    }, async (req, reply) => {
      const p = req.principal!
      const a = await handled(p, req.params.id)
      const { note, notes } = await actions.addNote(a.residentId, a.id, req.body.text, actor(p))
      d.audit.append(actorOf(p), 'alert.note', a.residentId, { alertId: a.id })
      return reply.status(201).send({ alertId: a.id, note, notes })
    })

    app.post<{ Params: { id: string }, Body: z.output<typeof ResolveAlertBody> }>('/v1/alerts/:id/resolve', {
      schema: { summary: 'Resolve an open or acknowledged alert by hand, with a reason', tags: ALERTS, body: ResolveAlertBody },
      config: WORKLIST,
    }, async (req) => {
      const p = req.principal!
      const a = await handled(p, req.params.id)
      const out = await actions.resolveByHand(a.residentId, a.id, req.body.reason, actor(p))
      d.audit.append(actorOf(p), 'alert.resolved-by-hand', a.residentId, { alertId: a.id, reason: req.body.reason })
      return out
    })

    app.post<{ Params: { id: string }, Body: z.output<typeof CloseAlertBody> }>('/v1/alerts/:id/close', {
      schema: { summary: 'Close an alert whose rule set was withdrawn or replaced, with a reason', tags: ALERTS, body: CloseAlertBody },
      config: { roles: ['operator', 'hospital'], scope: 'hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      const a = await alertOf(d.alerts, d.alertReads, req.params.id)
      if (!mayAccessResident(p, a.residentId, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access alert ${req.params.id}`)
      const body = req.body
      const closed = await actions.close(a.residentId, a.id, actor(p), body.reason)
      d.audit.append(actorOf(p), 'alert.closed', a.residentId, { alertId: a.id, reason: body.reason })
      return closed
    })
  }
}
