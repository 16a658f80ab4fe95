import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../core/index.ts'
import { InfluxHttp, InfluxStore, type InfluxSettings } from '../index.ts'
import { startInfluxd, type ServerProcess } from '../../test/helpers/influxd.ts'
import { storeContract } from './store-contract.ts'

let influxd: ServerProcess
let secured: ServerProcess
let n = 0
beforeAll(async () => {
  [influxd, secured] = await Promise.all([startInfluxd(), startInfluxd({ auth: true })])
  // with auth on and no user yet, influxd accepts exactly this: creating the first admin
  const http = new InfluxHttp(secured.url, { kind: 'none' }, 5000)
  await http.query("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES", {}, 'POST')
  await http.close()
  const admin = new InfluxHttp(secured.url, { kind: 'basic', user: 'admin', password: 'admin-pw' }, 5000)
  await admin.query("CREATE USER vitalmesh WITH PASSWORD 'vm-pw'", {}, 'POST')
  for (let i = 1; i <= 8; i++) { // one per contract test (make), the last for the retention-policy test
    await admin.query(`CREATE DATABASE secured${i}`, {}, 'POST')
    // not the default policy: writes and queries must name it
    await admin.query(`CREATE RETENTION POLICY raw ON secured${i} DURATION 400d REPLICATION 1`, {}, 'POST')
    await admin.query(`GRANT ALL ON secured${i} TO vitalmesh`, {}, 'POST')
  }
  await admin.close()
})
afterAll(async () => { await influxd?.destroy(); await secured?.destroy() })

const v1Settings = (url: string, db: string): InfluxSettings => ({ api: 'v1', url, db, timeoutMs: 5000, createDatabase: true })

storeContract('InfluxDB 1.6 through the v1 /write API', async () => new InfluxStore(v1Settings(influxd.url, `contract${++n}`), undefined, silentLogger()))
storeContract('InfluxDB 1.6, API detected from /ping', async () => new InfluxStore({ ...v1Settings(influxd.url, `auto${++n}`), api: 'auto' }, undefined, silentLogger()))
let s = 0
storeContract('InfluxDB 1.6 with authentication, a user and a named retention policy', async () =>
  new InfluxStore({ api: 'v1', url: secured.url, db: `secured${++s}`, rp: 'raw', user: 'vitalmesh', password: 'vm-pw', timeoutMs: 5000, createDatabase: false }))

describe('v1 authentication and retention policy', () => {
  it('writes into the configured retention policy, not the default one', async () => {
    const store = new InfluxStore({ api: 'v1', url: secured.url, db: 'secured8', rp: 'raw', user: 'vitalmesh', password: 'vm-pw', timeoutMs: 5000, createDatabase: false })
    await store.write([{ deviceId: 'd', residentId: 'r', seq: 1, ts: Date.now(), hr: 70 }])
    const admin = new InfluxHttp(secured.url, { kind: 'basic', user: 'admin', password: 'admin-pw' }, 5000)
    const count = async (rp: string) => (await admin.query(`SELECT count(seq) FROM "secured8"."${rp}"."vitals"`, { db: 'secured8' }))[0]?.values[0]?.[1] ?? 0
    expect(await count('raw')).toBeGreaterThanOrEqual(1)
    expect(await count('autogen')).toBe(0)
    await admin.close(); await store.close()
  })

  it('a wrong password is a retryable store error, not a rejected reading', async () => {
    const store = new InfluxStore({ api: 'v1', url: secured.url, db: 'secured1', user: 'vitalmesh', password: 'wrong', timeoutMs: 5000, createDatabase: false })
    await expect(store.write([{ deviceId: 'd', residentId: 'r', seq: 1, ts: Date.now(), hr: 70 }])).rejects.toMatchObject({ name: 'StoreUnavailableError', message: expect.stringMatching(/401/) })
    await store.close()
  })
})
