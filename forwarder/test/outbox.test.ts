import { afterAll, describe, expect, it } from 'vitest'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { ManualClock, openDatabase, silentLogger, systemClock } from '../../core/index.ts'
import { Outbox } from '../index.ts'
import { waitFor } from '../../test/helpers/proc.ts'

describe('outbox', () => {
  const servers: FastifyInstance[] = []
  afterAll(async () => { for (const s of servers) await s.close() })
  async function server (handler: (n: number) => Promise<number | 'hang'>): Promise<{ url: string, hits: { key: string, body: unknown }[] }> {
    const hits: { key: string, body: unknown }[] = []
    const s = Fastify({ forceCloseConnections: true })
    s.post('/in', async (req, reply) => {
      hits.push({ key: String(req.headers['idempotency-key']), body: req.body })
      const r = await handler(hits.length)
      if (r === 'hang') await new Promise(() => {})
      return reply.status(r as number).send({})
    })
    await s.listen({ port: 0, host: '127.0.0.1' })
    servers.push(s)
    return { url: `http://127.0.0.1:${(s.server.address() as AddressInfo).port}/in`, hits }
  }

  it('keeps one endpoint that hangs from delaying another', async () => {
    const hanging = await server(async () => 'hang')
    const fine = await server(async () => 200)
    const o = new Outbox(openDatabase(':memory:'), systemClock, silentLogger(), { pollMs: 20, timeoutMs: 5000, maxBackoffMs: 100 })
    o.enqueue({ sink: 'a', url: hanging.url, headers: {}, body: '{"n":1}', idempotencyKey: 'a1' })
    for (let i = 0; i < 5; i++) o.enqueue({ sink: 'b', url: fine.url, headers: {}, body: `{"n":${i}}`, idempotencyKey: `b${i}` })
    o.start()
    await waitFor('the healthy endpoint to get all five', () => fine.hits.length === 5, 3000)
    expect(fine.hits.map((h) => h.key)).toEqual(['b0', 'b1', 'b2', 'b3', 'b4'])
    expect(hanging.hits.length).toBe(1)
    o.stop()
  })

  it('stop() aborts a delivery under way; settled() resolves before the database may close, and the message stays due', async () => {
    const hanging = await server(async () => 'hang')
    const db = openDatabase(':memory:')
    const o = new Outbox(db, systemClock, silentLogger(), { pollMs: 20, timeoutMs: 5000, maxBackoffMs: 100 })
    o.enqueue({ sink: 'a', url: hanging.url, headers: {}, body: '{"n":1}', idempotencyKey: 'a1' })
    o.start()
    await waitFor('the delivery to be under way', () => hanging.hits.length === 1, 3000)
    const t0 = Date.now()
    o.stop()
    await o.settled()
    expect(Date.now() - t0).toBeLessThan(1000) // not the 5 s request timeout
    expect(o.pending()).toBe(1)
    expect(o.stats.failures).toBe(0) // an abort at shutdown is not the endpoint's failure
    db.close() // nothing of the outbox touches it after settled()
    // a positive control instead of a pause: a second outbox, polling as often, delivers through
    // several poll cycles; had the stopped one kept a timer or a write, it would have run by then
    // (an error on the closed database fails the test as an unhandled rejection)
    const fine = await server(async () => 200)
    const db2 = openDatabase(':memory:')
    const o2 = new Outbox(db2, systemClock, silentLogger(), { pollMs: 20, timeoutMs: 5000, maxBackoffMs: 100 })
    for (let i = 0; i < 3; i++) o2.enqueue({ sink: 'b', url: fine.url, headers: {}, body: `{"n":${i}}`, idempotencyKey: `b${i}` })
    o2.start()
    await waitFor('the second outbox to deliver', () => fine.hits.length === 3, 3000)
    o2.stop()
    await o2.settled()
    db2.close()
  })

  it('a message the receiver refuses (4xx) keeps the reason it gave and does not pause the endpoint\'s other messages', async () => {
    // a FHIR server that refuses one Bundle as Medplum does, and takes the others
    const hits: string[] = []
    const fhir = Fastify({ forceCloseConnections: true })
    fhir.post('/fhir', async (req, reply) => {
      const key = String(req.headers['idempotency-key'])
      hits.push(key)
      if (key === 'big') return await reply.status(400).type('application/fhir+json').send({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text: 'Transaction requires strict isolation but has too many entries' } }] })
      return await reply.status(200).send({ resourceType: 'Bundle', type: 'transaction-response' })
    })
    await fhir.listen({ port: 0, host: '127.0.0.1' })
    servers.push(fhir)
    const url = `http://127.0.0.1:${(fhir.server.address() as AddressInfo).port}/fhir`
    const clock = new ManualClock(Date.now())
    const o = new Outbox(openDatabase(':memory:'), clock, silentLogger(), { pollMs: 10, timeoutMs: 1000, maxBackoffMs: 20, breakerFailures: 3, breakerOpenMs: 60_000, deadLetterAfterMs: 1500 })
    o.enqueue({ sink: 'hospital-fhir', url, headers: {}, body: '{}', idempotencyKey: 'big' })
    o.start()
    // refused more often than the breaker's count of failures
    for (let n = 1; n <= 4; n++) {
      await waitFor(`refusal ${n}`, () => o.stats.failures === n, 3000)
      clock.advance(25)
    }
    expect(o.stats.circuitOpened).toBe(0)
    // the hospital's other messages still go: the endpoint is up, it refused one Bundle
    for (let i = 0; i < 3; i++) o.enqueue({ sink: 'hospital-fhir', url, headers: {}, body: '{}', idempotencyKey: `ok${i}` })
    await waitFor('the other messages delivered', () => o.stats.delivered === 3, 3000)
    // kept until dead-lettered, with the reason the server gave
    clock.advance(1500)
    await waitFor('the refused message dead-lettered', () => o.deadLetters().length === 1, 3000)
    expect(o.deadLetters()[0]).toMatchObject({ idempotencyKey: 'big', lastError: 'HTTP 400: Transaction requires strict isolation but has too many entries' })
    o.stop()
  })

  it('ignores a repeated idempotency key, opens the circuit after repeated failures, dead-letters and re-drives', async () => {
    let failing = true
    const flaky = await server(async () => failing ? 500 : 200)
    const other = await server(async () => 200)
    // backoff, circuit and dead letters are decided by the outbox's clock; this one moves only when the test moves it
    const clock = new ManualClock(Date.now())
    const o = new Outbox(openDatabase(':memory:'), clock, silentLogger(), { pollMs: 10, timeoutMs: 1000, maxBackoffMs: 20, breakerFailures: 3, breakerOpenMs: 400, deadLetterAfterMs: 1500 })
    expect(o.enqueue({ sink: 'h', url: flaky.url, headers: {}, body: '{}', idempotencyKey: 'k1' })).toBe(true)
    expect(o.enqueue({ sink: 'h', url: flaky.url, headers: {}, body: '{}', idempotencyKey: 'k1' })).toBe(false)
    o.start()
    // three failures, each retried once its backoff (at most 20 ms) has passed on the clock
    for (let n = 1; n <= 3; n++) {
      await waitFor(`failed attempt ${n}`, () => o.stats.failures === n, 3000)
      clock.advance(25)
    }
    expect(o.stats.circuitOpened).toBe(1)
    // the retry is due now, but the circuit is open. Proof that the outbox polled since: a message for
    // another endpoint, enqueued now, is delivered; the poll that sent it passed over k1
    o.enqueue({ sink: 'o', url: other.url, headers: {}, body: '{}', idempotencyKey: 'o1' })
    await waitFor('the other endpoint\'s delivery', () => o.stats.delivered === 1, 3000)
    expect(flaky.hits.length).toBe(3) // no attempt while open
    // the pause over, one trial (half-open); it fails, and the circuit opens again at once
    clock.advance(400)
    await waitFor('the trial after the pause', () => o.stats.failures === 4, 3000)
    expect(o.stats.circuitOpened).toBe(2)
    clock.advance(1500) // more than deadLetterAfterMs since k1 was enqueued
    await waitFor('the message to be dead-lettered', () => o.deadLetters().length === 1, 3000)
    expect(o.deadLetters()[0]).toMatchObject({ sink: 'h', idempotencyKey: 'k1', lastError: 'HTTP 500' })
    expect(o.pending()).toBe(0)
    failing = false
    expect(o.redrive('h')).toBe(1)
    await waitFor('delivery after the re-drive', () => o.stats.delivered === 2, 3000)
    expect(o.deadLetters()).toEqual([])
    expect(flaky.hits.map((h) => h.key)).toEqual(['k1', 'k1', 'k1', 'k1', 'k1'])
    o.stop()
  })
})
