import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import pino from 'pino'
import { ManualClock, openDatabase } from '../../core/index.ts'
import { DeviceModelCatalogue, ReportBook, addDays, zonedTime, type FeedRow } from '../../reports/index.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { ReportMirror } from '../report-mirror.ts'

const logger = pino({ level: 'silent' })
const TZ = 'Asia/Shanghai'
const catalogue = new DeviceModelCatalogue([{ model: 'cuff-a', measurement: 'cuff', validated: true, source: 'test' }])

/** morning and evening, two readings a minute apart, days `from`..`to` of the week starting 2025-06-01 */
function days (residentId: string, sys: number, from: number, to: number): FeedRow[] {
  const rows: FeedRow[] = []
  for (let d = from; d <= to; d++) for (const m of [7 * 60, 19 * 60]) for (const k of [0, 1]) rows.push({ residentId, deviceId: 'dev-cuff', ts: zonedTime(addDays('2025-06-01', d - 1), m, TZ) + k * 60_000, sys, dia: 80, hr: 70 })
  return rows
}

/**
 * The cluster's copy of every node's report runs on a real PostgreSQL: each "node" is a
 * ReportBook on a SQLite file of its own, with its mirror, as app.ts wires them.
 */
describe("the cluster's copy of every node's report runs", () => {
  let server: PostgresServer
  const mirrors: ReportMirror[] = []
  const clock = new ManualClock(zonedTime('2025-06-01', 6 * 60, TZ))
  const node = async (name: string, owns: Set<string>): Promise<{ book: ReportBook, mirror: ReportMirror, db: ReturnType<typeof openDatabase> }> => {
    const db = openDatabase(join(tempDir(`vm-reports-${name}-`), 'vitalmesh.db'))
    const book = new ReportBook({ db, clock, logger, deviceModel: () => 'cuff-a', catalogue, owns: (id) => owns.has(id), options: { finishGraceMs: 3600_000, amendWindowMs: 3 * 86400_000 } })
    const mirror = await ReportMirror.open({ db, postgresUrl: server.url, clock, logger, source: name, snapshot: (id) => book.snapshot(id), amendMs: book.amendWindowMs })
    mirrors.push(mirror)
    return { book, mirror, db }
  }

  beforeAll(async () => { server = await startPostgres() }, 60_000)
  afterAll(async () => {
    for (const m of mirrors) await m.stop()
    await server?.stop()
  })

  it('a home-BP week begun on one node is finished by the node that took the resident over, over all its readings; the first node sends nothing', async () => {
    const onX = new Set(['r1'])
    const x = await node('x', onX)
    const run = x.book.start({ residentId: 'r1', protocolId: 'home-bp-7d', timeZone: TZ, guideline: 'china-2018', startedBy: 'hospital:h1' })
    x.db.transaction(() => { x.book.consume(days('r1', 138, 1, 3)) })()
    await x.mirror.flush()
    // x loses the resident on day 4; y takes it over, and its readings of days 4-7 come to y
    onX.delete('r1')
    const y = await node('y', new Set(['r1']))
    y.book.adopt(await y.mirror.handedOver((id) => id === 'r1'))
    y.db.transaction(() => { y.book.consume(days('r1', 142, 4, 7)) })()
    clock.set(zonedTime('2025-06-08', 2 * 60, TZ))
    expect(x.book.tick()).toEqual([])
    const done = y.book.tick()
    expect(done.map((r) => [r.runId, r.version])).toEqual([[run.id, 1]])
    expect(done[0]!.result).toMatchObject({ kind: 'home-bp', adherence: { done: 14 } })
    // research outcomes over every node's runs: y's finished report, from the cluster's copy
    await y.mirror.flush()
    expect(await x.mirror.finishedOutcomes(0, Date.now())).toEqual(y.book.finishedOutcomes(0, Date.now()))
    expect((await x.mirror.finishedOutcomes(0, Date.now())).map((o) => o.runId)).toEqual([run.id])
  })
})
