import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'

describe('OpenAPI', () => {
  let t: TestApp
  beforeAll(async () => { t = await startTestApp() })
  afterAll(async () => { await t?.stop() })

  it('documents every /v1 route, with who may call it and the schemas of its inputs', async () => {
    // each route declares its summary and tags itself (schema), next to its roles (config)
    const v1 = t.app.api.vitalmeshRoutes.filter((r) => r.url.startsWith('/v1/'))
    expect(v1.filter((r) => !r.schema?.summary || !r.schema.tags?.length).map((r) => `${r.method} ${r.url}`)).toEqual([])
    const doc = await (await fetch(`http://127.0.0.1:${t.httpPort}/openapi.json`)).json() as any
    expect(doc.openapi).toBe('3.0.3')
    for (const r of v1) {
      const op = doc.paths[r.url.replace(/:([A-Za-z]+)/g, '{$1}')][r.method.toLowerCase()]
      expect([r.method, r.url, op.summary, op.tags]).toEqual([r.method, r.url, r.schema!.summary, r.schema!.tags])
    }
    const publish = doc.paths['/v1/rulesets'].post
    expect(publish.description).toMatch(/research/)
    expect(publish.requestBody.content['application/json'].schema.properties.rules).toBeTruthy()
    expect(Object.keys(publish.requestBody.content)).toEqual(['application/json', 'application/yaml'])
    const readings = doc.paths['/v1/residents/{id}/readings'].get
    expect(readings.parameters.map((p: { name: string }) => p.name)).toEqual(['id', 'from', 'to', 'limit', 'maxPoints'])
    expect(readings.parameters[0].schema.pattern).toBeTruthy()
    expect(readings.description).toMatch(/scope: resident \(own\)/)
    expect(doc.components.schemas.Error.properties.code.enum).toContain('VM_FORBIDDEN')
  })

  it('serves Swagger UI at /docs', async () => {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/docs/`)
    expect(res.status).toBe(200)
    expect(await res.text()).toMatch(/swagger/i)
    const spec = await fetch(`http://127.0.0.1:${t.httpPort}/docs/json`)
    expect(((await spec.json()) as { paths: object }).paths).toHaveProperty(['/v1/standards'])
  })
})
