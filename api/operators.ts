import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { VitalmeshError, IdSchema } from '../core/index.ts'
import type { Registry, AuditLog } from '../registry/index.ts'

export const HospitalBody = z.strictObject({
  id: IdSchema, name: z.string().min(1).max(200),
  webhookUrl: z.url().optional().describe('receives escalated critical alerts'), webhookToken: z.string().optional(),
  fhirUrl: z.url().optional().describe('FHIR server endpoint receiving transaction Bundles of summaries'),
  fhirAuth: z.enum(['bearer', 'hmac']).optional(), fhirSecret: z.string().optional(),
})
export const InstitutionBody = z.strictObject({ id: IdSchema, name: z.string().min(1).max(200), pushUrl: z.url().optional(), token: z.string().optional() })
export const NewResidentBody = z.strictObject({
  id: IdSchema, name: z.string().max(200).optional(), language: z.enum(['en', 'zh-CN']).optional(),
  region: z.string().max(64).optional().describe('county id'), birthYear: z.number().int().min(1900).max(2100).optional(),
  conditions: z.array(z.string().min(1).max(64)).max(50).optional(), hospitalId: IdSchema.optional(),
  mqttPassword: z.boolean().default(true).describe('create an MQTT password for the resident\'s phone (shown once)'),
})
export const ResidentPatch = z.strictObject({
  birthYear: z.number().int().min(1900).max(2100).optional(),
  conditions: z.array(z.string().min(1).max(64)).max(50).optional(),
  hospitalId: IdSchema.optional(),
  language: z.enum(['en', 'zh-CN']).optional(),
})

function parse<T> (schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body)
  if (!r.success) throw new VitalmeshError('VM_BAD_REQUEST', r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '))
  return r.data
}

/** Operator routes for the registry: hospitals, research institutions, residents' profiles. */
export function operatorRoutes (d: { registry: Registry, audit: AuditLog, residentChanged(id: string): void }) {
  return (app: FastifyInstance): void => {
    app.post('/v1/hospitals', { config: { roles: ['operator'] } }, async (req, reply) => {
      const h = parse(HospitalBody, req.body)
      d.registry.atomically(() => {
        d.registry.addHospital(h)
        d.audit.append(`operator:${req.principal!.keyId}`, 'hospital.registered', h.id, { name: h.name, fhirUrl: h.fhirUrl ?? null, webhookUrl: h.webhookUrl ?? null })
      })
      return reply.status(201).send({ id: h.id, name: h.name })
    })
    app.post('/v1/institutions', { config: { roles: ['operator'] } }, async (req, reply) => {
      const i = parse(InstitutionBody, req.body)
      d.registry.atomically(() => {
        d.registry.addInstitution(i)
        d.audit.append(`operator:${req.principal!.keyId}`, 'institution.registered', i.id, { name: i.name, pushUrl: i.pushUrl ?? null })
      })
      return reply.status(201).send({ id: i.id, name: i.name })
    })
    app.post('/v1/residents', { config: { roles: ['operator'] } }, async (req, reply) => {
      const r = parse(NewResidentBody, req.body)
      // all or nothing: an unknown hospital leaves no resident behind (nor a password nobody received)
      const password = await d.registry.addResident({
        id: r.id, ...(r.name ? { name: r.name } : {}), ...(r.language ? { language: r.language } : {}), ...(r.region ? { region: r.region } : {}),
        ...(r.birthYear !== undefined ? { birthYear: r.birthYear } : {}), ...(r.conditions ? { conditions: r.conditions } : {}), ...(r.hospitalId ? { hospitalId: r.hospitalId } : {}),
      }, r.mqttPassword, () => { d.audit.append(`operator:${req.principal!.keyId}`, 'resident.registered', r.id, { region: r.region ?? null, hospitalId: r.hospitalId ?? null, mqttPassword: r.mqttPassword }) })
      return reply.status(201).send({ id: r.id, ...(password ? { mqttPassword: password } : {}) })
    })

    app.patch<{ Params: { id: string } }>('/v1/residents/:id', { config: { roles: ['operator'] } }, async (req) => {
      const patch = parse(ResidentPatch, req.body)
      d.registry.atomically(() => {
        d.registry.updateResident(req.params.id, patch)
        d.audit.append(`operator:${req.principal!.keyId}`, 'resident.updated', req.params.id, patch)
      })
      d.residentChanged(req.params.id)
      const r = d.registry.resident(req.params.id)!
      return { id: r.id, birthYear: r.birthYear, conditions: r.conditions, hospitalId: r.hospitalId, language: r.language, region: r.region, researchConsent: r.researchConsent }
    })
  }
}
