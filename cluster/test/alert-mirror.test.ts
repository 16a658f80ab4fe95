import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import pino from 'pino'
import { openDatabase, type DB } from '../../core/index.ts'
import { AlertStore, type Alert } from '../../alerting/store.ts'
import { startPostgres, type PostgresServer } from '../../test/helpers/postgres.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { AlertMirror, ClusterAlerts } from '../alert-mirror.ts'

const logger = pino({ level: 'silent' })
const T = Date.UTC(2026, 11, 7, 8)

function alert (id: string, residentId: string, over: Partial<Alert> = {}): Alert {
  return {
    id, residentId, ruleSetId: 'acc-aha-2017', ruleSetVersion: '1.0.0', ruleId: 'bp-category', ruleKey: 'acc-aha-2017/bp-category', concern: 'bp-high',
    severity: 'critical', state: 'open', openedAt: T, acknowledgedAt: null, acknowledgedBy: null, resolvedAt: null,
    message: 'Blood pressure: 190/115 mmHg (hypertensive crisis).', messages: { en: 'Blood pressure: 190/115 mmHg (hypertensive crisis).', 'zh-CN': '血压 190/115 mmHg（高血压危象）。' }, language: 'en',
    reading: { deviceId: 'cuff-1', seq: 1, ts: T }, firstReading: { deviceId: 'cuff-1', seq: 1, ts: T }, detail: {} as Alert['detail'], escalatedAt: null,
    historic: false, flapCount: 0, endedReason: null, clearedFrom: null, deskAt: null, followersAt: null, assignedTo: null, closedAt: null, closedBy: null,
    ...over,
  }
}

/**
 * The cluster's copy of every node's alerts on a real PostgreSQL: each "node" is alerting's
 * tables in a SQLite file of its own (AlertStore, which AlertBook writes through), with its mirror.
 */
describe("the cluster's copy of every node's alerts", () => {
  let server: PostgresServer
  const opened: ClusterAlerts[] = []
  const node = async (name: string): Promise<{ db: DB, store: AlertStore, mirror: AlertMirror }> => {
    const db = openDatabase(join(tempDir(`vm-alerts-${name}-`), 'vitalmesh.db'))
    const store = new AlertStore(db)
    const cluster = await ClusterAlerts.open(server.url)
    opened.push(cluster)
    return { db, store, mirror: new AlertMirror({ db, alert: (id) => store.get(id), cluster, source: name, logger }) }
  }

  beforeAll(async () => { server = await startPostgres() }, 60_000)
  afterAll(async () => {
    for (const c of opened) await c.close().catch(() => {})
    await server?.stop()
  })

  it('what each node raised and changed is read on every node, as it is now, the worklist in the duty desk\'s order', async () => {
    const a = await node('a')
    const c = await node('c')
    a.store.insert(alert('al-1', 'res-1'), T)
    c.store.insert(alert('al-2', 'res-2', { severity: 'warning', concern: 'bp-high', openedAt: T + 1000 }), T + 1000)
    c.store.insert(alert('al-3', 'res-2', { openedAt: T + 2000 }), T + 2000)
    c.store.save(alert('al-3', 'res-2', { openedAt: T + 2000, deskAt: T + 3000 }), T + 2000) // unacknowledged, it reached the duty desk
    // a reads its own at once (it ships before reading); c's are there once c has shipped
    expect((await a.mirror.needingAttention()).map((x) => x.id)).toEqual(['al-1'])
    await c.mirror.flush()
    // the desk first (al-3 reached it), then by severity, then the oldest
    expect((await a.mirror.needingAttention()).map((x) => x.id)).toEqual(['al-3', 'al-1', 'al-2'])
    expect((await a.mirror.needingAttention((id) => id === 'res-2')).map((x) => x.id)).toEqual(['al-3', 'al-2'])
    // a change on the node that raised it: resolved, it leaves the worklist and stays in the resident's list
    c.store.save({ ...alert('al-3', 'res-2', { openedAt: T + 2000, deskAt: T + 3000 }), state: 'resolved', resolvedAt: T + 9000 }, null)
    await c.mirror.flush()
    expect((await a.mirror.needingAttention()).map((x) => x.id)).toEqual(['al-1', 'al-2'])
    expect((await a.mirror.forResident('res-2', 10)).map((x) => [x.id, x.state])).toEqual([['al-3', 'resolved'], ['al-2', 'open']])
    expect((await a.mirror.forResident('res-2', 10))[0]!.messages['zh-CN']).toBe('血压 190/115 mmHg（高血压危象）。')
    // a node taking res-2 over adopts its active alerts, and those opened since a time whatever their state (a summary counts them)
    const cluster = await ClusterAlerts.open(server.url)
    opened.push(cluster)
    const res2 = (id: string): boolean => id === 'res-2'
    expect((await cluster.handedOver(res2, [])).map((x) => x.alert.id)).toEqual(['al-2'])
    expect((await cluster.handedOver(res2, [], T)).map((x) => [x.alert.id, x.alert.state]).sort()).toEqual([['al-2', 'open'], ['al-3', 'resolved']])
  })

  it('alerts a node held before it joined are brought in at its first start', async () => {
    const b = await node('b')
    b.store.insert(alert('al-old', 'res-9', { openedAt: T - 86_400_000 }), T - 86_400_000)
    b.db.exec('DELETE FROM alert_mirror_outbox') // as if they were made before cluster mode: no trigger saw them
    b.mirror.start()
    await b.mirror.stop()
    expect((await b.mirror.forResident('res-9', 10)).map((x) => x.id)).toEqual(['al-old'])
  })

  it('while PostgreSQL is unreachable, alerting goes on and the lists answer VM_STORE_UNAVAILABLE with the reason', async () => {
    const d = await node('d')
    await server.stop()
    d.store.insert(alert('al-down', 'res-4'), T) // this node's alerting writes its own SQLite as ever
    await expect(d.mirror.needingAttention()).rejects.toMatchObject({ code: 'VM_STORE_UNAVAILABLE' })
    expect(d.mirror.status()).toMatch(/^alerts not shipped: /)
    expect(d.store.get('al-down')?.state).toBe('open')
  })
})
