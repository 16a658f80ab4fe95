import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Client } from 'undici'
import { startTestApp, type TestApp } from '../helpers/app.ts'
import { ErrorCodes } from '../../core/index.ts'

const CODES = new Set(Object.keys(ErrorCodes))

/** A raw request: the path goes on the wire exactly as given (fetch would normalise dot segments). */
const clients = new Map<string, Client>()
async function send (origin: string, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer) {
  let client = clients.get(origin)
  if (!client) clients.set(origin, client = new Client(origin))
  const res = await client.request({ method: method as 'GET', path, headers, body })
  const text = await res.body.text()
  let json: Record<string, unknown> = {}
  try { json = JSON.parse(text) } catch { /* not JSON */ }
  return { status: res.statusCode, json, text, headers: res.headers }
}

/** Percent-encodes the character at `i` of the path (never a `/`), or the `%` of an existing escape (double encoding). */
function encodeAt (path: string, i: number, double: boolean): string {
  const ch = path[i]!
  if (ch === '/') return path
  const enc = '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')
  return path.slice(0, i) + (double ? enc.replace('%', '%25') : enc) + path.slice(i + 1)
}

/**
 * Every registered route, reached through other spellings of its path (percent-encoding,
 * double encoding, dot segments, `__proto__` and friends as parameters): never a 5xx, never
 * data without the key and role the route declares, and every other client is still served.
 */
describe('hostile path spellings', () => {
  let t: TestApp
  let origin: string
  let keys: Record<string, string>
  beforeAll(async () => {
    t = await startTestApp({ 'http.anonymousRateLimitPerMinute': 1_000_000 })
    origin = `http://127.0.0.1:${t.httpPort}`
    t.app.registry.addHospital({ id: 'h1', name: 'H1' })
    keys = { operator: t.app.demo!.apiKeys.operator, resident: t.app.demo!.apiKeys.resident, residentOther: t.app.registry.addApiKey('resident', 'demo-res-001') }
  })
  afterAll(async () => { for (const c of clients.values()) await c.close(); await t?.stop() })

  const othersServed = async (): Promise<void> => {
    expect((await send(origin, 'GET', '/healthz')).status).toBe(200)
    expect((await send(origin, 'GET', '/v1/residents/demo-resident/readings', { authorization: `Bearer ${keys.resident}` })).status).toBe(200)
  }

  it('authenticates /%761/... and /v%31/... like /v1/... (was: 500 and no key check)', async () => {
    for (const path of ['/%761/residents/demo-resident/readings', '/v%31/residents/demo-resident/readings', '/%76%31/residents/demo-resident/readings', '/v1/%72esidents/demo-resident/readings']) {
      const anonymous = await send(origin, 'GET', path)
      expect([path, anonymous.status, anonymous.json.code]).toEqual([path, 401, 'VM_UNAUTHORIZED'])
      const other = await send(origin, 'GET', path, { authorization: `Bearer ${keys.residentOther}` })
      expect([path, other.status, other.json.code]).toEqual([path, 403, 'VM_FORBIDDEN'])
      const own = await send(origin, 'GET', path, { authorization: `Bearer ${keys.resident}` })
      expect([path, own.status]).toEqual([path, 200])
    }
    const stats = await send(origin, 'GET', '/%761/stats', { authorization: `Bearer ${keys.resident}` })
    expect([stats.status, stats.json.code]).toEqual([403, 'VM_FORBIDDEN'])
    await othersServed()
  })

  const PARAMS = ['demo-resident', '__proto__', 'constructor', 'prototype', 'hasOwnProperty', '%2e%2e', '..', '.', '%00', '%2F', 'a%252Fb', 'x'.repeat(101)]
  const concrete = (url: string, param: string): string => url.replace(/:[A-Za-z]+/g, param).replace(/\*$/, param === 'demo-resident' ? 'index.html' : param)

  it('never answers a 5xx, nor data without the key the route declares, whatever the spelling of any route\'s path', async () => {
    const routes = t.app.api.vitalmeshRoutes.filter((r) => !r.url.startsWith('/docs'))
    expect(routes.length).toBeGreaterThan(30)
    const spelling = fc.record({
      route: fc.nat(routes.length - 1),
      param: fc.constantFrom(...PARAMS),
      encodes: fc.array(fc.record({ at: fc.nat(200), double: fc.boolean() }), { maxLength: 3 }),
      dots: fc.constantFrom('', '/.', '/x/..', '/%2e', '/%2e%2e', '/.%2e'),
      dotsAt: fc.nat(5),
      tail: fc.constantFrom('', '/', '?', '?a=1&a=2', '#x', '//', '%'),
      key: fc.constantFrom(undefined, 'resident', 'bad'),
    })
    await fc.assert(fc.asyncProperty(spelling, async (s) => {
      const route = routes[s.route]!
      let path = concrete(route.url, s.param)
      for (const e of s.encodes) path = encodeAt(path, e.at % path.length, e.double)
      const segments = path.split('/')
      const at = 1 + (s.dotsAt % Math.max(1, segments.length - 1))
      path = [...segments.slice(0, at), ...(s.dots ? [s.dots.slice(1)] : []), ...segments.slice(at)].join('/') + s.tail
      const headers: Record<string, string> = s.key === 'resident' ? { authorization: `Bearer ${keys.resident}` } : s.key === 'bad' ? { authorization: 'Bearer vm_000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' } : {}
      const body = route.method === 'GET' || route.method === 'DELETE' ? undefined : '{}'
      if (body) headers['content-type'] = 'application/json'
      const r = await send(origin, route.method, path, headers, body)
      const what = `${route.method} ${path} (${route.url}, key ${s.key})`
      expect(r.status, what + ' ' + r.text.slice(0, 200)).toBeLessThan(500)
      if (r.status >= 400 && r.json.code !== undefined) expect(CODES.has(String(r.json.code)), what).toBe(true)
      if (r.status >= 400 && r.headers['content-type']?.toString().includes('json')) expect(Object.keys(r.json).sort(), what + ' ' + r.text).toEqual(['code', 'message'])
      // a route that needs a key serves nothing without one, and nothing to a role it does not declare
      if (route.roles !== 'public' && r.status < 300) {
        expect(s.key, what).toBe('resident')
        expect(route.roles, what).toContain('resident')
      }
    }), { numRuns: 400 })
    await othersServed()
  })

  it('answers /console/__proto__ and /console/constructor with 404, not 500', async () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '__proto__/x']) {
      const r = await send(origin, 'GET', `/console/${name}`)
      expect([name, r.status, r.json.code]).toEqual([name, 404, 'VM_NOT_FOUND'])
    }
    await othersServed()
  })

  it('refuses a 50,000-deep JSON body with 400, not 500', async () => {
    const deep = '['.repeat(50_000) + ']'.repeat(50_000)
    for (const path of ['/v1/devices/import', '/v1/hospitals']) {
      const r = await send(origin, 'POST', path, { authorization: `Bearer ${keys.operator}`, 'content-type': 'application/json' }, deep)
      expect([path, r.status, r.json.code]).toEqual([path, 400, 'VM_BAD_REQUEST'])
    }
    const deepObject = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)
    expect((await send(origin, 'POST', '/v1/devices/import', { authorization: `Bearer ${keys.operator}`, 'content-type': 'application/json' }, deepObject)).status).toBe(400)
    await othersServed()
  })

  it('answers fastify\'s own errors as {code, message} with VM_ codes, by status', async () => {
    const badUrl = await send(origin, 'GET', '/v1/residents/%E0%A4%A/readings')
    expect([badUrl.status, badUrl.json]).toEqual([400, { code: 'VM_BAD_REQUEST', message: expect.any(String) }])
    const long = await send(origin, 'GET', `/v1/residents/${'x'.repeat(200)}/readings`)
    expect([long.status, long.json]).toEqual([414, { code: 'VM_URI_TOO_LONG', message: expect.any(String) }])
    const media = await send(origin, 'POST', '/v1/hospitals', { authorization: `Bearer ${keys.operator}`, 'content-type': 'text/xml' }, '<h/>')
    expect([media.status, media.json]).toEqual([415, { code: 'VM_UNSUPPORTED_MEDIA_TYPE', message: expect.any(String) }])
    const empty = await send(origin, 'POST', '/v1/hospitals', { authorization: `Bearer ${keys.operator}`, 'content-type': 'application/json' }, '')
    expect([empty.status, Object.keys(empty.json).sort(), empty.json.code]).toEqual([400, ['code', 'message'], 'VM_BAD_REQUEST'])
    const none = await send(origin, 'GET', '/v2/nothing')
    expect([none.status, none.json.code]).toEqual([404, 'VM_NOT_FOUND'])
    await othersServed()
  })
})

describe('requests without a valid API key are rate limited per address', () => {
  it('answers 429 VM_RATE_LIMITED with retry-after after the limit, while a key keeps its own budget', async () => {
    const t = await startTestApp({ 'http.anonymousRateLimitPerMinute': 5 })
    try {
      const origin = `http://127.0.0.1:${t.httpPort}`
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) statuses.push((await send(origin, 'GET', '/healthz')).status)
      for (let i = 0; i < 3; i++) statuses.push((await send(origin, 'GET', '/v1/whoami', { authorization: 'Bearer vm_000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' })).status)
      expect(statuses).toEqual([200, 200, 200, 401, 401, 429])
      const limited = await send(origin, 'GET', '/console/index.html')
      expect([limited.status, limited.json.code, Number(limited.headers['retry-after']) > 0]).toEqual([429, 'VM_RATE_LIMITED', true])
      expect((await send(origin, 'GET', '/v1/whoami', { authorization: `Bearer ${t.app.demo!.apiKeys.operator}` })).status).toBe(200)
    } finally {
      await clients.get(`http://127.0.0.1:${t.httpPort}`)?.close()
      await t.stop()
    }
  })
})
