import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { IdSchema, VitalmeshError } from '../core/index.ts'
import type { ZodTypeProvider } from './zod.ts'
import { parseDeviceFile, type DeviceRecord, type Fleet, type ImportResult } from '../registry/index.ts'
import { DeviceModelEntrySchema, ModelNameSchema, type DeviceModelRegister } from '../reports/index.ts'

/** What the device routes need from the node: the registry's fleet and the broker's view of sessions. */
export interface DeviceRoutesDeps {
  fleet: Fleet
  isOnline(deviceId: string): boolean
  /** last seen time not yet written to SQLite */
  pendingLastSeen(deviceId: string): number | undefined
  /** ends the device's sessions on this node at once (other nodes: within the credential poll) */
  disconnect(deviceId: string): number
  /** records a credential change in the audit trail */
  audited?(actor: string, action: string, subject: string, detail: unknown): void
  /** the validated-device register (reports/register.ts): which models' BP readings count in reports */
  models: DeviceModelRegister
}

export const ModelParams = z.strictObject({ model: ModelNameSchema.describe('the model name devices are registered with') })

export const NewDeviceBody = z.strictObject({
  id: IdSchema,
  residentId: IdSchema,
  model: z.string().max(128).optional(),
  region: z.string().max(64).optional().describe('county id; default: the resident\'s region'),
  firmware: z.string().max(64).optional(),
})

export const DeviceListQuery = z.strictObject({
  residentId: IdSchema.optional(),
  region: z.string().max(64).optional(),
  model: z.string().max(128).optional().describe('only devices of this model (GET /v1/device-models lists the fleet\'s models with their validation status)'),
  after: IdSchema.optional().describe('the last id of the previous page'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  includeRevoked: z.enum(['true', 'false']).transform((s) => s === 'true').optional(),
})

const OPERATOR = { roles: ['operator'] as const }
const TAGS = ['devices']

/** `/v1/devices`: register, bulk-import, rotate, revoke and list devices (operator keys). */
export function registerDeviceRoutes (app: FastifyInstance, deps: DeviceRoutesDeps): void {
  // each device shows whether its model's BP readings count in reports: validated (and the protocol), unvalidated, cuffless or unknown
  const modelValidation = (model: string | null) => {
    const m = model ? deps.models.get(model) : undefined
    return { status: deps.models.status(model), protocol: m?.protocol ?? null }
  }
  const view = (d: DeviceRecord) => ({ ...d, online: deps.isOnline(d.id), lastSeenAt: deps.pendingLastSeen(d.id) ?? d.lastSeenAt, modelValidation: modelValidation(d.model) })

  app.register(async (plain) => {
    const scope = plain.withTypeProvider<ZodTypeProvider>()
    scope.addContentTypeParser(['text/csv', 'text/plain'], { parseAs: 'string', bodyLimit: 64 * 1024 * 1024 }, (_req, body, done) => done(null, body))

    scope.post('/v1/devices', {
      schema: { summary: 'Register a device bound to a resident; returns its secret once', tags: TAGS, body: NewDeviceBody },
      config: OPERATOR,
    }, async (req, reply) => {
      const body = req.body
      const secret = await deps.fleet.add(body, () => deps.audited?.(`operator:${req.principal!.keyId}`, 'device.registered', body.id, { residentId: body.residentId }))
      return reply.status(201).send({ device: view(deps.fleet.get(body.id)!), secret })
    })

    scope.post<{ Querystring: { createResidents?: string } }>('/v1/devices/import', {
      bodyLimit: 64 * 1024 * 1024,
      schema: { summary: 'Bulk-import devices from CSV or JSON (prefer the CLI for 100k)', tags: TAGS, consumes: ['text/csv', 'application/json'] },
      config: OPERATOR,
    }, async (req) => {
      const rows = typeof req.body === 'string' ? parseDeviceFile(req.body) : parseDeviceFile(JSON.stringify(req.body ?? []), 'json')
      const result: ImportResult = await deps.fleet.import(rows, {
        createResidents: req.query.createResidents === 'true',
        onProgress: (p) => req.log.info(p, 'device import progress'),
      })
      deps.audited?.(`operator:${req.principal!.keyId}`, 'device.imported', `${rows.length} rows`, { created: (result as { created?: unknown }).created })
      return result
    })

    scope.get('/v1/devices', {
      schema: { summary: 'Devices with online status and last seen, paginated', tags: TAGS, querystring: DeviceListQuery },
      config: OPERATOR,
    }, async (req) => {
      const q = req.query
      const devices = deps.fleet.list({ limit: q.limit, residentId: q.residentId, region: q.region, model: q.model, afterId: q.after, includeRevoked: q.includeRevoked })
      return { count: devices.length, next: devices.length === q.limit ? devices[devices.length - 1]!.id : null, devices: devices.map(view) }
    })

    scope.get<{ Params: { id: string } }>('/v1/devices/:id', { schema: { summary: 'One device', tags: TAGS }, config: OPERATOR }, async (req) => {
      const d = deps.fleet.get(req.params.id)
      if (!d) throw new VitalmeshError('VM_NOT_FOUND', `device "${req.params.id}" is not registered`)
      return view(d)
    })

    scope.post<{ Params: { id: string } }>('/v1/devices/:id/rotate', { schema: { summary: "Rotate a device's secret; its sessions end at once", tags: TAGS }, config: OPERATOR }, async (req) => {
      const secret = await deps.fleet.rotate(req.params.id)
      const disconnected = deps.disconnect(req.params.id)
      deps.audited?.(`operator:${req.principal!.keyId}`, 'device.rotated', req.params.id, { disconnected })
      return { device: view(deps.fleet.get(req.params.id)!), secret, disconnected }
    })

    // the validated-device register: reports average and classify only the BP readings of validated cuff models
    scope.get('/v1/device-models', {
      schema: { summary: "The device-model register with each model's validation status, and the fleet's devices per model (models no one registered are unknown)", tags: TAGS },
      config: OPERATOR,
    }, async () => {
      const counts = new Map(deps.fleet.modelCounts().map((c) => [c.model, c]))
      const models = deps.models.list().map((m) => ({ ...m, devices: counts.get(m.model)?.devices ?? 0, residents: counts.get(m.model)?.residents ?? 0 }))
      const known = new Set(models.map((m) => m.model))
      // the fleet's models that are in no register: their BP readings are flagged and kept out of reports until an operator registers them
      const unregistered = [...counts.values()].filter((c) => c.model === null || !known.has(c.model)).map((c) => ({ model: c.model, status: 'unknown' as const, devices: c.devices, residents: c.residents }))
      return { models, unregistered }
    })

    scope.get('/v1/device-models/:model', {
      schema: { summary: "One device model's validation status", tags: TAGS, params: ModelParams },
      config: OPERATOR,
    }, async (req) => {
      const m = deps.models.get(req.params.model)
      if (!m) throw new VitalmeshError('VM_NOT_FOUND', `device model "${req.params.model}" is not in the register (its readings count as unknown: register it with PUT)`)
      return m
    })

    scope.put('/v1/device-models/:model', {
      schema: { summary: "Register a device model's validation status (validated cuff with its protocol, unvalidated, cuffless), or change it", tags: TAGS, params: ModelParams, body: DeviceModelEntrySchema },
      config: OPERATOR,
    }, async (req, reply) => {
      const actor = `operator:${req.principal!.keyId}`
      const r = deps.models.put(req.params.model, req.body, actor, (m, created) => {
        deps.audited?.(actor, created ? 'device-model.registered' : 'device-model.changed', m.model, { status: m.status, protocol: m.protocol, source: m.source })
      })
      return reply.status(r.created ? 201 : 200).send(r.model)
    })

    scope.post<{ Params: { id: string } }>('/v1/devices/:id/revoke', { schema: { summary: 'Revoke a device; its sessions end at once', tags: TAGS }, config: OPERATOR }, async (req) => {
      const d = deps.fleet.revoke(req.params.id)
      const disconnected = deps.disconnect(req.params.id)
      deps.audited?.(`operator:${req.principal!.keyId}`, 'device.revoked', req.params.id, { disconnected })
      return { device: view(d), disconnected }
    })
  })
}
