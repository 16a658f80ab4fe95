import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { IdSchema } from '../core/index.ts'
import type { ZodTypeProvider } from './zod.ts'
import { HOSPITAL_FEEDS, type Registry, type AuditLog } from '../registry/index.ts'

export const HospitalFeeds = z.array(z.enum(HOSPITAL_FEEDS)).max(HOSPITAL_FEEDS.length)
  .describe('what the FHIR endpoint receives: reports (finished protocol reports), alerts (a Flag per critical alert), summaries (window statistics), measurements (an Observation per reading); default ["reports","alerts"]')

/** entries per transaction Bundle a hospital's FHIR server takes */
const FhirMaxEntries = z.number().int().min(1).max(10_000)
export const HospitalBody = z.strictObject({
  id: IdSchema, name: z.string().min(1).max(200),
  webhookUrl: z.url().optional().describe('receives escalated critical alerts'), webhookToken: z.string().optional(),
  fhirUrl: z.url().optional().describe('FHIR server endpoint receiving transaction Bundles of summaries'),
  fhirAuth: z.enum(['bearer', 'hmac']).optional(), fhirSecret: z.string().optional(),
  feeds: HospitalFeeds.optional(),
  fhirMaxEntries: FhirMaxEntries.optional()
    .describe("entries per transaction Bundle the hospital's FHIR server takes, when fewer than the node's VITALMESH_FHIR_MAX_ENTRIES (100): Medplum takes 8 when entries are conditional, as vitalmesh's are"),
})
export const HospitalParams = z.strictObject({ id: IdSchema.describe('hospital id') })
export const HospitalPatch = z.strictObject({
  feeds: HospitalFeeds.optional(),
  fhirMaxEntries: FhirMaxEntries.nullable().optional().describe("entries per transaction Bundle its FHIR server takes; null: the node's setting"),
}).refine((b) => b.feeds !== undefined || b.fhirMaxEntries !== undefined, 'give feeds, fhirMaxEntries or both')
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

const OPERATOR = { roles: ['operator'] as const }
const TAGS = ['operators']

/** Operator routes for the registry: hospitals, research institutions, residents' profiles. */
export function operatorRoutes (d: { registry: Registry, audit: AuditLog, residentChanged(id: string): void }) {
  return (plain: FastifyInstance): void => {
    const app = plain.withTypeProvider<ZodTypeProvider>()
    app.post('/v1/hospitals', {
      schema: { summary: 'Register a hospital (FHIR endpoint, escalation webhook)', tags: TAGS, body: HospitalBody },
      config: OPERATOR,
    }, async (req, reply) => {
      const h = req.body
      d.registry.atomically(() => {
        d.registry.addHospital(h)
        d.audit.append(`operator:${req.principal!.keyId}`, 'hospital.registered', h.id, { name: h.name, fhirUrl: h.fhirUrl ?? null, webhookUrl: h.webhookUrl ?? null, feeds: d.registry.hospital(h.id)!.feeds, fhirMaxEntries: h.fhirMaxEntries ?? null })
      })
      const saved = d.registry.hospital(h.id)!
      return reply.status(201).send({ id: h.id, name: h.name, feeds: saved.feeds, fhirMaxEntries: saved.fhirMaxEntries })
    })
    app.patch('/v1/hospitals/:id', {
      schema: { summary: "Choose a hospital's FHIR feeds, and how many entries its server takes per Bundle", tags: TAGS, params: HospitalParams, body: HospitalPatch },
      config: OPERATOR,
    }, async (req) => {
      const { feeds, fhirMaxEntries } = req.body
      d.registry.atomically(() => {
        if (feeds !== undefined) {
          d.registry.setHospitalFeeds(req.params.id, feeds)
          d.audit.append(`operator:${req.principal!.keyId}`, 'hospital.feeds', req.params.id, { feeds: d.registry.hospital(req.params.id)!.feeds })
        }
        if (fhirMaxEntries !== undefined) {
          d.registry.setHospitalFhirMaxEntries(req.params.id, fhirMaxEntries)
          d.audit.append(`operator:${req.principal!.keyId}`, 'hospital.fhir-max-entries', req.params.id, { fhirMaxEntries })
        }
      })
      const h = d.registry.hospital(req.params.id)!
      return { id: h.id, name: h.name, feeds: h.feeds, fhirMaxEntries: h.fhirMaxEntries }
    })
    app.post('/v1/institutions', {
      schema: { summary: 'Register a research institution', tags: TAGS, body: InstitutionBody },
      config: OPERATOR,
    }, async (req, reply) => {
      const i = req.body
      d.registry.atomically(() => {
        d.registry.addInstitution(i)
        d.audit.append(`operator:${req.principal!.keyId}`, 'institution.registered', i.id, { name: i.name, pushUrl: i.pushUrl ?? null })
      })
      return reply.status(201).send({ id: i.id, name: i.name })
    })
    app.post('/v1/residents', {
      schema: { summary: 'Register a resident (and an MQTT password, shown once)', tags: TAGS, body: NewResidentBody },
      config: OPERATOR,
    }, async (req, reply) => {
      const r = req.body
      // all or nothing: an unknown hospital leaves no resident behind (nor a password nobody received)
      const password = await d.registry.addResident({
        id: r.id, ...(r.name ? { name: r.name } : {}), ...(r.language ? { language: r.language } : {}), ...(r.region ? { region: r.region } : {}),
        ...(r.birthYear !== undefined ? { birthYear: r.birthYear } : {}), ...(r.conditions ? { conditions: r.conditions } : {}), ...(r.hospitalId ? { hospitalId: r.hospitalId } : {}),
      }, r.mqttPassword, () => { d.audit.append(`operator:${req.principal!.keyId}`, 'resident.registered', r.id, { region: r.region ?? null, hospitalId: r.hospitalId ?? null, mqttPassword: r.mqttPassword }) })
      return reply.status(201).send({ id: r.id, ...(password ? { mqttPassword: password } : {}) })
    })

    app.patch<{ Params: { id: string }, Body: z.output<typeof ResidentPatch> }>('/v1/residents/:id', {
      schema: { summary: "Set a resident's birth year, conditions, hospital or language", tags: TAGS, body: ResidentPatch },
      config: OPERATOR,
    }, async (req) => {
      const patch = req.body
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
