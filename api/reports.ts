import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError, IdSchema } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { GuidelineSchema, type ReportBook, type StartRun } from '../reports/index.ts'
import { orEmpty, type ZodTypeProvider } from './zod.ts'
import { requireRole, mayAccessResident } from './access.ts'

type Run = NonNullable<ReturnType<ReportBook['get']>>

/**
 * A resident's report runs are kept by the node judging the resident (the readings reach it):
 * a single node itself (localReportActions); in cluster mode the owner of the resident's
 * partition, where these requests go (cluster/node.ts `judge`).
 */
export interface ReportActions {
  start(residentId: string, s: StartRun): Promise<ReturnType<ReportBook['start']>>
  list(residentId: string): Promise<ReturnType<ReportBook['list']>>
  get(residentId: string, runId: string): Promise<Run | null>
  cancel(residentId: string, runId: string): Promise<boolean>
}

export function localReportActions (reports: ReportBook): ReportActions {
  return {
    start: async (_r, s) => reports.start(s),
    list: async (r) => reports.list(r),
    get: async (_r, id) => reports.get(id) ?? null,
    cancel: async (_r, id) => reports.cancel(id),
  }
}

/** The actions done where `judge` sends them (cluster mode). */
export function judgedReportActions (judge: (residentId: string, op: keyof ReportActions, args: unknown[]) => Promise<unknown>): ReportActions {
  const via = <K extends keyof ReportActions>(op: K) => (async (residentId: string, ...args: unknown[]) => await judge(residentId, op, [residentId, ...args])) as unknown as ReportActions[K]
  return { start: via('start'), list: via('list'), get: via('get'), cancel: via('cancel') }
}

export interface ReportRoutesDeps {
  registry: Registry, reports: ReportBook, audit: AuditLog
  /** where a resident's runs are kept and acted on: here (default), or in cluster mode on the node judging the resident */
  reportActions?: ReportActions
  /** the resident's zone when a protocol is started without one: their own, else the region's (as the forwarder's daily windows) */
  timeZoneOf?(residentId: string): string
}

export const StartReportBody = orEmpty(z.strictObject({
  protocol: z.string().min(1).max(64).default('home-bp-7d').describe('a protocol id from GET /v1/report-protocols'),
  timeZone: z.string().min(1).max(64).optional().describe("the resident's IANA time zone, e.g. Asia/Shanghai: days, mornings and nights are local (default: the resident's own zone, else the region's)"),
  guideline: GuidelineSchema.describe('whose out-of-office thresholds classify the result'),
  start: z.union([z.number().int().positive(), z.iso.datetime({ offset: true })]).optional().describe('when the protocol starts (default now): epoch ms or ISO 8601'),
}))

const TAGS = ['reports']

/** Clinical reports: a hospital or the resident starts a protocol; the resident, its hospital and operators read them. */
export function reportRoutes (d: ReportRoutesDeps) {
  const actions = d.reportActions ?? localReportActions(d.reports)
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    const hospitalOf = (id: string): string | null | undefined => d.registry.resident(id)?.hospitalId
    const guard = (p: Parameters<typeof mayAccessResident>[0], id: string): void => {
      if (!mayAccessResident(p, id, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access resident ${id}`)
      if (!IdSchema.safeParse(id).success || !d.registry.resident(id)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} is not registered`)
    }
    const runOf = async (residentId: string, runId: string): Promise<Run> => {
      const r = await actions.get(residentId, runId)
      if (!r || r.residentId !== residentId) throw new VitalmeshError('VM_NOT_FOUND', `resident ${residentId} has no report ${runId}`)
      return r
    }
    const actor = (p: { role: string, scope: string | null, keyId: string }): string => `${p.role}:${p.scope ?? p.keyId}`

    app.get('/v1/report-protocols', {
      schema: { summary: 'Clinical report protocols (home BP, 24-hour profile), with the provenance of each number', tags: TAGS },
      config: { roles: ['operator', 'resident', 'hospital'] },
    }, async (req) => {
      requireRole(req.principal, 'operator', 'resident', 'hospital')
      return { protocols: d.reports.protocolList() }
    })

    app.post<{ Params: { id: string }, Body: z.output<typeof StartReportBody> }>('/v1/residents/:id/reports', {
      schema: { summary: 'Start a protocol for a resident (home BP week or 24-hour profile)', tags: TAGS, body: StartReportBody },
      config: { roles: ['resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req, reply) => {
      const p = requireRole(req.principal, 'resident', 'hospital')
      guard(p, req.params.id)
      const body = req.body
      const run = await actions.start(req.params.id, {
        residentId: req.params.id, protocolId: body.protocol, timeZone: body.timeZone ?? d.timeZoneOf?.(req.params.id) ?? 'UTC', guideline: body.guideline,
        ...(body.start !== undefined ? { startTs: typeof body.start === 'number' ? body.start : Date.parse(body.start) } : {}),
        startedBy: actor(p),
      })
      d.audit.append(actor(p), 'report.started', req.params.id, { run: run.id, protocol: run.protocol, start: run.start, timeZone: run.timeZone, guideline: run.guideline })
      return reply.status(201).send(run)
    })

    app.get<{ Params: { id: string } }>('/v1/residents/:id/reports', {
      schema: { summary: "A resident's protocol runs: progress while running, the report once finished", tags: TAGS },
      config: { roles: ['operator', 'resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req) => {
      const p = requireRole(req.principal, 'operator', 'resident', 'hospital')
      guard(p, req.params.id)
      return { residentId: req.params.id, reports: await actions.list(req.params.id) }
    })

    app.get<{ Params: { id: string, runId: string } }>('/v1/residents/:id/reports/:runId', {
      schema: { summary: 'One protocol run with its adherence and result', tags: TAGS },
      config: { roles: ['operator', 'resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req) => {
      const p = requireRole(req.principal, 'operator', 'resident', 'hospital')
      guard(p, req.params.id)
      return await runOf(req.params.id, req.params.runId)
    })

    app.delete<{ Params: { id: string, runId: string } }>('/v1/residents/:id/reports/:runId', {
      schema: { summary: 'Cancel a running protocol', tags: TAGS },
      config: { roles: ['resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req) => {
      const p = requireRole(req.principal, 'resident', 'hospital')
      guard(p, req.params.id)
      await runOf(req.params.id, req.params.runId)
      if (!await actions.cancel(req.params.id, req.params.runId)) throw new VitalmeshError('VM_CONFLICT', `report ${req.params.runId} is not running (finished or cancelled already)`)
      d.audit.append(actor(p), 'report.cancelled', req.params.id, { run: req.params.runId })
      return { id: req.params.runId, state: 'cancelled' }
    })
  }
}
