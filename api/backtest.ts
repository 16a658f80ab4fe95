import { availableParallelism } from 'node:os'
import type { FastifyInstance } from 'fastify'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { z } from 'zod'
import { VitalmeshError, type Clock } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'
import { RuleSetDocSchema, backtestFromStore, type RuleSetStore, type ReadingSource, type BacktestOptions } from '../alerting/index.ts'

export interface BacktestRoutesDeps {
  registry: Registry
  ruleSets: RuleSetStore
  store: ReadingSource
  audit: AuditLog
  clock: Clock
  /** forwarder.k: a count from fewer residents is suppressed */
  k: number
  alerting: Pick<BacktestOptions, 'tickMs' | 'flapCount' | 'flapWindowS' | 'liveHorizonS'>
  /** worker threads for a backtest on the embedded store (default: one core fewer than the machine has, at least 1, so the live path keeps a core) */
  workers?: number
}

export const BacktestBody = z.strictObject({
  ruleSet: z.union([z.record(z.string(), z.unknown()), z.string().max(512 * 1024)]).describe('the rule set document (JSON), or its YAML text'),
  days: z.number().int().min(1).max(90).default(30).describe('how many days back from now to replay'),
})

/** An issue of the rule set document, at its path in the document (not in the request body), for the console to show in place. */
export interface RuleSetIssue { path: (string | number)[], message: string, line?: number }

function invalid (reply: { status(n: number): { send(b: unknown): unknown } }, issues: RuleSetIssue[]): unknown {
  return reply.status(400).send({
    code: 'VM_INVALID_RULE_SET',
    message: issues.slice(0, 5).map((i) => `${i.path.join('.') || 'document'}: ${i.message}`).join('; '),
    issues,
  })
}

/**
 * `POST /v1/rulesets/backtest`: a draft rule set replayed through the last days of consenting
 * residents' readings (alerting/backtest.ts), next to the active version of the same id. No
 * live alert state is touched; one backtest runs at a time on a node (it reads every reading
 * of the window).
 */
export function backtestRoutes (d: BacktestRoutesDeps) {
  let running = false
  return (app: FastifyInstance): void => {
    app.post('/v1/rulesets/backtest', {
      // the body is checked in the handler: a rule set's schema errors answer VM_INVALID_RULE_SET with each issue's path
      schema: { summary: "Backtest a draft rule set on the last N days of consenting residents' readings: alerts per 1,000 resident-days, and the difference from the active version (every cell k-suppressed)", tags: ['rule sets'], body: BacktestBody },
      attachValidation: true,
      config: { roles: ['operator', 'research'], scope: 'research (registered institution)' },
    }, async (req, reply) => {
      const p = req.principal!
      if (p.role === 'research' && (!p.scope || !d.registry.institution(p.scope))) throw new VitalmeshError('VM_FORBIDDEN', 'this research key is not bound to a registered institution')
      const body = BacktestBody.safeParse(req.body)
      if (!body.success) throw new VitalmeshError('VM_BAD_REQUEST', body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
      let input: unknown = body.data.ruleSet
      if (typeof input === 'string') {
        try { input = parseYaml(input) } catch (e) {
          const line = e instanceof YAMLParseError ? e.linePos?.[0]?.line : undefined
          return invalid(reply, [{ path: [], message: `not valid YAML: ${(e as Error).message.split('\n')[0]}`, ...(line !== undefined ? { line } : {}) }])
        }
      }
      const parsed = RuleSetDocSchema.safeParse(input)
      if (!parsed.success) return invalid(reply, parsed.error.issues.map((i) => ({ path: i.path.map((x) => typeof x === 'symbol' ? String(x) : x), message: i.message })))
      const draft = parsed.data
      if (running) throw new VitalmeshError('VM_CONFLICT', 'a backtest is running on this node; try again when it is done')
      running = true
      try {
        const active = d.ruleSets.active().find((x) => x.id === draft.id)
        const residents = d.registry.researchConsenting().map((r) => ({ id: r.id, birthYear: r.birthYear, conditions: r.conditions, region: r.region }))
        const report = await backtestFromStore({
          draft, active, store: d.store, residents, days: body.data.days, now: d.clock.now(), k: d.k, alerting: d.alerting,
          overrides: (id) => new Map(d.registry.overrides(id).map((o) => [o.ruleKey, o.params])),
          workers: d.workers ?? Math.max(1, availableParallelism() - 1),
        })
        const actor = p.role === 'research' ? `research:${p.scope}:${p.keyId}` : `operator:${p.keyId}`
        d.audit.append(actor, 'rule-set.backtested', `${draft.id}@${draft.version}`, { days: body.data.days, comparedWith: report.comparedWith, residents: report.population.residents, k: d.k, elapsedMs: report.elapsedMs })
        req.log.info({ ruleSet: draft.id, version: draft.version, residents: report.population.residents, elapsedMs: report.elapsedMs }, 'rule set backtested')
        return report
      } finally { running = false }
    })
  }
}
