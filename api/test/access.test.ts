import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApp, type TestApp } from '../../test/helpers/app.ts'
import { connect, reading } from '../../test/helpers/mqtt.ts'
import { waitFor } from '../../test/helpers/proc.ts'
import type { Role } from '../../registry/index.ts'

/**
 * Every /v1 route, called with each role it does not serve and with the right role but the
 * wrong scope: 403 and nothing but the error. The table must cover every route the app has.
 */
describe('role and scope on every route', () => {
  let t: TestApp
  const keys: Record<string, string> = {}
  let alertId = ''
  let ownKeyId = ''
  const R1 = 'demo-resident'; const R2 = 'demo-res-001'

  beforeAll(async () => {
    t = await startTestApp()
    const reg = t.app.registry
    reg.addHospital({ id: 'h1', name: 'H1' }); reg.addHospital({ id: 'h2', name: 'H2' })
    reg.updateResident(R1, { hospitalId: 'h1' })
    reg.addInstitution({ id: 'inst-a', name: 'A' })
    keys.operator = t.app.demo!.apiKeys.operator
    keys.resident = t.app.demo!.apiKeys.resident
    keys.residentOther = reg.addApiKey('resident', R2)
    keys.hospital = reg.addApiKey('hospital', 'h1')
    keys.hospitalOther = reg.addApiKey('hospital', 'h2')
    keys.research = reg.addApiKey('research', 'inst-a')
    keys.researchOther = reg.addApiKey('research', 'inst-unregistered')
    keys.region = reg.addApiKey('region', 'local')
    keys.regionOther = reg.addApiKey('region', 'county-x')
    ownKeyId = keys.residentOther.split('_')[1]!
    // followers of R1 and of R2, as they are made: invited by the resident, accepted with the code
    keys.follower = (await reg.followers.accept(reg.followers.invite(R1, { name: 'daughter', relation: 'family' }, 'test').code)).apiKey
    keys.followerOther = (await reg.followers.accept(reg.followers.invite(R2, { name: 'son', relation: 'family' }, 'test').code)).apiKey
    const d = t.app.demo!.device
    const c = await connect(t.mqttPort, d.deviceId, d.secret)
    await c.publishAsync(`vitals/${d.deviceId}`, reading(1, { sys: 200, dia: 125 }), { qos: 1 })
    await c.endAsync()
    alertId = (await waitFor('an alert', () => t.app.alerts.forResident(R1)[0]))!.id
  })
  afterAll(async () => { await t?.stop() })

  const rollup = (region: string) => ({ schema: 'vitalmesh.region-rollup/1', region, level: 'county', window: { kind: '1h', start: 0, end: 3600_000 }, version: 1, residents: 1, hr: { n: 0, min: null, max: null, sum: 0, bins: {} }, sys: { n: 0, min: null, max: null, sum: 0, bins: {} }, dia: { n: 0, min: null, max: null, sum: 0, bins: {} }, bpCategories: {}, children: [] })

  type Case = { path: () => string, allowed: Role[], wrongScope?: Partial<Record<Role, string>>, body?: () => unknown }
  const R = `/v1/residents/${R1}`
  const table: Record<string, Case> = {
    'GET /v1/residents/:id/readings': { path: () => `${R}/readings`, allowed: ['operator', 'resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
    'GET /v1/standards': { path: () => '/v1/standards', allowed: ['operator', 'resident', 'hospital', 'research'] },
    'GET /v1/rulesets': { path: () => '/v1/rulesets', allowed: ['operator', 'research'] },
    'GET /v1/rulesets/:id/:version': { path: () => '/v1/rulesets/acc-aha-2017/1.0.0', allowed: ['operator', 'research'] },
    'POST /v1/rulesets': { path: () => '/v1/rulesets', allowed: ['research'], wrongScope: { research: 'researchOther' }, body: () => ({}) },
    'POST /v1/rulesets/backtest': { path: () => '/v1/rulesets/backtest', allowed: ['operator', 'research'], wrongScope: { research: 'researchOther' }, body: () => ({ ruleSet: {}, days: 1 }) },
    'POST /v1/rulesets/:id/:version/activate': { path: () => '/v1/rulesets/esh-2023/1.0.0/activate', allowed: ['operator'] },
    'DELETE /v1/rulesets/:id/active': { path: () => '/v1/rulesets/esh-2023/active', allowed: ['operator'] },
    'GET /v1/residents/:id/alerts': { path: () => `${R}/alerts`, allowed: ['operator', 'resident', 'hospital', 'follower'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther', follower: 'followerOther' } },
    'GET /v1/alerts/:id/history': { path: () => `/v1/alerts/${alertId}/history`, allowed: ['operator', 'resident', 'hospital', 'follower'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther', follower: 'followerOther' } },
    'POST /v1/alerts/:id/ack': { path: () => `/v1/alerts/${alertId}/ack`, allowed: ['operator', 'resident', 'follower'], wrongScope: { resident: 'residentOther', follower: 'followerOther' } },
    'POST /v1/residents/:id/followers': { path: () => `${R}/followers`, allowed: ['resident'], wrongScope: { resident: 'residentOther' }, body: () => ({ name: 'x', relation: 'friend' }) },
    'GET /v1/residents/:id/followers': { path: () => `${R}/followers`, allowed: ['operator', 'resident'], wrongScope: { resident: 'residentOther' } },
    'DELETE /v1/residents/:id/followers/:followerId': { path: () => `${R}/followers/fol-0000000000`, allowed: ['operator', 'resident'], wrongScope: { resident: 'residentOther' } },
    'GET /v1/followers/me': { path: () => '/v1/followers/me', allowed: ['follower'] },
    'PUT /v1/followers/me': { path: () => '/v1/followers/me', allowed: ['follower'], body: () => ({}) },
    'DELETE /v1/followers/me': { path: () => '/v1/followers/me', allowed: ['follower'] },
    'GET /v1/residents/:id/overrides': { path: () => `${R}/overrides`, allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' } },
    'PUT /v1/residents/:id/overrides': { path: () => `${R}/overrides`, allowed: ['hospital'], wrongScope: { hospital: 'hospitalOther' }, body: () => ({ ruleKey: 'wearable-hr/hr-high-rest', params: { value: 110 } }) },
    'POST /v1/federation/rollups': { path: () => '/v1/federation/rollups', allowed: ['region'], wrongScope: { region: 'regionOther' }, body: () => rollup('local') },
    'GET /v1/regions/:id/aggregates': { path: () => '/v1/regions/local/aggregates', allowed: ['operator', 'region'], wrongScope: { region: 'regionOther' } },
    'GET /v1/outbox/dead': { path: () => '/v1/outbox/dead', allowed: ['operator'] },
    'POST /v1/outbox/redrive': { path: () => '/v1/outbox/redrive', allowed: ['operator'] },
    'POST /v1/api-keys': { path: () => '/v1/api-keys', allowed: ['operator'], body: () => ({ role: 'resident', scope: R1 }) },
    'GET /v1/api-keys': { path: () => '/v1/api-keys', allowed: ['operator'] },
    'DELETE /v1/api-keys/:id': { path: () => `/v1/api-keys/${ownKeyId}`, allowed: ['operator'] },
    'GET /v1/audit': { path: () => '/v1/audit', allowed: ['operator'] },
    'GET /v1/audit/verify': { path: () => '/v1/audit/verify', allowed: ['operator'] },
    'PUT /v1/residents/:id/consent': { path: () => `${R}/consent`, allowed: ['resident'], wrongScope: { resident: 'residentOther' }, body: () => ({ research: true }) },
    'POST /v1/hospitals': { path: () => '/v1/hospitals', allowed: ['operator'], body: () => ({ id: 'h9', name: 'x' }) },
    'PATCH /v1/hospitals/:id': { path: () => '/v1/hospitals/h1', allowed: ['operator'], body: () => ({ feeds: ['reports', 'alerts', 'summaries'] }) },
    'POST /v1/institutions': { path: () => '/v1/institutions', allowed: ['operator'], body: () => ({ id: 'i9', name: 'x' }) },
    'POST /v1/residents': { path: () => '/v1/residents', allowed: ['operator'], body: () => ({ id: 'res-new' }) },
    'PATCH /v1/residents/:id': { path: () => R, allowed: ['operator'], body: () => ({ birthYear: 1950 }) },
    'GET /v1/hospitals/:id/residents': { path: () => '/v1/hospitals/h1/residents', allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' } },
    'GET /v1/residents/:id/summaries': { path: () => `${R}/summaries`, allowed: ['operator', 'resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
    'GET /v1/residents/:id': { path: () => R, allowed: ['operator', 'resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
    'POST /v1/devices': { path: () => '/v1/devices', allowed: ['operator'], body: () => ({ id: 'dev-x', residentId: R1 }) },
    'POST /v1/devices/import': { path: () => '/v1/devices/import', allowed: ['operator'], body: () => [] },
    'GET /v1/devices': { path: () => '/v1/devices', allowed: ['operator'] },
    'GET /v1/devices/:id': { path: () => '/v1/devices/demo-device', allowed: ['operator'] },
    'POST /v1/devices/:id/rotate': { path: () => '/v1/devices/demo-dev-099/rotate', allowed: ['operator'] },
    'POST /v1/devices/:id/revoke': { path: () => '/v1/devices/demo-dev-099/revoke', allowed: ['operator'] },
    'GET /v1/device-models': { path: () => '/v1/device-models', allowed: ['operator'] },
    'GET /v1/device-models/:model': { path: () => '/v1/device-models/demo-cuff', allowed: ['operator'] },
    'PUT /v1/device-models/:model': { path: () => '/v1/device-models/demo-cuff', allowed: ['operator'], body: () => ({ status: 'validated', protocol: 'ESH-IP 2010', source: 'test' }) },
    'GET /v1/stats': { path: () => '/v1/stats', allowed: ['operator'] },
    'GET /v1/whoami': { path: () => '/v1/whoami', allowed: ['operator', 'resident', 'hospital', 'research', 'region', 'follower'] },
    'GET /v1/research/aggregates': { path: () => '/v1/research/aggregates', allowed: ['research'], wrongScope: { research: 'researchOther' } },
    'GET /v1/research/report-aggregates': { path: () => '/v1/research/report-aggregates', allowed: ['research'], wrongScope: { research: 'researchOther' } },
    'GET /v1/residents/:id/alert-preferences': { path: () => `${R}/alert-preferences`, allowed: ['operator', 'resident'], wrongScope: { resident: 'residentOther' } },
    'PUT /v1/residents/:id/alert-preferences': { path: () => `${R}/alert-preferences`, allowed: ['resident'], wrongScope: { resident: 'residentOther' }, body: () => ({ quietHours: { start: '22:00', end: '07:00' } }) },
    'POST /v1/residents/:id/snoozes': { path: () => `${R}/snoozes`, allowed: ['resident'], wrongScope: { resident: 'residentOther' }, body: () => ({ concern: 'bp-high', minutes: 60 }) },
    'DELETE /v1/residents/:id/snoozes/:concern': { path: () => `${R}/snoozes/bp-high`, allowed: ['resident'], wrongScope: { resident: 'residentOther' } },
    'GET /v1/alerts/attention': { path: () => '/v1/alerts/attention', allowed: ['operator', 'hospital'] },
    'POST /v1/alerts/:id/assign': { path: () => `/v1/alerts/${alertId}/assign`, allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' }, body: () => ({ to: 'nurse Zhang' }) },
    'POST /v1/alerts/:id/notes': { path: () => `/v1/alerts/${alertId}/notes`, allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' }, body: () => ({ text: 'called, no answer' }) },
    'POST /v1/alerts/:id/resolve': { path: () => `/v1/alerts/${alertId}/resolve`, allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' }, body: () => ({ reason: 'x' }) },
    'POST /v1/alerts/:id/close': { path: () => `/v1/alerts/${alertId}/close`, allowed: ['operator', 'hospital'], wrongScope: { hospital: 'hospitalOther' }, body: () => ({ reason: 'x' }) },
    'GET /v1/residents/:id/access-log': { path: () => `${R}/access-log`, allowed: ['operator', 'resident'], wrongScope: { resident: 'residentOther' } },
    'GET /v1/report-protocols': { path: () => '/v1/report-protocols', allowed: ['operator', 'resident', 'hospital'] },
    'POST /v1/residents/:id/reports': { path: () => `${R}/reports`, allowed: ['resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' }, body: () => ({ protocol: 'home-bp-7d', timeZone: 'Asia/Shanghai', guideline: 'china-2018' }) },
    'GET /v1/residents/:id/reports': { path: () => `${R}/reports`, allowed: ['operator', 'resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
    'GET /v1/residents/:id/reports/:runId': { path: () => `${R}/reports/rpt-0000000000000000`, allowed: ['operator', 'resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
    'DELETE /v1/residents/:id/reports/:runId': { path: () => `${R}/reports/rpt-0000000000000000`, allowed: ['resident', 'hospital'], wrongScope: { resident: 'residentOther', hospital: 'hospitalOther' } },
  }
  const roles: Role[] = ['operator', 'resident', 'hospital', 'research', 'region', 'follower']
  /** routes without a key: the invitation code is the credential */
  const PUBLIC = ['POST /v1/followers/accept']

  const call = async (method: string, path: string, key: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }

  it('the table covers every /v1 route', () => {
    const routes = t.app.api.vitalmeshRoutes.filter((r) => r.url.startsWith('/v1/') && r.roles !== 'public').map((r) => `${r.method} ${r.url}`)
    expect(routes.sort()).toEqual(Object.keys(table).sort())
    expect(t.app.api.vitalmeshRoutes.filter((r) => r.url.startsWith('/v1/') && r.roles === 'public').map((r) => `${r.method} ${r.url}`)).toEqual(PUBLIC)
  })

  it('each route declares (config.roles) exactly the roles of its row', () => {
    const declared = Object.fromEntries(t.app.api.vitalmeshRoutes.filter((r) => r.url.startsWith('/v1/')).map((r) => [`${r.method} ${r.url}`, r.roles]))
    for (const [route, c] of Object.entries(table)) expect([route, [...(declared[route] as string[])].sort()]).toEqual([route, [...c.allowed].sort()])
  })

  it('refuses every route to the roles it does not serve, with 403 and no data', async () => {
    for (const [route, c] of Object.entries(table)) {
      const method = route.split(' ')[0]!
      for (const role of roles.filter((r) => !c.allowed.includes(r))) {
        const r = await call(method, c.path(), keys[role]!, c.body?.())
        expect([route, role, r.status], JSON.stringify(r.body)).toEqual([route, role, 403])
        expect(Object.keys(r.body).sort()).toEqual(['code', 'message'])
        expect(r.body.code).toBe('VM_FORBIDDEN')
      }
    }
  })

  it('refuses every scoped route to a key of the right role but the wrong scope', async () => {
    for (const [route, c] of Object.entries(table)) {
      const method = route.split(' ')[0]!
      for (const [role, keyName] of Object.entries(c.wrongScope ?? {})) {
        const r = await call(method, c.path(), keys[keyName]!, c.body?.())
        expect([route, role, r.status], JSON.stringify(r.body)).toEqual([route, role, 403])
        expect(Object.keys(r.body).sort()).toEqual(['code', 'message'])
      }
    }
  })

  it('serves the right role and scope', async () => {
    expect((await call('GET', `${R}/readings`, keys.hospital!)).status).toBe(200)
    expect((await call('GET', `${R}/alerts`, keys.resident!)).status).toBe(200)
    expect((await call('GET', '/v1/hospitals/h1/residents', keys.hospital!)).body).toEqual({ hospitalId: 'h1', residents: [R1] })
    expect((await call('GET', '/v1/research/aggregates', keys.research!)).status).toBe(200)
    expect((await call('GET', '/v1/regions/local/aggregates', keys.region!)).status).toBe(200)
  })

  it('rate-limits a key that sends too many requests', async () => {
    const small = await startTestApp({ 'http.rateLimitPerMinute': 5 })
    try {
      const key = small.app.demo!.apiKeys.operator
      const statuses = []
      for (let i = 0; i < 7; i++) statuses.push((await fetch(`http://127.0.0.1:${small.httpPort}/v1/standards`, { headers: { authorization: `Bearer ${key}` } })).status)
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429])
      // another key is not affected
      expect((await fetch(`http://127.0.0.1:${small.httpPort}/v1/standards`, { headers: { authorization: `Bearer ${small.app.demo!.apiKeys.resident}` } })).status).toBe(200)
    } finally { await small.stop() }
  })
})
