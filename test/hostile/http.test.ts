import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { request } from 'undici'
import { startTestApp, type TestApp } from '../helpers/app.ts'
import { ErrorCodes } from '../../core/index.ts'

const CODES = new Set(Object.keys(ErrorCodes))
const INJECTIONS = ["x'; DROP TABLE residents; --", "' OR '1'='1", '1; DELETE FROM api_keys', 'Robert"); DROP TABLE audit;--', '%27%20OR%201=1', '../../../etc/passwd', '\u0000\u0001', '<script>alert(1)</script>']

/** Hostile HTTP input: each ends in a clear error with a stable code while the process keeps serving. */
describe('hostile HTTP input', () => {
  let t: TestApp
  let base: string
  let keys: Record<string, string>
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    t.app.registry.addHospital({ id: 'h1', name: 'H1' })
    t.app.registry.updateResident('demo-resident', { hospitalId: 'h1' })
    keys = {
      operator: t.app.demo!.apiKeys.operator, resident: t.app.demo!.apiKeys.resident,
      hospital: t.app.registry.addApiKey('hospital', 'h1'), research: t.app.registry.addApiKey('research', 'inst-a'),
      region: t.app.registry.addApiKey('region', 'county-z'),
    }
  })
  afterAll(async () => { await t?.stop() })

  const send = async (method: string, path: string, key: string | undefined, body?: string | Buffer, type = 'application/json') => {
    const res = await request(base + path, { method: method as 'POST', headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': type } : {}) }, body })
    const text = await res.body.text()
    let json: Record<string, unknown> = {}
    try { json = JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.statusCode, json, text }
  }
  const stillServing = async () => expect((await send('GET', '/healthz', undefined)).status).toBe(200)

  const BODY_ROUTES: [string, string, string][] = [
    ['POST', '/v1/rulesets', 'research'], ['PUT', '/v1/residents/demo-resident/overrides', 'hospital'], ['PUT', '/v1/residents/demo-resident/consent', 'resident'],
    ['POST', '/v1/hospitals', 'operator'], ['POST', '/v1/institutions', 'operator'], ['PATCH', '/v1/residents/demo-resident', 'operator'],
    ['POST', '/v1/api-keys', 'operator'], ['POST', '/v1/federation/rollups', 'region'],
  ]

  it('answers arbitrary JSON bodies on every body-taking route with 2xx or a coded 4xx, never a 5xx', async () => {
    for (const [method, path, role] of BODY_ROUTES) {
      await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), async (v) => {
        const r = await send(method, path, keys[role], JSON.stringify(v))
        expect(r.status, `${method} ${path} ${JSON.stringify(v)}`).toBeLessThan(500)
        if (r.status >= 400) expect(CODES.has(String(r.json.code)), r.text).toBe(true)
      }), { numRuns: 60 })
    }
    await stillServing()
  })

  it('refuses malformed JSON and huge bodies with their codes', async () => {
    for (const [method, path, role] of BODY_ROUTES) {
      const bad = await send(method, path, keys[role], '{"id": "x",')
      expect([bad.status, bad.json.code]).toEqual([400, 'VM_BAD_REQUEST'])
    }
    const huge = await send('POST', '/v1/hospitals', keys.operator, Buffer.alloc(2 * 1024 * 1024, 0x20))
    expect([huge.status, huge.json.code]).toEqual([413, 'VM_PAYLOAD_TOO_LARGE'])
    const yaml = await send('POST', '/v1/rulesets', keys.research, 'id: [unclosed', 'application/yaml')
    expect([yaml.status, yaml.json.code]).toEqual([400, 'VM_INVALID_RULE_SET'])
    await stillServing()
  })

  it('treats SQL-injection strings as data or refuses them, and the database is intact', async () => {
    for (const s of INJECTIONS) {
      const id = await send('POST', '/v1/hospitals', keys.operator, JSON.stringify({ id: s, name: 'x' }))
      expect([id.status, id.json.code]).toEqual([400, 'VM_BAD_REQUEST'])
      const name = await send('POST', '/v1/institutions', keys.operator, JSON.stringify({ id: `inst-${INJECTIONS.indexOf(s)}`, name: s }))
      expect(name.status).toBe(201)
      expect(t.app.registry.institution(`inst-${INJECTIONS.indexOf(s)}`)!.name).toBe(s)
      const cond = await send('PATCH', '/v1/residents/demo-resident', keys.operator, JSON.stringify({ conditions: [s] }))
      expect(cond.status).toBe(200)
      expect(t.app.registry.resident('demo-resident')!.conditions).toEqual([s])
      for (const path of [`/v1/residents/${encodeURIComponent(s)}/readings`, `/v1/rulesets/${encodeURIComponent(s)}/1.0.0`, `/v1/residents/demo-resident/readings?from=${encodeURIComponent(s)}`, `/v1/research/aggregates?window=${encodeURIComponent(s)}`, `/v1/api-keys/${encodeURIComponent(s)}`]) {
        const r = await send(path.includes('research') ? 'GET' : path.startsWith('/v1/api-keys') ? 'DELETE' : 'GET', path, path.includes('research') ? keys.research : keys.operator)
        expect(r.status, path).toBeGreaterThanOrEqual(400)
        expect(r.status, path).toBeLessThan(500)
        expect(CODES.has(String(r.json.code)), r.text).toBe(true)
      }
    }
    // everything is still there
    expect(t.app.registry.resident('demo-resident')).toBeTruthy()
    expect(t.app.registry.verifyApiKey(keys.operator!)).toBeTruthy()
    expect(t.app.audit.verify().ok).toBe(true)
    await stillServing()
  })

  it('serves no file outside the console, whatever the path', async () => {
    const paths = ['/console/../../package.json', '/console/%2e%2e/%2e%2e/package.json', '/console/..%2f..%2fpackage.json', '/console/vendor/..%2f..%2f..%2fapp.ts',
      '/console/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/console//etc/passwd', '/console/index.html%00.png', '/docs/../package.json', '/docs/static/..%2f..%2f..%2fpackage.json', '/console/console.js/../../../data/demo-credentials.json']
    for (const p of paths) {
      const r = await request(base + p, { method: 'GET' })
      const text = await r.body.text()
      expect(r.statusCode, p).toBeGreaterThanOrEqual(300)
      expect(text, p).not.toMatch(/"dependencies"|root:x:0|createApp|"password"/)
    }
    expect((await request(base + '/console/index.html')).statusCode).toBe(200)
    await stillServing()
  })
})
