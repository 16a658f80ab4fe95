import { describe, expect, it } from 'vitest'
import { decodePayload, defaultPlausibility } from '../index.ts'

const now = Date.UTC(2026, 10, 29, 12)
const dec = (x: unknown) => decodePayload(Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)), now)

describe('payload v1 decoder', () => {
  it('accepts a single reading and normalises an ISO timestamp to epoch ms', () => {
    expect(dec({ v: 1, seq: 1, ts: now - 1000, hr: 70, sys: 120, dia: 80, activity: 'rest', motion: false, confidence: 0.9 }))
      .toEqual({ errors: [], readings: [{ seq: 1, ts: now - 1000, hr: 70, sys: 120, dia: 80, activity: 'rest', motion: false, confidence: 0.9 }] })
    expect(dec({ v: 1, seq: 2, ts: new Date(now - 60_000).toISOString(), hr: 55 }).readings).toEqual([{ seq: 2, ts: now - 60_000, hr: 55 }])
    expect(dec({ v: 1, seq: 3, ts: now, sys: 130, dia: 85 }).readings).toEqual([{ seq: 3, ts: now, sys: 130, dia: 85 }])
  })

  it('names what is wrong', () => {
    expect(dec('{nope').errors[0]).toMatchObject({ code: 'VM_MALFORMED_PAYLOAD' })
    expect(dec({ v: 1, seq: 1, ts: now, hr: '70' }).errors[0]!.message).toMatch(/hr/)
    expect(dec({ v: 1, seq: 1, ts: now, hr: 70, extra: 1 }).errors[0]).toMatchObject({ code: 'VM_INVALID_READING', seq: 1 })
    expect(dec({ v: 1, seq: -1, ts: now, hr: 70 }).errors[0]!.message).toMatch(/seq/)
    expect(dec({ v: 1, seq: 1.5, ts: now, hr: 70 }).errors[0]!.code).toBe('VM_INVALID_READING')
    expect(dec({ v: 1, seq: 1, ts: 'yesterday', hr: 70 }).errors[0]!.message).toMatch(/ts/)
    expect(dec([1, 2]).errors[0]!.code).toBe('VM_INVALID_READING')
    expect(dec(null).errors[0]!.code).toBe('VM_INVALID_READING')
    expect(dec({ v: 1, seq: 1, ts: now, dia: 80 }).errors[0]!.message).toMatch(/sys and dia/)
  })

  it('rejects implausible values at the plausibility bounds, and keeps plausible extremes', () => {
    const [lo, hi] = defaultPlausibility.hr
    expect(dec({ v: 1, seq: 1, ts: now, hr: lo }).readings.length).toBe(1)
    expect(dec({ v: 1, seq: 1, ts: now, hr: hi }).readings.length).toBe(1)
    expect(dec({ v: 1, seq: 1, ts: now, hr: lo - 0.1 }).errors[0]!.code).toBe('VM_IMPLAUSIBLE_READING')
    expect(dec({ v: 1, seq: 1, ts: now, hr: hi + 1 }).errors[0]!.code).toBe('VM_IMPLAUSIBLE_READING')
    // a real hypertensive emergency and NEWS2-scored extremes are never rejected
    expect(dec({ v: 1, seq: 1, ts: now, sys: 250, dia: 140, hr: 35 }).readings.length).toBe(1)
    expect(dec({ v: 1, seq: 1, ts: now, sys: 120, dia: 120 }).errors[0]!.message).toMatch(/lower than sys/)
    expect(dec({ v: 1, seq: 1, ts: now + 10 * 60_000, hr: 70 }).errors[0]!.message).toMatch(/future/)
    expect(dec({ v: 1, seq: 1, ts: now - 40 * 86400_000, hr: 70 }).errors[0]!.message).toMatch(/older/)
  })

  it('keeps the good readings of a batch and reports each bad one with its seq', () => {
    const d = dec({ v: 1, readings: [{ seq: 1, ts: now, hr: 70 }, { seq: 2, ts: now, hr: 'x' }, { seq: 3, ts: now, sys: 90, dia: 100 }, { seq: 4, ts: now, hr: 80 }] })
    expect(d.readings.map((r) => r.seq)).toEqual([1, 4])
    expect(d.errors.map((e) => [e.code, e.seq])).toEqual([['VM_INVALID_READING', 2], ['VM_IMPLAUSIBLE_READING', 3]])
    expect(dec({ v: 1, readings: [] }).errors[0]!.code).toBe('VM_INVALID_READING')
    expect(dec({ v: 1, readings: Array.from({ length: 501 }, (_, i) => ({ seq: i, ts: now, hr: 70 })) }).errors[0]!.message).toMatch(/readings/)
  })
})
