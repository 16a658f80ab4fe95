import { afterAll, beforeAll } from 'vitest'
import { silentLogger } from '../../core/index.ts'
import { InfluxStore, type InfluxSettings } from '../index.ts'
import { startInfluxd, type ServerProcess } from '../../test/helpers/influxd.ts'
import { storeContract } from './store-contract.ts'

let influxd: ServerProcess
let n = 0
beforeAll(async () => { influxd = await startInfluxd() })
afterAll(async () => { await influxd?.destroy() })

export const v1Settings = (url: string, db: string): InfluxSettings => ({ api: 'v1', url, db, timeoutMs: 5000, createDatabase: true })

storeContract('InfluxDB 1.6 through the v1 /write API', async () => new InfluxStore(v1Settings(influxd.url, `contract${++n}`), undefined, silentLogger()))
storeContract('InfluxDB 1.6, API detected from /ping', async () => new InfluxStore({ ...v1Settings(influxd.url, `auto${++n}`), api: 'auto' }, undefined, silentLogger()))
