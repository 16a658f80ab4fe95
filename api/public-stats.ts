import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError } from '../core/index.ts'
import type { Aggregator, WindowKind, WindowReads } from '../forwarder/index.ts'

export interface PublicStatsDeps {
  aggregator: Pick<Aggregator, 'regionAggregates' | 'ownAlerts'>
  /** cluster mode: windows are read from the cluster's copy of every node's (default: the aggregator's) */
  windowReads?: WindowReads
  region: { id: string, level: string }
  windows: WindowKind[]
  /** a cell covering fewer residents than this is not published (config forwarder.k) */
  k: number
}

export const PublicStatsQuery = z.strictObject({
  window: z.string().optional().describe('a window kind, default the longest (e.g. 1d)'),
  days: z.coerce.number().int().min(1).max(90).default(14),
})

/** One published cell: a value, or null with `suppressed` when it would describe fewer than k residents. */
export interface PublicWindow {
  start: number
  end: number
  suppressed: boolean
  residents: number | null
  readings: number | null
  /** share of BP readings below 130/80 mmHg (ACC/AHA normal and elevated) */
  bpInRange: number | null
  /** alerts opened per 1,000 of this node's own residents with readings in the window */
  alertsPer1000: number | null
}

const IN_RANGE = new Set(['normal', 'elevated'])

/**
 * A region's published statistics, for anyone (no key): only aggregates, and every cell
 * k-suppressed. The alert rate is over this node's own residents (child roll-ups carry no
 * alerts), suppressed on its own when they are fewer than k.
 */
export async function publicRegionWindows (d: PublicStatsDeps, kind: string, from: number, to: number): Promise<PublicWindow[]> {
  const reads = d.windowReads ?? d.aggregator
  const aggregates = await reads.regionAggregates(kind, from, to, d.k)
  const owns = await Promise.all(aggregates.map(async (a) => await reads.ownAlerts(kind, a.window.start)))
  return aggregates.map((a, i) => {
    const suppressed = a.residents < d.k
    const bpTotal = Object.values(a.bpCategories).reduce((x, y) => x + y, 0)
    const bpIn = Object.entries(a.bpCategories).filter(([c]) => IN_RANGE.has(c)).reduce((x, [, n]) => x + n, 0)
    const own = owns[i]!
    return {
      start: a.window.start,
      end: a.window.end,
      suppressed,
      residents: suppressed ? null : a.residents,
      readings: suppressed ? null : Math.max(a.hr.count, a.sys.count),
      bpInRange: suppressed || bpTotal === 0 ? null : Math.round((bpIn / bpTotal) * 1000) / 1000,
      alertsPer1000: suppressed || own.residents < d.k ? null : Math.round((own.alerts / own.residents) * 1000 * 10) / 10,
    }
  })
}

/** GET /public/regions (the region this node publishes) and /public/regions/:id/stats: explicitly public, outside /v1 (no key, the per-address rate limit). */
export function publicStatsRoutes (d: PublicStatsDeps) {
  return (app: FastifyInstance): void => {
    app.get('/public/regions', { config: { roles: 'public' } }, async () => ({ regions: [d.region] }))

    app.get<{ Params: { id: string } }>('/public/regions/:id/stats', { config: { roles: 'public' } }, async (req, reply) => {
      if (req.params.id !== d.region.id) throw new VitalmeshError('VM_NOT_FOUND', `this node publishes the statistics of region ${d.region.id}`)
      const q = PublicStatsQuery.safeParse(req.query)
      if (!q.success) throw new VitalmeshError('VM_BAD_REQUEST', q.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '))
      const longest = [...d.windows].sort((a, b) => b.ms - a.ms)[0]!
      const kind = q.data.window ?? longest.name
      const w = d.windows.find((x) => x.name === kind)
      if (!w) throw new VitalmeshError('VM_BAD_REQUEST', `window must be one of ${d.windows.map((x) => x.name).join(', ')}`)
      const to = Date.now()
      const from = to - q.data.days * 86400_000
      reply.header('cache-control', 'public, max-age=60')
      return { region: d.region, window: kind, k: d.k, from, to, windows: await publicRegionWindows(d, kind, from, to) }
    })
  }
}
