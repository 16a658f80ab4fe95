import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodePayload, defaultPlausibility, ErrorCodes, fastReading, SingleReadingSchema, BatchedReadingSchema } from '../index.ts'

const NOW = Date.UTC(2026, 10, 29, 12)
const CODES = new Set(Object.keys(ErrorCodes))

/** Property-based tests: whatever a device sends, the decoder answers with readings or coded errors, never a throw. */
describe('payload decoder under arbitrary input', () => {
  it('never throws on arbitrary bytes, and every error has a stable code and a message', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      const d = decodePayload(Buffer.from(bytes), NOW)
      for (const e of d.errors) { expect(CODES.has(e.code)).toBe(true); expect(e.message.length).toBeGreaterThan(0) }
      expect(d.readings.length + d.errors.length).toBeGreaterThan(0)
    }), { numRuns: 2000 })
  })

  it('never throws on arbitrary JSON values', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const d = decodePayload(Buffer.from(JSON.stringify(v)), NOW)
      for (const e of d.errors) expect(CODES.has(e.code)).toBe(true)
    }), { numRuns: 2000 })
  })

  const reading = fc.record({
    seq: fc.nat(),
    ts: fc.integer({ min: NOW - 86400_000, max: NOW }),
    hr: fc.option(fc.double({ min: -50, max: 500, noNaN: true }), { nil: undefined }),
    sys: fc.option(fc.double({ min: 0, max: 400, noNaN: true }), { nil: undefined }),
    dia: fc.option(fc.double({ min: 0, max: 300, noNaN: true }), { nil: undefined }),
  }, { requiredKeys: ['seq', 'ts'] })

  it('accepts exactly the plausible readings, keeps each value, and reports every other one with its seq', () => {
    const L = defaultPlausibility
    fc.assert(fc.property(fc.array(reading, { minLength: 1, maxLength: 30 }), (rs) => {
      const d = decodePayload(Buffer.from(JSON.stringify({ v: 1, readings: rs })), NOW)
      expect(d.readings.length + d.errors.length).toBe(rs.length)
      for (const r of rs) {
        const hasBp = r.sys !== undefined && r.dia !== undefined
        const plausible = (r.hr !== undefined || hasBp) && (r.sys === undefined) === (r.dia === undefined) &&
          (r.hr === undefined || (r.hr >= L.hr[0] && r.hr <= L.hr[1])) &&
          (!hasBp || (r.sys! >= L.sys[0] && r.sys! <= L.sys[1] && r.dia! >= L.dia[0] && r.dia! <= L.dia[1] && r.dia! < r.sys!))
        const accepted = d.readings.find((x) => x.seq === r.seq && x.ts === r.ts && x.hr === r.hr && x.sys === r.sys)
        const rejected = d.errors.find((e) => e.seq === r.seq)
        if (plausible) expect(accepted, JSON.stringify(r)).toBeTruthy()
        else expect(rejected, JSON.stringify(r)).toBeTruthy()
      }
    }), { numRuns: 500 })
  })
})

describe('the fast path of the reading check agrees with the zod schema', () => {
  // values of every type for every field, and a stray key now and then
  const anyValue = fc.oneof(fc.constant(undefined), fc.constant(null), fc.boolean(), fc.integer({ min: -5, max: 2 ** 53 + 5 }), fc.double(),
    fc.constantFrom(0, 1, 0.5, 1.5, -1, 2 ** 53 - 1, 2 ** 53, 'rest', 'sleep', 'run', '2026-11-29T12:00:00Z', ''))
  // mostly a valid value (or none), sometimes anything: so both answers come up often
  const field = (valid: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: fc.constant(undefined), weight: 2 }, { arbitrary: anyValue, weight: 1 })
  const candidate = fc.record({
    v: field(fc.constant(1)), seq: field(fc.nat()), ts: field(fc.oneof({ arbitrary: fc.integer({ min: 1, max: 2 ** 45 }), weight: 4 }, { arbitrary: fc.constant('2026-11-29T12:00:00+01:00'), weight: 1 })),
    hr: field(fc.double({ min: 0, max: 300, noNaN: true })), sys: field(fc.integer({ min: 40, max: 300 })), dia: field(fc.integer({ min: 20, max: 200 })),
    activity: field(fc.constantFrom('rest', 'sleep', 'light')), motion: field(fc.boolean()), confidence: field(fc.double({ min: 0, max: 1, noNaN: true })),
    extra: fc.oneof({ arbitrary: fc.constant(undefined), weight: 12 }, { arbitrary: anyValue, weight: 1 }),
  }).map((o) => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)))

  for (const single of [true, false]) {
    it(`${single ? 'single' : 'batched'} readings: whatever the fast path accepts, zod accepts as the same reading; what zod accepts with ts in ms, the fast path accepts`, () => {
      const schema = single ? SingleReadingSchema : BatchedReadingSchema
      let fastAccepted = 0; let zodOnly = 0
      fc.assert(fc.property(candidate, (raw) => {
        const fast = fastReading(raw, single)
        if (fast !== undefined) fastAccepted++
        const z = schema.safeParse(raw)
        if (fast !== undefined) {
          expect(z.success).toBe(true)
          expect(fast).toEqual(z.data)
        } else if (z.success) {
          zodOnly++
          expect(typeof (z.data as { ts: unknown }).ts).toBe('string')
        }
      }), { numRuns: 5000 })
      expect(fastAccepted).toBeGreaterThan(100) // the property was exercised on accepted readings, not only on refusals (about 5% of candidates are accepted: 242-300 of 5,000 seen)
      expect(zodOnly).toBeGreaterThan(0)
    })
  }
})
