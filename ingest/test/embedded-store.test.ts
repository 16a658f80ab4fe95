import { describe, expect, it } from 'vitest'
import { openDatabase } from '../../core/index.ts'
import { join } from 'node:path'
import { EmbeddedStore } from '../index.ts'
import { tempDir } from '../../test/helpers/proc.ts'
import { storeContract } from './store-contract.ts'

storeContract('embedded', async () => new EmbeddedStore(join(tempDir(), 'telemetry.db')))

describe('embedded store file of an earlier version', () => {
  it('moves a rowid readings table into the keyed layout, keeping every reading', async () => {
    const file = join(tempDir(), 'telemetry.db')
    const db = openDatabase(file)
    db.exec(`CREATE TABLE readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, resident_id TEXT NOT NULL, ts INTEGER NOT NULL,
        hr REAL, sys REAL, dia REAL, activity TEXT, motion INTEGER, confidence REAL, PRIMARY KEY (device_id, seq));
      CREATE INDEX readings_resident_ts ON readings(resident_id, ts);
      INSERT INTO readings VALUES ('d1', 1, 'r1', 1000, 70, NULL, NULL, 'rest', 0, 0.9), ('d1', 2, 'r1', 2000, NULL, 120, 80, NULL, NULL, NULL);`)
    db.close()
    const store = new EmbeddedStore(file)
    expect(await store.queryRange('r1', 0, 10_000, 10)).toEqual([
      { deviceId: 'd1', residentId: 'r1', seq: 1, ts: 1000, hr: 70, activity: 'rest', motion: false, confidence: 0.9 },
      { deviceId: 'd1', residentId: 'r1', seq: 2, ts: 2000, sys: 120, dia: 80 },
    ])
    await store.write([{ deviceId: 'd1', residentId: 'r1', seq: 2, ts: 2000, sys: 120, dia: 80 }])
    expect((await store.queryRange('r1', 0, 10_000, 10)).length).toBe(2)
    await store.close()
  })
})
