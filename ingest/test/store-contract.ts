import { describe, expect, it } from 'vitest'
import type { RuleField, StoredReading } from '../../core/index.ts'
import type { TelemetryStore } from '../store.ts'

export interface ContractOptions {
  /** the store reads back what it wrote (false for write-only targets, e.g. VictoriaMetrics through /api/v2/write) */
  readable?: boolean
  /** reads the stored readings of a resident another way, when the store itself cannot */
  readBack?: (store: TelemetryStore, residentId: string) => Promise<StoredReading[]>
  /** the target resolves nanoseconds (VictoriaMetrics keeps milliseconds) */
  nanoseconds?: boolean
}

const T0 = Date.UTC(2026, 10, 1, 0, 0, 0) // a window-aligned start

function readings (residentId: string, deviceId: string, n: number, start = T0, stepMs = 60_000): StoredReading[] {
  return Array.from({ length: n }, (_, i) => ({
    deviceId, residentId, seq: i + 1, ts: start + i * stepMs,
    hr: 60 + i, sys: 120 + (i % 5), dia: 80 - (i % 3), motion: i % 2 === 0, confidence: 0.5 + (i % 5) / 10, activity: 'rest' as const,
  }))
}

/**
 * The contract every TelemetryStore passes (embedded, InfluxDB v1, InfluxDB v2), as every
 * Aedes persistence passes aedes-persistence's abstract tests. `make` gives a fresh,
 * empty store per test.
 */
export function storeContract (name: string, make: () => Promise<TelemetryStore>, opts: ContractOptions = {}): void {
  const readable = opts.readable ?? true
  const read = async (s: TelemetryStore, r: string): Promise<StoredReading[]> =>
    opts.readBack ? opts.readBack(s, r) : s.queryRange(r, 0, T0 + 365 * 86_400_000, 100_000)

  describe(`TelemetryStore contract: ${name}`, () => {
    it('answers ping, and stores a batch so that a range query returns it exactly, oldest first', async () => {
      const store = await make()
      try {
        await store.ping()
        const rows = [...readings('res-a', 'dev-a', 20), ...readings('res-b', 'dev-b', 5)]
        const out = await store.write(rows)
        expect(out?.rejected ?? []).toEqual([])
        const back = await read(store, 'res-a')
        expect(back).toHaveLength(20)
        expect(back.map((r) => r.seq)).toEqual(rows.slice(0, 20).map((r) => r.seq))
        if (readable) {
          expect(back).toEqual(rows.slice(0, 20))
          const window = await store.queryRange('res-a', T0 + 5 * 60_000, T0 + 10 * 60_000, 1000)
          expect(window.map((r) => r.seq)).toEqual([6, 7, 8, 9, 10])
          expect(await store.queryRange('res-a', T0, T0 + 3600_000, 3)).toHaveLength(3)
          expect(await store.queryRange('nobody', T0, T0 + 3600_000, 10)).toEqual([])
        }
      } finally { await store.close() }
    })

    it('stores a large batch of readings with different fields present exactly (the embedded writer binds 64 readings per statement)', async () => {
      const store = await make()
      try {
        // 2 × 64 + 22: whole statements and a remainder; heart rate only, blood pressure only, and everything
        const rows: StoredReading[] = Array.from({ length: 150 }, (_, i) => {
          const r: StoredReading = { deviceId: i % 2 ? 'dev-w' : 'dev-c', residentId: 'res-l', seq: i + 1, ts: T0 + i * 30_000 }
          if (i % 3 !== 1) r.hr = 50 + i
          if (i % 3 !== 0) { r.sys = 100 + (i % 50); r.dia = 60 + (i % 30) }
          if (i % 3 === 2) { r.activity = 'light'; r.motion = i % 2 === 0; r.confidence = 0.25 + (i % 4) / 8 }
          return r
        })
        await store.write(rows)
        const back = await read(store, 'res-l')
        expect(back.map((r) => `${r.deviceId}:${r.seq}`)).toEqual(rows.map((r) => `${r.deviceId}:${r.seq}`))
        if (readable) expect(back).toEqual(rows)
      } finally { await store.close() }
    })

    it('is idempotent by (device, seq): re-writing a batch stores nothing twice', async () => {
      const store = await make()
      try {
        const rows = readings('res-i', 'dev-i', 10)
        await store.write(rows)
        await store.write(rows)
        await store.write(rows.slice(3, 7))
        expect(await read(store, 'res-i')).toHaveLength(10)
      } finally { await store.close() }
    })

    // a store that keeps only milliseconds (VictoriaMetrics) cannot hold two readings of one
    // device in the same millisecond apart: the case is not part of its contract
    if (opts.nanoseconds ?? true) it('keeps two readings of one device taken in the same millisecond', async () => {
      const store = await make()
      try {
        await store.write([
          { deviceId: 'dev-s', residentId: 'res-s', seq: 7, ts: T0, hr: 70 },
          { deviceId: 'dev-s', residentId: 'res-s', seq: 8, ts: T0, hr: 71 },
        ])
        const back = await read(store, 'res-s')
        expect(back.map((r) => [r.seq, r.hr]).sort()).toEqual([[7, 70], [8, 71]])
      } finally { await store.close() }
    })

    if (readable) it('replayRange (a backtest\'s read) gives queryRange\'s readings in its order, with only the fields asked for', async () => {
      const store = await make()
      try {
        if (!store.replayRange) return
        // two devices with readings at the same times, a reading without any of the fields, an absent activity
        const rows: StoredReading[] = [...readings('res-r', 'dev-r1', 30), ...readings('res-r', 'dev-r2', 30).map((r, i) => i % 4 === 0 ? { deviceId: r.deviceId, residentId: r.residentId, seq: r.seq, ts: r.ts } : { ...r, activity: i % 3 === 0 ? 'moderate' as const : undefined })]
        await store.write(rows.map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as unknown as StoredReading))
        const whole = await store.queryRange('res-r', T0, T0 + 3600_000, 1000)
        expect(whole).toHaveLength(60)
        for (const fields of [['hr', 'sys', 'dia', 'activity'], ['sys', 'dia'], ['hr'], ['activity'], []] as RuleField[][]) {
          const lean = await store.replayRange('res-r', T0, T0 + 3600_000, 1000, fields)
          expect(lean).toEqual(whole.map((r) => ({ ts: r.ts, hr: fields.includes('hr') ? r.hr : undefined, sys: fields.includes('sys') ? r.sys : undefined, dia: fields.includes('dia') ? r.dia : undefined, activity: fields.includes('activity') ? r.activity : undefined })))
        }
        expect(await store.replayRange('res-r', T0, T0 + 3600_000, 7, ['sys'])).toHaveLength(7)
      } finally { await store.close() }
    })

    if (readable) it('aggregates a resident\'s readings by window', async () => {
      const store = await make()
      try {
        // 90 readings a minute apart: windows of one hour hold 60 and 30
        await store.write(readings('res-w', 'dev-w', 90))
        const agg = await store.aggregate('res-w', T0, T0 + 3 * 3600_000, 3600_000)
        expect(agg.map((a) => [a.start, a.count])).toEqual([[T0, 60], [T0 + 3600_000, 30]])
        expect(agg[0]!.hrMin).toBe(60)
        expect(agg[0]!.hrMax).toBe(119)
        expect(agg[0]!.hrMean).toBeCloseTo(89.5)
        expect(agg[1]!.sysMax).toBe(124)
      } finally { await store.close() }
    })
  })
}
