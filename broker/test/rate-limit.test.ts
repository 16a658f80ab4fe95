import { describe, expect, it } from 'vitest'
import { PublishBudget } from '../rate-limit.ts'
import { Presence } from '../presence.ts'

describe('publish budget (token bucket)', () => {
  it('passes a burst, refuses the excess, refills at the rate, and calls persistent excess abuse', () => {
    const b = new PublishBudget({ ratePerS: 2, burst: 3, abuseRefusalsPerMinute: 2 }, 0)
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual(['ok', 'ok', 'ok', 'refused'])
    expect(b.take(499)).toBe('refused') // 0.998 tokens
    expect(b.take(500)).toBe('ok') // one token after 500 ms at 2/s
    expect(b.take(500)).toBe('abuse') // third refusal within the minute
    expect(b.idle(500)).toBe(false)
    // a minute later the bucket is full and the refusals are forgotten
    expect(b.idle(61_000)).toBe(true)
    expect(b.take(61_000)).toBe('ok')
  })
})

describe('presence', () => {
  it('counts sessions per device and writes last-seen and online in one batch per flush', () => {
    const writes: [string, number, boolean][][] = []
    const p = new Presence((seen) => writes.push([...seen]), () => {})
    expect(p.connected('d1', 10)).toBe(true)
    expect(p.connected('d1', 11)).toBe(false) // a second id:suffix session
    p.seen('d1', 12)
    expect(p.disconnected('d1', 13)).toBe(false)
    expect(p.isOnline('d1')).toBe(true)
    p.connected('d2', 14)
    expect(p.disconnected('d2', 15)).toBe(true)
    expect(p.onlineCount).toBe(1)
    p.flush()
    p.flush() // nothing new: no write
    expect(writes).toEqual([[['d1', 13, true], ['d2', 15, false]]])
  })

  it('writes a large batch in chunks, one per turn of the event loop, and all of it on stop', async () => {
    const writes: [string, number, boolean][][] = []
    const p = new Presence((seen) => writes.push([...seen]), () => {}, 2)
    p.start(60_000)
    for (let i = 0; i < 5; i++) p.connected(`d${i}`, i)
    p.flush()
    expect(writes.map((w) => w.length)).toEqual([2]) // the rest waits for the next turns
    await new Promise((r) => setImmediate(r))
    await new Promise((r) => setImmediate(r))
    expect(writes.map((w) => w.length)).toEqual([2, 2, 1])
    for (let i = 5; i < 10; i++) p.seen(`d${i}`, i)
    p.stop()
    expect(writes.map((w) => w.length)).toEqual([2, 2, 1, 5])
    expect(writes.flat().map(([id]) => id)).toEqual(Array.from({ length: 10 }, (_, i) => `d${i}`))
  })

  it('keeps the batch for the next flush when the write fails', () => {
    let fail = true
    const writes: [string, number, boolean][][] = []
    const p = new Presence((seen) => { const all = [...seen]; if (fail) throw new Error('disk full'); writes.push(all) }, () => {})
    p.connected('d1', 10)
    p.flush()
    fail = false
    p.flush()
    expect(writes).toEqual([[['d1', 10, true]]])
  })
})
