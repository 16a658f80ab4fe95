import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import pino from 'pino'
import { ManualClock, openDatabase } from '../../core/index.ts'
import { Outbox } from '../../forwarder/index.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { freePort } from '../../test/helpers/fhir.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { OutboxMirror } from '../outbox-mirror.ts'

const logger = pino({ level: 'silent' })

/**
 * The cluster's outbox on a real PostgreSQL and a real HTTP receiver: each "node" is an outbox
 * in a SQLite file of its own with its mirror, as app.ts wires them.
 */
describe("the cluster's outbox", () => {
  let server: PostgresServer
  let receiver: Server
  let url = ''
  const received: { key: string, body: string }[] = []
  const mirrors: OutboxMirror[] = []
  const outboxes: Outbox[] = []
  const clock = new ManualClock(Date.UTC(2026, 11, 7, 9))

  const node = async (name: string, rescuer = false): Promise<{ outbox: Outbox, mirror: OutboxMirror }> => {
    const db = openDatabase(join(tempDir(`vm-outbox-${name}-`), 'vitalmesh.db'))
    const outbox = new Outbox(db, clock, logger, { pollMs: 20, timeoutMs: 2000, maxBackoffMs: 200 })
    const mirror = await OutboxMirror.open({ db, postgresUrl: server.url, clock, logger, source: name, enqueue: (e) => outbox.enqueue(e), rescuer: () => rescuer, deadAfterMs: 15_000 })
    outboxes.push(outbox)
    mirrors.push(mirror)
    return { outbox, mirror }
  }

  beforeAll(async () => {
    server = await startPostgres()
    const port = await freePort()
    receiver = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => { body += c.toString() })
      req.on('end', () => { received.push({ key: String(req.headers['idempotency-key']), body }); res.writeHead(200).end() })
    })
    await new Promise<void>((resolve) => receiver.listen(port, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${port}/hook`
  }, 60_000)
  afterAll(async () => {
    for (const o of outboxes) o.stop()
    for (const m of mirrors) await m.stop()
    await new Promise((resolve) => receiver?.close(resolve))
    await server?.stop()
  })

  it('delivers what a node queued and never sent when the node is gone, once; the node that comes back does not send it again', async () => {
    const x = await node('x')
    const y = await node('y', true)
    // x queues an escalation and ships it (with its heartbeat), then dies before its outbox sends it
    x.outbox.enqueue({ sink: 'escalation', url, headers: {}, body: '{"alert":"a1"}', idempotencyKey: 'esc:a1' })
    await x.mirror.flush()
    await y.mirror.flush()
    // x was seen just now: nothing is taken from it
    expect(await y.mirror.rescue()).toBe(0)
    // 16 s later y is still seen (its loop ships every 250 ms), x is not
    clock.set(clock.now() + 16_000)
    await y.mirror.flush()
    expect(await y.mirror.rescue()).toBe(1)
    expect(await y.mirror.rescue()).toBe(0) // taken once
    y.outbox.start()
    await y.outbox.idle()
    expect(received).toEqual([{ key: 'esc:a1', body: '{"alert":"a1"}' }])
    await y.mirror.flush() // delivered, in the cluster's outbox too
    // x comes back: what y delivered for it is delivered here too, before its outbox starts
    expect(await x.mirror.reconcile()).toBe(1)
    x.outbox.start()
    await x.outbox.idle()
    expect(received.length).toBe(1)
    expect(x.outbox.pending()).toBe(0)
  })

  it('takes nothing of a node that is alive, nor what it delivered', async () => {
    const a = await node('a')
    const b = await node('b', true)
    a.outbox.enqueue({ sink: 'fhir', url, headers: {}, body: '{"bundle":1}', idempotencyKey: 'fhir:b1' })
    a.outbox.start()
    await a.outbox.idle()
    await a.mirror.flush()
    a.outbox.enqueue({ sink: 'fhir', url, headers: {}, body: '{"bundle":2}', idempotencyKey: 'fhir:b2' })
    await a.mirror.flush()
    await b.mirror.flush()
    expect(await b.mirror.rescue()).toBe(0)
    await a.outbox.idle()
    await a.mirror.flush()
    clock.set(clock.now() + 16_000)
    await b.mirror.flush()
    // a is gone now, but delivered both: nothing left to take
    expect(await b.mirror.rescue()).toBe(0)
    expect(received.filter((r) => r.key.startsWith('fhir:')).map((r) => r.key)).toEqual(['fhir:b1', 'fhir:b2'])
  })
})
