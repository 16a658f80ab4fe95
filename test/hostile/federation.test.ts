import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { startTestApp, type TestApp } from '../helpers/app.ts'
import { ErrorCodes } from '../../core/index.ts'
import { windowStart } from '../../forwarder/index.ts'

const CODES = new Set(Object.keys(ErrorCodes))
const HOUR = 3600_000

/**
 * Hostile federation bodies (a child region's roll-ups): each is stored only when it passes
 * the roll-up check, or refused with a code; afterwards the parent's aggregates, its window
 * closing and every other client are still served. Never a 5xx.
 */
describe('hostile federation roll-ups', () => {
  let t: TestApp
  let base: string
  let region: string
  let operator: string
  const start = windowStart(Date.now(), HOUR) - HOUR
  const valid = () => ({
    schema: 'vitalmesh.region-rollup/1', region: 'county-z', level: 'county', window: { kind: '1h', start, end: start + HOUR }, version: 1, residents: 6,
    hr: { n: 2, min: 70, max: 80, sum: 150, bins: { 70: 1, 80: 1 } }, sys: { n: 1, min: 120, max: 120, sum: 120, bins: { 120: 1 } }, dia: { n: 1, min: 80, max: 80, sum: 80, bins: { 80: 1 } },
    bpCategories: { elevated: 1 }, children: [],
  })
  beforeAll(async () => {
    t = await startTestApp()
    base = `http://127.0.0.1:${t.httpPort}`
    region = t.app.registry.addApiKey('region', 'county-z')
    operator = t.app.demo!.apiKeys.operator
  })
  afterAll(async () => { await t?.stop() })

  const post = async (body: unknown) => {
    const res = await fetch(`${base}/v1/federation/rollups`, { method: 'POST', headers: { authorization: `Bearer ${region}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, body: await res.json() as Record<string, unknown> }
  }
  const aggregatesServed = async (): Promise<void> => {
    const r = await fetch(`${base}/v1/regions/local/aggregates?window=1h&from=0`, { headers: { authorization: `Bearer ${operator}` } })
    expect(r.status, await r.clone().text()).toBe(200)
    expect(() => t.app.aggregator.tick()).not.toThrow()
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
  }

  it('refuses histogram keys that are not whole values or are huge with 400 VM_INVALID_ROLLUP, and the window still answers', async () => {
    for (const bins of [{ abc: 1 }, { 2000000000: 1 }, { '-5': 1 }, { 1e21: 1 }]) {
      const body = { ...valid(), hr: { n: 1, min: 70, max: 70, sum: 70, bins } }
      const r = await post(body)
      expect([JSON.stringify(bins), r.status, r.body.code]).toEqual([JSON.stringify(bins), 400, 'VM_INVALID_ROLLUP'])
    }
    const misaligned = await post({ ...valid(), window: { kind: '1h', start: start + 1, end: start + 1 + HOUR } })
    expect([misaligned.status, misaligned.body.code]).toEqual([400, 'VM_INVALID_ROLLUP'])
    expect((await post(valid())).status).toBe(202)
    await aggregatesServed()
  })

  const anyValue = fc.oneof(fc.anything(), fc.string(), fc.integer(), fc.double(), fc.constant(null))
  const stats = fc.record({
    n: fc.oneof(fc.nat(10), anyValue), min: fc.oneof(fc.integer({ min: 0, max: 400 }), anyValue), max: fc.oneof(fc.integer({ min: 0, max: 400 }), anyValue), sum: fc.oneof(fc.nat(4000), anyValue),
    bins: fc.oneof(fc.dictionary(fc.oneof(fc.string(), fc.integer().map(String), fc.constantFrom('2000000000', '1e9', '-0', '__proto__', 'constructor', '70.5')), fc.oneof(fc.nat(5), anyValue), { maxKeys: 6 }), anyValue),
  })
  const body = fc.record({
    schema: fc.oneof(fc.constant('vitalmesh.region-rollup/1'), anyValue),
    region: fc.oneof(fc.constant('county-z'), fc.constant('county-y'), anyValue),
    level: fc.oneof(fc.constant('county'), anyValue),
    window: fc.oneof(fc.record({ kind: fc.oneof(fc.constantFrom('1h', '1d', '2s'), anyValue), start: fc.oneof(fc.constant(start), fc.integer(), fc.double(), anyValue), end: fc.oneof(fc.constant(start + HOUR), fc.integer(), anyValue) }), anyValue),
    version: fc.oneof(fc.integer({ min: 1, max: 5 }), anyValue),
    residents: fc.oneof(fc.nat(100), anyValue),
    hr: fc.oneof(stats, anyValue), sys: fc.oneof(stats, anyValue), dia: fc.oneof(stats, anyValue),
    bpCategories: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.nat(3), anyValue), { maxKeys: 4 }), anyValue),
    children: fc.oneof(fc.array(fc.string(), { maxLength: 3 }), anyValue),
  }, { requiredKeys: [] })

  it('answers any roll-up body with 202 or a coded 4xx, and nothing stored breaks a window', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(body, anyValue), async (b) => {
      const r = await post(b)
      expect(r.status, JSON.stringify(b)).toBeLessThan(500)
      if (r.status >= 400) expect(CODES.has(String(r.body.code)), JSON.stringify(r.body)).toBe(true)
    }), { numRuns: 300 })
    await aggregatesServed()
  })
})
