import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { researchPayload, researchReportPayload, type Aggregator, type ReportOutcomeInput, type ResearchCell, type WindowReads } from '../forwarder/index.ts'
import { mayAccessResident } from './access.ts'
import { ResidentParams } from './schemas.ts'
import type { ZodTypeProvider } from './zod.ts'

export interface DataRoutesDeps {
  registry: Registry, aggregator: Aggregator, audit: AuditLog, windows: string[], k: number
  /** cluster mode: windows are read from the cluster's copy of every node's (default: the aggregator's) */
  windowReads?: WindowReads
  /** finished clinical reports, for report-level research aggregates (reports/book.ts finishedOutcomes) */
  reportOutcomes(from: number, to: number): ReportOutcomeInput[] | Promise<ReportOutcomeInput[]>
}

const DAY = 86400_000
export const ResearchReportQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional().describe('reports that ended at or after this (epoch ms; default: 30 days before `to`)'),
  to: z.coerce.number().int().min(0).optional().describe('reports that ended before this (epoch ms; default: now)'),
  region: z.string().max(64).optional(),
  ageBand: z.string().max(16).optional(),
}).refine((q) => q.from === undefined || q.to === undefined || (q.from < q.to && q.to - q.from <= 366 * DAY), { message: 'from must be before to, at most 366 days apart' })

export const Range = z.strictObject({
  window: z.string().optional(),
  from: z.coerce.number().int().min(0).optional(),
  to: z.coerce.number().int().min(0).optional(),
})
export const ResearchQuery = Range.extend({
  region: z.string().max(64).optional(),
  ageBand: z.string().max(16).optional(),
  cursor: z.coerce.number().int().min(0).optional().describe('the window start to continue after (from the previous page)'),
  limit: z.coerce.number().int().min(1).max(500).default(24).describe('windows per page'),
  format: z.enum(['json', 'csv']).default('json'),
})

const CSV_COLUMNS = ['window_kind', 'window_start', 'window_end', 'version', 'region', 'age_band', 'residents',
  ...['hr', 'sys', 'dia'].flatMap((m) => ['count', 'min', 'max', 'mean', 'p50', 'p95'].map((s) => `${m}_${s}`))]

function csvRow (w: { kind: string, start: string, end: string }, version: number, c: ResearchCell): string {
  const stats = (['hr', 'sys', 'dia'] as const).flatMap((m) => (['count', 'min', 'max', 'mean', 'p50', 'p95'] as const).map((s) => c[m][s] ?? ''))
  return [w.kind, w.start, w.end, version, c.region, c.ageBand, c.residents, ...stats].map((v) => {
    const t = String(v)
    return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t
  }).join(',')
}

/** Hospitals' summaries of their residents, and research institutions' pull of de-identified aggregates. */
export function dataRoutes (d: DataRoutesDeps) {
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    const hospitalOf = (id: string): string | null | undefined => d.registry.resident(id)?.hospitalId
    const windowOf = (w: string | undefined): string => {
      const kind = w ?? d.windows[0]!
      if (!d.windows.includes(kind)) throw new VitalmeshError('VM_BAD_REQUEST', `window must be one of ${d.windows.join(', ')}`)
      return kind
    }

    app.get<{ Params: { id: string } }>('/v1/hospitals/:id/residents', {
      schema: { summary: 'The residents a hospital cares for', tags: ['hospitals'] },
      config: { roles: ['operator', 'hospital'], scope: 'hospital (own)' },
    }, async (req) => {
      const p = req.principal!
      if (p.role === 'hospital' && p.scope !== req.params.id) throw new VitalmeshError('VM_FORBIDDEN', 'a hospital sees only its own residents')
      if (!d.registry.hospital(req.params.id)) throw new VitalmeshError('VM_NOT_FOUND', `hospital ${req.params.id} is not registered`)
      const residents = d.registry.patients(req.params.id)
      d.audit.append(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.patients', req.params.id, { count: residents.length })
      return { hospitalId: req.params.id, residents }
    })

    app.get('/v1/residents/:id/summaries', {
      schema: { summary: "A resident's window summaries", tags: ['hospitals', 'residents'], params: ResidentParams, querystring: Range },
      config: { roles: ['operator', 'resident', 'hospital'], scope: 'resident (own), hospital (its residents)' },
    }, async (req) => {
      const p = req.principal!
      const id = req.params.id
      if (!mayAccessResident(p, id, hospitalOf)) throw new VitalmeshError('VM_FORBIDDEN', `this key may not access resident ${id}`)
      if (!d.registry.resident(id)) throw new VitalmeshError('VM_NOT_FOUND', `resident ${id} is not registered`)
      const q = req.query
      const kind = windowOf(q.window)
      const to = q.to ?? Date.now()
      const from = q.from ?? to - 7 * 86400_000
      const summaries = await (d.windowReads ?? d.aggregator).residentSummaries(id, kind, from, to)
      if (p.role !== 'resident') d.audit.append(`${p.role}:${p.scope ?? ''}:${p.keyId}`, 'pull.summaries', id, { window: kind, from, to, count: summaries.length })
      return { residentId: id, window: kind, summaries }
    })

    app.get('/v1/research/report-aggregates', {
      schema: { summary: 'De-identified distributions of report outcomes (dipping classes, protocol-confirmed home hypertension) per county and age band', tags: ['research'], querystring: ResearchReportQuery },
      config: { roles: ['research'], scope: 'research (registered institution)' },
    }, async (req) => {
      const p = req.principal!
      const inst = p.scope ? d.registry.institution(p.scope) : undefined
      if (!inst) throw new VitalmeshError('VM_FORBIDDEN', 'this research key is not bound to a registered institution')
      const q = req.query
      const to = q.to ?? Date.now()
      const from = q.from ?? to - 30 * DAY
      if (from >= to || to - from > 366 * DAY) throw new VitalmeshError('VM_BAD_REQUEST', 'query: from must be before to, at most 366 days apart')
      // consent and k are applied by the pure core before any filter, exactly as for the window aggregates
      const payload = researchReportPayload(await d.reportOutcomes(from, to), (id) => {
        const r = d.registry.resident(id)
        return r && { region: r.region, birthYear: r.birthYear, hospitalId: r.hospitalId, researchConsent: r.researchConsent }
      }, { id: inst.id, pseudonymKey: inst.pseudonymKey }, d.k, { from, to })
      const keep = (c: { region: string, ageBand: string }): boolean => (!q.region || c.region === q.region) && (!q.ageBand || c.ageBand === q.ageBand)
      payload.dipping.cells = payload.dipping.cells.filter(keep)
      payload.homeBp.cells = payload.homeBp.cells.filter(keep)
      d.audit.append(`research:${inst.id}:${p.keyId}`, 'pull.research-reports', inst.id, { from, to, region: q.region ?? null, ageBand: q.ageBand ?? null, cells: payload.dipping.cells.length + payload.homeBp.cells.length })
      return payload
    })

    app.get('/v1/research/aggregates', {
      schema: { summary: 'De-identified aggregates (JSON or CSV), a page of windows', tags: ['research'], querystring: ResearchQuery },
      config: { roles: ['research'], scope: 'research (registered institution)' },
    }, async (req, reply) => {
      const p = req.principal!
      const inst = p.scope ? d.registry.institution(p.scope) : undefined
      if (!inst) throw new VitalmeshError('VM_FORBIDDEN', 'this research key is not bound to a registered institution')
      const q = req.query
      const kind = windowOf(q.window)
      const to = q.to ?? Date.now()
      const from = Math.max(q.from ?? to - 7 * 86400_000, q.cursor !== undefined ? q.cursor + 1 : 0)
      const windows = await (d.windowReads ?? d.aggregator).closedWindows(kind, from, to, q.limit)
      const pages = windows.map((w) => {
        const payload = researchPayload(w, { id: inst.id, pseudonymKey: inst.pseudonymKey }, d.k)
        payload.cells = payload.cells.filter((c) => (!q.region || c.region === q.region) && (!q.ageBand || c.ageBand === q.ageBand))
        return payload
      })
      const next = windows.length === q.limit ? windows[windows.length - 1]!.start : null
      d.audit.append(`research:${inst.id}:${p.keyId}`, 'pull.research', inst.id, { window: kind, from, to, region: q.region ?? null, ageBand: q.ageBand ?? null, windows: pages.length, cells: pages.reduce((n, x) => n + x.cells.length, 0) })
      if (q.format === 'csv') {
        const lines = [CSV_COLUMNS.join(',')]
        for (const pg of pages) for (const c of pg.cells) lines.push(csvRow(pg.window, pg.version, c))
        if (next !== null) reply.header('link', `<?window=${kind}&from=${q.from ?? from}&to=${to}&cursor=${next}&limit=${q.limit}&format=csv>; rel="next"`)
        return reply.type('text/csv; charset=utf-8').send(lines.join('\n') + '\n')
      }
      return { schema: 'vitalmesh.research-aggregate-page/1', window: kind, k: d.k, windows: pages, nextCursor: next }
    })
  }
}
