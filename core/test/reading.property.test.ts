import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodePayload, defaultPlausibility, ErrorCodes } from '../index.ts'

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
