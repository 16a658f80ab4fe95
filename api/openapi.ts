import { z } from 'zod'
import { RuleSetDocSchema } from '../alerting/index.ts'
import { ErrorCodes } from '../core/index.ts'
import { ReadingsQuery } from './schemas.ts'
import { OverrideBody } from './alerting.ts'
import { RollupSchema, ApiKeyBody } from './forwarder.ts'
import { HospitalBody, InstitutionBody, ResidentPatch, NewResidentBody } from './operators.ts'
import { Range, ResearchQuery } from './data.ts'
import { NewDeviceBody, DeviceListQuery } from './devices.ts'
import { REPORT_ROUTE_DOCS } from './reports.ts'
import { AccessLogQuery } from './audit-views.ts'
import { AlertPreferencesBody, SnoozeBody, CloseAlertBody } from './alert-care.ts'
import { BacktestBody } from './backtest.ts'

/**
 * What a route is for and the schemas of its inputs. Who may call it is not here: it is the
 * route's own `config.roles` (enforced by one hook on the matched route); `scope` says which
 * resident, hospital... a key of each role may reach.
 */
interface RouteDoc { summary: string, tags: string[], scope?: string, query?: z.ZodType, body?: z.ZodType, bodyTypes?: string[] }

/** What each route is for; the OpenAPI document is generated from the routes the app registered (their config.roles), this and the zod schemas. */
export const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /v1/whoami': { summary: 'The role and scope of the calling key', tags: ['auth'] },
  'GET /v1/residents/:id': { summary: "A resident's profile", tags: ['residents'], scope: 'resident (own), hospital (its residents)' },
  'POST /v1/residents': { summary: 'Register a resident (and an MQTT password, shown once)', tags: ['operators'], body: NewResidentBody },
  'PATCH /v1/residents/:id': { summary: "Set a resident's birth year, conditions, hospital or language", tags: ['operators'], body: ResidentPatch },
  'GET /v1/residents/:id/readings': { summary: "A resident's readings in [from, to); windows (mean, min, max) for long ranges with maxPoints", tags: ['residents'], scope: 'resident (own), hospital (its residents)', query: ReadingsQuery },
  'GET /v1/residents/:id/summaries': { summary: "A resident's window summaries", tags: ['hospitals', 'residents'], scope: 'resident (own), hospital (its residents)', query: Range },
  'GET /v1/residents/:id/alerts': { summary: "A resident's alerts, newest first", tags: ['alerts'], scope: 'resident (own), hospital (its residents)' },
  'GET /v1/alerts/:id/history': { summary: "An alert's transitions with who and when", tags: ['alerts'], scope: 'resident (own), hospital (its residents)' },
  'POST /v1/alerts/:id/ack': { summary: 'Acknowledge an alert', tags: ['alerts'], scope: 'resident (own)' },
  'PUT /v1/residents/:id/consent': { summary: 'Consent (or not) to research use', tags: ['residents'], scope: 'resident (own)', body: z.strictObject({ research: z.boolean() }) },
  'GET /v1/residents/:id/overrides': { summary: 'Personal thresholds', tags: ['hospitals'], scope: 'hospital (its residents)' },
  'PUT /v1/residents/:id/overrides': { summary: 'Set a personal threshold for a patient', tags: ['hospitals'], scope: 'hospital (its residents)', body: OverrideBody },
  'GET /v1/hospitals/:id/residents': { summary: 'The residents a hospital cares for', tags: ['hospitals'], scope: 'hospital (own)' },
  'POST /v1/hospitals': { summary: 'Register a hospital (FHIR endpoint, escalation webhook)', tags: ['operators'], body: HospitalBody },
  'POST /v1/institutions': { summary: 'Register a research institution', tags: ['operators'], body: InstitutionBody },
  'GET /v1/standards': { summary: 'The rule sets in force', tags: ['rule sets'] },
  'GET /v1/rulesets': { summary: 'Every published rule-set version', tags: ['rule sets'] },
  'GET /v1/rulesets/:id/:version': { summary: 'One rule-set version', tags: ['rule sets'] },
  'POST /v1/rulesets': { summary: 'Publish a rule set (JSON or YAML)', tags: ['rule sets'], body: RuleSetDocSchema, bodyTypes: ['application/json', 'application/yaml'] },
  'POST /v1/rulesets/backtest': { summary: "Backtest a draft rule set on the last days of consenting residents' readings, against the active version of the same id; k-suppressed alerts per 1,000 resident-days by severity and rule, flapping, difference (no effect on live alerts; one at a time per node)", tags: ['rule sets'], scope: 'research (registered institution)', body: BacktestBody },
  'POST /v1/rulesets/:id/:version/activate': { summary: 'Activate a rule-set version', tags: ['rule sets'] },
  'DELETE /v1/rulesets/:id/active': { summary: 'Deactivate a rule set', tags: ['rule sets'] },
  'GET /v1/research/aggregates': { summary: 'De-identified aggregates (JSON or CSV), a page of windows', tags: ['research'], scope: 'research (registered institution)', query: ResearchQuery },
  'POST /v1/federation/rollups': { summary: "A child region's roll-up", tags: ['federation'], scope: 'region (the child region)', body: RollupSchema },
  'GET /v1/regions/:id/aggregates': { summary: "This node's region aggregates per window", tags: ['federation'], scope: 'region (own)', query: Range },
  'GET /v1/outbox/dead': { summary: 'Deliveries set aside after failing too long', tags: ['operators'] },
  'POST /v1/outbox/redrive': { summary: 'Send the dead letters again', tags: ['operators'] },
  'POST /v1/api-keys': { summary: 'Create an API key (shown once)', tags: ['auth'], body: ApiKeyBody },
  'GET /v1/api-keys': { summary: 'API keys (without secrets)', tags: ['auth'] },
  'DELETE /v1/api-keys/:id': { summary: 'Revoke an API key', tags: ['auth'] },
  'GET /v1/audit': { summary: 'The audit trail', tags: ['audit'] },
  'GET /v1/audit/verify': { summary: "Verify the audit trail's hash chain", tags: ['audit'] },
  'POST /v1/devices': { summary: 'Register a device bound to a resident; returns its secret once', tags: ['devices'], body: NewDeviceBody },
  'POST /v1/devices/import': { summary: 'Bulk-import devices from CSV or JSON (prefer the CLI for 100k)', tags: ['devices'], bodyTypes: ['text/csv', 'application/json'] },
  'GET /v1/devices': { summary: 'Devices with online status and last seen, paginated', tags: ['devices'], query: DeviceListQuery },
  'GET /v1/devices/:id': { summary: 'One device', tags: ['devices'] },
  'POST /v1/devices/:id/rotate': { summary: "Rotate a device's secret; its sessions end at once", tags: ['devices'] },
  'POST /v1/devices/:id/revoke': { summary: 'Revoke a device; its sessions end at once', tags: ['devices'] },
  'GET /v1/stats': { summary: 'Node statistics', tags: ['operators'] },
  'GET /v1/residents/:id/alert-preferences': { summary: "A resident's time zone, quiet hours and snoozes", tags: ['alerts'], scope: 'resident (own)' },
  'PUT /v1/residents/:id/alert-preferences': { summary: 'Set time zone and quiet hours (warnings wait for a morning digest; criticals never)', tags: ['alerts'], scope: 'resident (own)', body: AlertPreferencesBody },
  'POST /v1/residents/:id/snoozes': { summary: 'Snooze a concern (never a critical), bounded in time', tags: ['alerts'], scope: 'resident (own)', body: SnoozeBody },
  'DELETE /v1/residents/:id/snoozes/:concern': { summary: 'End a snooze', tags: ['alerts'], scope: 'resident (own)' },
  'GET /v1/alerts/attention': { summary: 'Open alerts, and criticals whose standard was withdrawn until someone closes them', tags: ['alerts'], scope: 'hospital (its residents)' },
  'POST /v1/alerts/:id/close': { summary: 'Close an alert whose rule set was withdrawn or replaced, with a reason', tags: ['alerts'], scope: 'hospital (its residents)', body: CloseAlertBody },
  'GET /v1/residents/:id/access-log': { summary: "Who read or changed a resident's data, and when (the audit trail, without the resident's own actions)", tags: ['audit', 'residents'], scope: 'resident (own)', query: AccessLogQuery },
  ...REPORT_ROUTE_DOCS,
}

const json = (s: z.ZodType): Record<string, unknown> => z.toJSONSchema(s, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>

/** OpenAPI 3 for the routes the app registered, from ROUTE_DOCS and the zod schemas. */
export function openApiDocument (routes: { method: string, url: string, roles?: readonly string[] | 'public' }[], extra: Record<string, RouteDoc> = {}): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  const docs = { ...ROUTE_DOCS, ...extra }
  for (const r of routes) {
    if (!r.url.startsWith('/v1/')) continue
    const d = docs[`${r.method} ${r.url}`]
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}')
    const params = [...r.url.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }))
    const query = d?.query ? Object.entries((json(d.query).properties ?? {}) as Record<string, unknown>).map(([name, schema]) => ({ name, in: 'query', required: false, schema })) : []
    const op: Record<string, unknown> = {
      summary: d?.summary ?? r.url,
      description: Array.isArray(r.roles) ? `Who may call it: ${r.roles.join(', ')}${d?.scope ? `; scope: ${d.scope}` : ''}.` : undefined,
      tags: d?.tags ?? ['other'],
      security: [{ apiKey: [] }],
      parameters: [...params, ...query],
      responses: {
        200: { description: 'OK' },
        ...Object.fromEntries([...new Set(Object.values(ErrorCodes).map((e) => e.status))].map((st) => [st, { description: Object.entries(ErrorCodes).filter(([, e]) => e.status === st).map(([c]) => c).join(', '), content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }])),
      },
    }
    if (d?.body) op.requestBody = { required: true, content: Object.fromEntries((d.bodyTypes ?? ['application/json']).map((t) => [t, { schema: json(d.body!) }])) }
    ;(paths[path] ??= {})[r.method.toLowerCase()] = op
  }
  return {
    openapi: '3.0.3',
    info: { title: 'vitalmesh API', version: '0.1.0', description: 'Wearable vital-sign telemetry. Send an API key as `Authorization: Bearer vm_...`. Errors are `{code, message}`; the codes are listed in docs/errors.md. Live stream: WebSocket `/v1/live`. MQTT over WebSocket: `/mqtt`.' },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'vm_<id>_<secret>' } },
      schemas: { Error: { type: 'object', properties: { code: { type: 'string', enum: Object.keys(ErrorCodes) }, message: { type: 'string' } }, required: ['code', 'message'] } },
    },
    paths,
  }
}
