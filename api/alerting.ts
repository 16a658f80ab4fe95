import type { FastifyInstance } from 'fastify'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { RuleSetDocSchema, type Alert, type AlertBook, type AlertNote, type RuleSetStore } from '../alerting/index.ts'
import { mayAccessResident, mayReadAlerts, auditRead, requireResident } from './access.ts'
import { followerView } from './live.ts'
import { ResidentParams } from './schemas.ts'
import type { ZodTypeProvider } from './zod.ts'

/** The alert lists the API reads: this node's AlertBook, or the cluster's copy of every node's alerts. */
export interface AlertReads {
  forResident(residentId: string, limit: number): Alert[] | Promise<Alert[]>
  needingAttention(residentIds?: (id: string) => boolean): Alert[] | Promise<Alert[]>
  /** one alert as the cluster's copy has it (cluster mode: an alert of a resident another node judges) */
  get?(alertId: string): Promise<Alert | undefined>
}

/** The alert, from this node or the cluster's copy: whose it is decides who may act on it. */
export async function alertOf (alerts: Pick<AlertBook, 'get'>, reads: AlertReads | undefined, alertId: string): Promise<Alert> {
  const a = alerts.get(alertId) ?? await reads?.get?.(alertId)
  if (a) return a
  throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId}`)
}

/**
 * Acting on an alert, and its history: on the node that judges the alert's resident. A single
 * node does it itself (localAlertActions); in cluster mode the request goes to the owner of the
 * resident's partition (cluster/node.ts `judge`), so an alert is acted on through any node.
 */
export interface AlertActions {
  acknowledge(residentId: string, alertId: string, actor: string, onlyOf?: string): Promise<Alert>
  assign(residentId: string, alertId: string, to: string, actor: string): Promise<Alert>
  addNote(residentId: string, alertId: string, text: string, actor: string): Promise<{ note: AlertNote, notes: AlertNote[] }>
  resolveByHand(residentId: string, alertId: string, reason: string, actor: string): Promise<Alert>
  close(residentId: string, alertId: string, actor: string, reason: string): Promise<Alert>
  history(residentId: string, alertId: string): Promise<AlertHistory>
}

export interface AlertHistory {
  alert: Alert
  transitions: { at: number, state: string, actor: string }[]
  followers: { followerId: string, kind: string, at: number, deliveredAt: number | null }[]
  notes: AlertNote[]
}

export function localAlertActions (alerts: AlertBook): AlertActions {
  return {
    acknowledge: async (_r, id, actor, onlyOf) => alerts.acknowledge(id, actor, onlyOf),
    assign: async (_r, id, to, actor) => alerts.assign(id, to, actor),
    addNote: async (_r, id, text, actor) => ({ note: alerts.addNote(id, text, actor), notes: alerts.notes(id) }),
    resolveByHand: async (_r, id, reason, actor) => alerts.resolveByHand(id, reason, actor),
    close: async (_r, id, actor, reason) => alerts.close(id, actor, reason),
    history: async (_r, id) => {
      const alert = alerts.get(id)
      if (!alert) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${id}`)
      return {
        alert, transitions: alerts.history(id), notes: alerts.notes(id),
        // who was told at each step: the followers' notices, by follower id and kind (their words stay with them)
        followers: alerts.followerNotices(id).map((n) => ({ followerId: n.followerId, kind: n.kind, at: n.at, deliveredAt: n.deliveredAt })),
      }
    },
  }
}

/** The actions of `local`, done where `judge` sends them: each method by name, with its arguments (cluster mode). */
export function judgedAlertActions (judge: (residentId: string, op: keyof AlertActions, args: unknown[]) => Promise<unknown>): AlertActions {
  const via = <K extends keyof AlertActions>(op: K) => (async (residentId: string, ...args: unknown[]) => await judge(residentId, op, [residentId, ...args])) as unknown as AlertActions[K]
  return { acknowledge: via('acknowledge'), assign: via('assign'), addNote: via('addNote'), resolveByHand: via('resolveByHand'), close: via('close'), history: via('history') }
}

export interface AlertingRoutesDeps {
  registry: Registry
  ruleSets: RuleSetStore
  alerts: AlertBook
  /** where a resident's alerts are read: this node's (default), or in cluster mode every node's (cluster/alert-mirror.ts) */
  alertReads?: AlertReads
  /** where an alert is acted on: here (default), or in cluster mode on the node judging its resident */
  alertActions?: AlertActions
  audit: AuditLog
  /** called after a rule set was activated or deactivated, or an override changed */
  rulesChanged(residentId?: string, actor?: string): void
}

export const OverrideBody = z.strictObject({
  ruleKey: z.string().regex(/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/, 'ruleKey is <rule set id>/<rule id>'),
  params: z.strictObject({ value: z.number().optional(), min: z.number().optional(), max: z.number().optional(), forS: z.number().positive().optional() })
    .refine((p) => Object.keys(p).length > 0, 'give at least one of value, min, max, forS'),
})

const RULE_SETS = ['rule sets']
const ALERTS = ['alerts']
const OWN_OR_HOSPITAL = 'resident (own), hospital (its residents)'
const ALERT_READERS = 'resident (own), hospital (its residents), follower (the resident it follows)'

/** Rule sets (research institutions publish, operators activate), standards, alerts and overrides. */
export function alertingRoutes (d: AlertingRoutesDeps) {
  const actions = d.alertActions ?? localAlertActions(d.alerts)
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    // research institutions may publish YAML as well as JSON
    app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string' }, (_req, body, done) => {
      try { done(null, parseYaml(body as string)) } catch (e) { done(new VitalmeshError('VM_INVALID_RULE_SET', `not valid YAML: ${(e as Error).message}`)) }
    })
    const hospitalOf = (id: string): string | null | undefined => d.registry.resident(id)?.hospitalId
    const followed = (fid: string): string | undefined => d.registry.followers.residentOf(fid)
    const guardAlerts = (p: Parameters<typeof mayAccessResident>[0], id: string): void => {
      if (!mayReadAlerts(p, id, hospitalOf, followed)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not read the alerts of resident ${id}`)
      if (!d.registry.resident(id)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} is not registered`)
    }
    const guardResident = (p: Parameters<typeof mayAccessResident>[0], id: string): void => { requireResident(p, id, d.registry) }

    app.get('/v1/standards', { schema: { summary: 'The rule sets in force', tags: RULE_SETS }, config: { roles: ['operator', 'resident', 'hospital', 'research'] } }, async (req) => {
      return { ruleSets: d.alerts.activeRuleSets }
    })

    app.get('/v1/rulesets', { schema: { summary: 'Every published rule-set version', tags: RULE_SETS }, config: { roles: ['operator', 'research'] } }, async (req) => {
      return { versions: d.ruleSets.list() }
    })

    app.get<{ Params: { id: string, version: string } }>('/v1/rulesets/:id/:version', { schema: { summary: 'One rule-set version', tags: RULE_SETS }, config: { roles: ['operator', 'research'] } }, async (req) => {
      const doc = d.ruleSets.get(req.params.id, req.params.version)
      if (!doc) throw new VitalmeshError('VM_NOT_FOUND', `rule set ${req.params.id} version ${req.params.version} is not published`)
      return doc
    })

    app.post('/v1/rulesets', {
      schema: { summary: 'Publish a rule set (JSON or YAML)', tags: RULE_SETS, body: RuleSetDocSchema, consumes: ['application/json', 'application/yaml'] },
      // the body is checked after the key (403 before 400), and by the store, whose refusal is VM_INVALID_RULE_SET
      attachValidation: true,
      config: { roles: ['research'] },
    }, async (req, reply) => {
      const p = req.principal!
      if (!p.scope || !d.registry.institution(p.scope)) throw new VitalmeshError('VM_FORBIDDEN', 'this research key is not bound to a registered institution')
      const doc = d.ruleSets.publish(req.body, `research:${p.scope}`)
      d.audit.append(`research:${p.scope}:${p.keyId}`, 'rule-set.published', `${doc.id}@${doc.version}`, { publisher: doc.publisher, citation: doc.citation })
      req.log.info({ ruleSet: doc.id, version: doc.version, by: p.scope }, 'rule set published')
      return reply.status(201).send({ id: doc.id, version: doc.version, active: false })
    })

    app.post<{ Params: { id: string, version: string } }>('/v1/rulesets/:id/:version/activate', { schema: { summary: 'Activate a rule-set version', tags: RULE_SETS }, config: { roles: ['operator'] } }, async (req) => {
      const p = req.principal!
      d.ruleSets.activate(req.params.id, req.params.version, `operator:${p.keyId}`)
      d.audit.append(`operator:${p.keyId}`, 'rule-set.activated', `${req.params.id}@${req.params.version}`)
      d.rulesChanged(undefined, `operator:${p.keyId}`)
      req.log.info({ ruleSet: req.params.id, version: req.params.version }, 'rule set activated')
      return { id: req.params.id, version: req.params.version, active: true }
    })

    app.delete<{ Params: { id: string } }>('/v1/rulesets/:id/active', { schema: { summary: 'Deactivate a rule set', tags: RULE_SETS }, config: { roles: ['operator'] } }, async (req) => {
      const p = req.principal!
      d.ruleSets.deactivate(req.params.id, `operator:${p.keyId}`)
      d.audit.append(`operator:${p.keyId}`, 'rule-set.deactivated', req.params.id)
      d.rulesChanged(undefined, `operator:${p.keyId}`)
      return { id: req.params.id, active: false }
    })

    app.get<{ Params: { id: string }, Querystring: { limit?: string } }>('/v1/residents/:id/alerts', {
      schema: { summary: "A resident's alerts, newest first", tags: ALERTS, params: ResidentParams },
      config: { roles: ['operator', 'resident', 'hospital', 'follower'], scope: ALERT_READERS },
    }, async (req) => {
      const p = req.principal!
      const id = req.params.id
      guardAlerts(p, id)
      const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 100) || 100))
      const alerts = await (d.alertReads ?? d.alerts).forResident(id, limit)
      auditRead(d.audit, p, 'pull.alerts', id, { count: alerts.length })
      return { residentId: id, alerts: p.role === 'follower' ? alerts.map(followerView) : alerts }
    })

    app.get<{ Params: { id: string } }>('/v1/alerts/:id/history', {
      schema: { summary: "An alert's transitions with who and when", tags: ALERTS },
      config: { roles: ['operator', 'resident', 'hospital', 'follower'], scope: ALERT_READERS },
    }, async (req) => {
      const p = req.principal!
      const found = await alertOf(d.alerts, d.alertReads, req.params.id)
      if (!mayReadAlerts(p, found.residentId, hospitalOf, followed)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access alert ${req.params.id}`)
      auditRead(d.audit, p, 'pull.alert-history', found.residentId, { alertId: found.id })
      const h = await actions.history(found.residentId, found.id)
      if (p.role === 'follower') return { alert: followerView(h.alert), transitions: h.transitions.map((e) => ({ at: e.at, state: e.state })) }
      return { alert: h.alert, transitions: h.transitions, followers: h.followers, ...(p.role === 'operator' || p.role === 'hospital' ? { notes: h.notes } : {}) }
    })

    app.post<{ Params: { id: string } }>('/v1/alerts/:id/ack', { schema: { summary: 'Acknowledge an alert (stops its escalation chain)', tags: ALERTS }, config: { roles: ['operator', 'resident', 'follower'], scope: 'resident (own), follower (the resident it follows)' } }, async (req) => {
      const p = req.principal!
      const existing = await alertOf(d.alerts, d.alertReads, req.params.id)
      if (p.role === 'resident' && existing.residentId !== p.scope) throw new VitalmeshError('VM_FORBIDDEN', 'residents acknowledge only their own alerts')
      if (p.role === 'follower' && followed(p.scope ?? '') !== existing.residentId) throw new VitalmeshError('VM_FORBIDDEN', 'followers acknowledge only the alerts of the resident they follow')
      const a = await actions.acknowledge(existing.residentId, req.params.id, `${p.role}:${p.scope ?? p.keyId}`, p.role === 'operator' ? undefined : existing.residentId)
      if (p.role === 'follower') { d.audit.append(`follower:${p.scope}:${p.keyId}`, 'alert.acknowledged', existing.residentId, { alertId: existing.id, via: 'api' }); return followerView(a) }
      return a
    })

    app.get('/v1/residents/:id/overrides', {
      schema: { summary: 'Personal thresholds', tags: ['hospitals'], params: ResidentParams },
      config: { roles: ['operator', 'hospital'], scope: 'hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      const id = req.params.id
      guardResident(p, id)
      auditRead(d.audit, p, 'pull.overrides', id)
      return { residentId: id, overrides: d.registry.overrides(id) }
    })

    app.put('/v1/residents/:id/overrides', {
      schema: { summary: 'Set a personal threshold for a patient', tags: ['hospitals'], params: ResidentParams, body: OverrideBody },
      config: { roles: ['hospital'], scope: 'hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      const id = req.params.id
      guardResident(p, id)
      const body = req.body
      d.registry.atomically(() => {
        d.registry.setOverride(id, body.ruleKey, body.params, `hospital:${p.scope}`)
        d.audit.append(`hospital:${p.scope}:${p.keyId}`, 'override.set', id, body)
      })
      d.rulesChanged(id)
      return { residentId: id, overrides: d.registry.overrides(id) }
    })
  }
}
