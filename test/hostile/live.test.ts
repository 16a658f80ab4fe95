import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { startTestApp, type TestApp } from '../helpers/app.ts'
import { openLive, type LiveClient } from '../helpers/live.ts'
import { ErrorCodes } from '../../core/index.ts'
import { LIVE_MAX_FRAME_BYTES, LiveClose } from '../../api/index.ts'

const CODES = new Set(Object.keys(ErrorCodes))
const REPLY_TYPES = new Set(['error', 'ready', 'watching', 'unwatched'])

/**
 * Hostile frames on the live stream (/v1/live), before and after authentication: each is
 * answered with an error frame carrying a stable code (or closes the socket with a code), and
 * afterwards the same socket and every other client are still served.
 */
describe('hostile live-stream frames', () => {
  let t: TestApp
  let bystander: LiveClient
  let residentKey: string
  const R = 'demo-resident'

  beforeAll(async () => {
    t = await startTestApp({ 'http.anonymousRateLimitPerMinute': 100_000 })
    residentKey = t.app.demo!.apiKeys.resident
    bystander = await openLive(t.httpPort, t.app.demo!.apiKeys.operator)
  })
  afterAll(async () => { await bystander?.close(); await t?.stop() })

  /** the bystander (an operator's socket opened before) still answers, and so does HTTP */
  const othersServed = async (): Promise<void> => {
    const from = bystander.messages.length
    bystander.send(JSON.stringify({ type: 'watch', residentId: R }))
    await bystander.next((m) => m.type === 'watching', 5000, from)
    expect((await fetch(`http://127.0.0.1:${t.httpPort}/healthz`)).status).toBe(200)
  }

  it('answers a `null` text frame from an unauthenticated client with an error code, and keeps serving', async () => {
    const c = await openLive(t.httpPort)
    c.send('null')
    expect(await c.next((m) => m.type === 'error')).toMatchObject({ code: 'VM_BAD_REQUEST' })
    for (const frame of ['0', '"auth"', '[]', '{"type":null}', '{"type":"auth","key":null}', '{"type":"watch","residentId":{"a":1}}', '{"__proto__":{"type":"auth"}}']) {
      const from = c.messages.length
      c.send(frame)
      const m = await c.next(() => true, 5000, from)
      expect(m.type, frame).toBe('error')
      expect(CODES.has(String(m.code)), frame).toBe(true)
    }
    await c.close()
    await othersServed()
  })

  const frame = fc.oneof(
    fc.string({ maxLength: 200 }).map((s) => ({ data: s, binary: false })),
    fc.jsonValue({ maxDepth: 4 }).map((v) => ({ data: JSON.stringify(v) ?? 'null', binary: false })),
    fc.record({ type: fc.constantFrom('auth', 'watch', 'unwatch', 'x', '__proto__'), key: fc.anything(), residentId: fc.anything() }, { requiredKeys: ['type'] })
      .map((o) => ({ data: JSON.stringify(o) ?? 'null', binary: false })),
    fc.uint8Array({ maxLength: 300 }).map((b) => ({ data: Buffer.from(b), binary: true })),
  )

  const answered = (m: Record<string, unknown>, what: string): void => {
    expect(REPLY_TYPES.has(String(m.type)), what + ' ' + JSON.stringify(m)).toBe(true)
    if (m.type === 'error') expect(CODES.has(String(m.code)), what).toBe(true)
  }

  it('answers any frame before authentication with a coded error (or closes with a code), never a crash', async () => {
    await fc.assert(fc.asyncProperty(frame, async (f) => {
      const c = await openLive(t.httpPort)
      try {
        c.send(f.data, f.binary)
        const first: Record<string, unknown> = await Promise.race([c.next(() => true), c.closed.then((code) => ({ type: 'closed', code }))])
        if (first.type === 'closed') expect([LiveClose.unauthorized, 1009]).toContain(first.code)
        else {
          answered(first, String(f.data))
          // a wrong key closes the socket (4401); otherwise it still answers: an unauthenticated watch is refused with a code
          if (first.code === 'VM_UNAUTHORIZED' && first.message === 'invalid API key') expect(await c.closed).toBe(LiveClose.unauthorized)
          else {
            const from = c.messages.length
            c.send(JSON.stringify({ type: 'watch', residentId: R }))
            expect(await c.next(() => true, 5000, from)).toMatchObject({ type: 'error', code: 'VM_UNAUTHORIZED' })
          }
        }
      } finally { await c.close() }
    }), { numRuns: 80 })
    await othersServed()
  })

  it('answers any frame after authentication with a coded error, and the socket goes on streaming', async () => {
    await fc.assert(fc.asyncProperty(frame, async (f) => {
      const c = await openLive(t.httpPort, residentKey)
      try {
        const from = c.messages.length
        c.send(f.data, f.binary)
        const first = await c.next(() => true, 5000, from)
        answered(first, String(f.data))
        const at = c.messages.length
        c.send(JSON.stringify({ type: 'watch', residentId: R }))
        await c.next((m) => m.type === 'watching', 5000, at)
      } finally { await c.close() }
    }), { numRuns: 80 })
    await othersServed()
  })

  it('closes a socket that sends an oversized frame (1009), and keeps serving', async () => {
    const c = await openLive(t.httpPort, residentKey)
    c.send('x'.repeat(LIVE_MAX_FRAME_BYTES + 1))
    expect(await c.closed).toBe(1009)
    const u = await openLive(t.httpPort)
    u.send(Buffer.alloc(1024 * 1024, 1), true)
    expect(await u.closed).toBe(1009)
    await othersServed()
  })

  it('answers a flood of frames with VM_RATE_LIMITED and closes the socket (4429), and keeps serving', async () => {
    for (const key of [undefined, residentKey]) {
      const c = await openLive(t.httpPort, key)
      for (let i = 0; i < 500 && c.ws.readyState === c.ws.OPEN; i++) c.send(JSON.stringify({ type: 'unwatch', residentId: R }))
      expect(await c.closed).toBe(LiveClose.flood)
      expect(c.messages.some((m) => m.type === 'error' && m.code === 'VM_RATE_LIMITED')).toBe(true)
    }
    await othersServed()
  })
})
