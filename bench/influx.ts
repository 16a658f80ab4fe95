import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { openDatabase, silentLogger, type StoredReading } from '../core/index.ts'
import { Drain, InfluxHttp, InfluxStore, Spool, toLine } from '../ingest/index.ts'
import { startInfluxd, type ServerProcess } from '../test/helpers/influxd.ts'
import { tempDir } from '../test/helpers/proc.ts'

export interface InfluxBenchResult {
  label: string
  points: number
  /** median of the rounds */
  seconds: number
  pointsPerS: number
  /** CPU per point, vitalmesh (or the direct writer) and influxd, median of the rounds */
  clientCpuUs: number
  serverCpuUs: number
}

const POINTS = 200_000
const DEVICES = 1000
const tags = { region: 'county-1', model: 'watch' }

function points (): StoredReading[] {
  const t0 = Date.now() - 86_400_000
  return Array.from({ length: POINTS }, (_, i) => {
    const device = i % DEVICES; const seq = Math.floor(i / DEVICES)
    return { deviceId: `dev-${device}`, residentId: `res-${device}`, seq, ts: t0 + seq * 60_000 + device, hr: 60 + (i % 40), sys: 110 + (i % 30), dia: 70 + (i % 15) }
  })
}

function procCpuMs (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(f[11]) + Number(f[12])) * 10
}

async function count (http: InfluxHttp, db: string): Promise<number> {
  const s = await http.query('SELECT count(seq) FROM vitals', { db })
  return (s[0]?.values[0]?.[1] as number | undefined) ?? 0
}

// a full collection before each timed part, so that neither pays for the garbage of the set-up (200,000 rows and lines)
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function measure (influxd: ServerProcess, run: () => Promise<void>): Promise<{ seconds: number, clientCpuUs: number, serverCpuUs: number }> {
  gc()
  await new Promise((r) => setTimeout(r, 200)) // and influxd settles after the previous write
  const s0 = procCpuMs(influxd.pid()!)
  const c0 = process.cpuUsage()
  const t = process.hrtime.bigint()
  await run()
  const seconds = Number(process.hrtime.bigint() - t) / 1e9
  const c = process.cpuUsage(c0)
  return { seconds, clientCpuUs: (c.user + c.system) / POINTS, serverCpuUs: (procCpuMs(influxd.pid()!) - s0) * 1000 / POINTS }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/**
 * Readings/s drained from the spool into InfluxDB 1.6 (v1 /write) against a direct
 * line-protocol write of the same points (40 writes of 5,000 lines, 4 in parallel, lines
 * prepared beforehand). The drain also pays for reading the spool, serialising and
 * acknowledging (deleting) rows. Rounds alternate direct and drain, each into a fresh
 * database, and the median is reported: the machine is shared, so single runs are noisy.
 */
export async function influxThroughput (configs: { batch: number, concurrency: number }[], rounds = 3): Promise<InfluxBenchResult[]> {
  const influxd = await startInfluxd()
  const http = new InfluxHttp(influxd.url, { kind: 'none' }, 60_000)
  const samples = new Map<string, { seconds: number, clientCpuUs: number, serverCpuUs: number }[]>()
  const add = (label: string, m: { seconds: number, clientCpuUs: number, serverCpuUs: number }): void => { samples.set(label, [...(samples.get(label) ?? []), m]) }
  let dbs = 0
  try {
    const rows = points()
    const lines = rows.map((r) => toLine(r, tags))
    const bodies = Array.from({ length: POINTS / 5000 }, (_, i) => lines.slice(i * 5000, (i + 1) * 5000).join('\n'))
    for (let round = 0; round < rounds; round++) {
      const direct = `direct${++dbs}`
      await http.query(`CREATE DATABASE ${direct}`, {}, 'POST')
      add('direct line protocol, 40 × 5,000 lines, 4 in parallel', await measure(influxd, async () => {
        let next = 0
        await Promise.all(Array.from({ length: 4 }, async () => {
          while (next < bodies.length) await http.write({ db: direct, precision: 'ns' }, bodies[next++]!)
        }))
      }))
      if (await count(http, direct) !== POINTS) throw new Error('direct write lost points')

      for (const c of configs) {
        const db = `drain${++dbs}`
        const spool = new Spool(openDatabase(join(tempDir('vm-bench-'), 's.db')), silentLogger(), { deadLetterMax: 10 })
        // spooled as they would arrive, one reading per message in the order of the direct write
        for (let i = 0; i < POINTS; i += DEVICES) {
          await Promise.all(rows.slice(i, i + DEVICES).map((r, d) => spool.appendAsync({ deviceKey: d, deviceId: r.deviceId, residentId: r.residentId, readings: [r] })))
        }
        const store = new InfluxStore({ api: 'v1', url: influxd.url, db, timeoutMs: 60_000, createDatabase: true }, () => tags)
        await store.write([]) // creates the database outside the timed part
        const drain = new Drain(spool, store, silentLogger(), { batch: c.batch, intervalMs: 0, concurrency: c.concurrency })
        add(`drain, batch ${c.batch}, ${c.concurrency} in flight`, await measure(influxd, async () => { drain.start(); await drain.idle() }))
        drain.stop()
        const n = await count(http, db)
        if (n !== POINTS) throw new Error(`drain stored ${n} of ${POINTS}`)
        await store.close()
      }
    }
  } finally {
    await http.close()
    await influxd.destroy()
  }
  return [...samples].map(([label, ms]) => {
    const seconds = median(ms.map((m) => m.seconds))
    return { label, points: POINTS, seconds, pointsPerS: POINTS / seconds, clientCpuUs: median(ms.map((m) => m.clientCpuUs)), serverCpuUs: median(ms.map((m) => m.serverCpuUs)) }
  })
}
