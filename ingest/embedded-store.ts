import { RULE_FIELDS, migrate, openDatabase, openReadOnly, type Activity, type DB, type Migration, type RuleField, type RuleReading, type StoredReading } from '../core/index.ts'
import type { TelemetryStore, WindowAggregate } from './store.ts'
import { StoreWriter } from './store-writer.ts'

/** device_id, seq, ts, hr, sys, dia, activity, motion, confidence */
type RawRow = [string, number, number, number | null, number | null, number | null, string | null, number | null, number | null]
/** ts, then the fields asked for (RuleField), in RULE_FIELDS order */
type ReplayRow = (number | string | null)[]

/**
 * A backtest's read (EmbeddedStore.replayRange, ReplayReader): ts and only the fields the rule
 * sets look at, in the order queryRange gives. Every value better-sqlite3 hands to JavaScript
 * costs about 0.2 µs: ts, sys and dia (a blood-pressure rule set) instead of nine values, and
 * no strings for the device, make the read of a month of readings about half as costly as
 * queryRange's (bench/results/backtest.md).
 */
class ReplayQueries {
  private readonly byFields = new Map<string, { stmt: { all(...a: unknown[]): unknown[] }, at: Record<RuleField, number> }>()

  constructor (private readonly db: DB) {}

  range (residentId: string, from: number, to: number, limit: number, fields: readonly RuleField[]): RuleReading[] {
    const key = fields.join(',')
    let q = this.byFields.get(key)
    if (!q) {
      const cols = RULE_FIELDS.filter((f) => fields.includes(f))
      const at = Object.fromEntries(RULE_FIELDS.map((f) => [f, cols.indexOf(f) + 1])) as Record<RuleField, number> // 0: not read
      q = { stmt: this.db.prepare(`SELECT ${['ts', ...cols].join(', ')} FROM readings WHERE resident_id = ? AND ts >= ? AND ts < ? ORDER BY ts, device_id, seq LIMIT ?`).raw(true), at }
      this.byFields.set(key, q)
    }
    const rows = q.stmt.all(residentId, from, to, limit) as ReplayRow[]
    const { hr, sys, dia, activity } = q.at
    const out: RuleReading[] = new Array(rows.length)
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!
      // every field present (undefined when NULL or not read): one object shape for every reading; rules test `=== undefined`
      out[i] = {
        ts: r[0] as number,
        hr: hr ? (r[hr] as number | null) ?? undefined : undefined,
        sys: sys ? (r[sys] as number | null) ?? undefined : undefined,
        dia: dia ? (r[dia] as number | null) ?? undefined : undefined,
        activity: activity ? (r[activity] as Activity | null) ?? undefined : undefined,
      }
    }
    return out
  }
}

// One b-tree per reading: the key is what queries ask for (resident, time) and ends in
// (device, seq), so a batch the drain sends again (same readings, same key) is ignored.
// The spool has de-duplicated by (device, seq) already; a reading's resident and ts never change.
const READINGS = `CREATE TABLE IF NOT EXISTS readings (
        resident_id TEXT NOT NULL, ts INTEGER NOT NULL, device_id TEXT NOT NULL, seq INTEGER NOT NULL,
        hr REAL, sys REAL, dia REAL, activity TEXT, motion INTEGER, confidence REAL,
        PRIMARY KEY (resident_id, ts, device_id, seq)) WITHOUT ROWID`

/** The telemetry store's table (component 'telemetry', in its own file). Never edit a shipped step: add one. */
export const TELEMETRY_MIGRATIONS: Migration[] = [
  { version: 1, why: 'readings keyed by (resident, time, device, seq), without rowid', up: READINGS },
  {
    version: 2,
    why: 'a store written by an earlier version (a rowid table with two indexes) is copied once into the layout of version 1',
    up: (db) => {
      const existing = db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'readings'").get()
      if (!existing || /WITHOUT ROWID/i.test(existing.sql)) return
      db.exec('ALTER TABLE readings RENAME TO readings_rowid; DROP INDEX IF EXISTS readings_resident_ts')
      db.exec(READINGS)
      db.exec('INSERT OR IGNORE INTO readings (resident_id, ts, device_id, seq, hr, sys, dia, activity, motion, confidence) SELECT resident_id, ts, device_id, seq, hr, sys, dia, activity, motion, confidence FROM readings_rowid; DROP TABLE readings_rowid')
    },
  },
]

/** The default telemetry store: a SQLite file, indexed for (resident, time) queries. */
export class EmbeddedStore implements TelemetryStore {
  readonly kind = 'embedded'
  private readonly db: DB
  /** the inserts on the caller's thread, when there is no writer thread */
  private readonly insertMany: ((rows: readonly StoredReading[]) => void) | undefined
  private readonly range
  private readonly replay: ReplayQueries

  private readonly writer: StoreWriter | undefined

  /**
   * `writeOnThread`: inserts run on a thread of their own (StoreWriter), as the node runs them;
   * without it on the caller's (tools, tests, the benchmark's bulk fill).
   */
  constructor (file: string, opts: { writeOnThread?: boolean } = {}) {
    this.db = openDatabase(file)
    migrate(this.db, 'telemetry', TELEMETRY_MIGRATIONS)
    this.writer = opts.writeOnThread && file !== ':memory:' ? new StoreWriter(file) : undefined
    if (!this.writer) {
      const insert = this.db.prepare('INSERT OR IGNORE INTO readings (resident_id, ts, device_id, seq, hr, sys, dia, activity, motion, confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      this.insertMany = this.db.transaction((rows: readonly StoredReading[]) => {
        for (const r of rows) {
          insert.run(r.residentId, r.ts, r.deviceId, r.seq, r.hr ?? null, r.sys ?? null, r.dia ?? null,
            r.activity ?? null, r.motion === undefined ? null : r.motion ? 1 : 0, r.confidence ?? null)
        }
      })
    }
    // rows as arrays: building each reading straight from one halves the cost of a month of readings (the rule-set backtest reads them all)
    this.range = this.db.prepare<[string, number, number, number], RawRow>('SELECT device_id, seq, ts, hr, sys, dia, activity, motion, confidence FROM readings WHERE resident_id = ? AND ts >= ? AND ts < ? ORDER BY ts, device_id, seq LIMIT ?').raw(true)
    this.replay = new ReplayQueries(this.db)
  }

  /** the database file: a backtest's worker threads open it read-only (ReplayReader) */
  get file (): string { return this.db.name }

  /** the SQLite connection, for the WAL checkpointer (core/checkpointer.ts) */
  get connection (): DB { return this.db }
  /** inserts run on the writer thread's own connection, not on `connection` */
  get writesOnThread (): boolean { return this.writer !== undefined }

  async write (rows: readonly StoredReading[]): Promise<void> {
    if (this.writer) await this.writer.write(rows)
    else this.insertMany!(rows)
  }

  async queryRange (residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]> {
    const rows = this.range.all(residentId, from, to, limit) as unknown as RawRow[]
    const out: StoredReading[] = new Array(rows.length)
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!
      const o: StoredReading = { deviceId: r[0], residentId, seq: r[1], ts: r[2] }
      if (r[3] !== null) o.hr = r[3]
      if (r[4] !== null) o.sys = r[4]
      if (r[5] !== null) o.dia = r[5]
      if (r[6] !== null) o.activity = r[6] as StoredReading['activity']
      if (r[7] !== null) o.motion = r[7] === 1
      if (r[8] !== null) o.confidence = r[8]
      out[i] = o
    }
    return out
  }

  /** A resident's readings in [from, to) for a rule-set backtest, in queryRange's order: ts and the `fields` the rule sets look at (the others undefined). */
  async replayRange (residentId: string, from: number, to: number, limit: number, fields: readonly RuleField[] = RULE_FIELDS): Promise<RuleReading[]> {
    return this.replay.range(residentId, from, to, limit, fields)
  }

  async aggregate (residentId: string, from: number, to: number, windowMs: number): Promise<WindowAggregate[]> {
    const rows = this.db.prepare<[number, number, string, number, number], Record<string, number | null>>(`
      SELECT (ts / CAST(? AS INTEGER)) * ? AS start, count(*) AS count, avg(hr) AS hrMean, min(hr) AS hrMin, max(hr) AS hrMax,
        avg(sys) AS sysMean, max(sys) AS sysMax, avg(dia) AS diaMean, max(dia) AS diaMax
      FROM readings WHERE resident_id = ? AND ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1`).all(windowMs, windowMs, residentId, from, to)
    return rows.map((r) => {
      const o: WindowAggregate = { start: r.start!, count: r.count! }
      for (const k of ['hrMean', 'hrMin', 'hrMax', 'sysMean', 'sysMax', 'diaMean', 'diaMax'] as const) if (r[k] !== null && r[k] !== undefined) o[k] = r[k]
      return o
    })
  }

  async ping (): Promise<void> {
    this.db.prepare('SELECT 1').get()
  }

  async close (): Promise<void> {
    await this.writer?.close()
    this.db.close()
  }
}

/**
 * A read-only connection to an embedded store for a backtest's worker thread
 * (alerting/backtest-worker.ts): replayRange of its own, off the connection that writes.
 */
export class ReplayReader {
  private readonly db: DB
  private readonly replay: ReplayQueries

  constructor (file: string) {
    this.db = openReadOnly(file)
    this.replay = new ReplayQueries(this.db)
  }

  replayRange (residentId: string, from: number, to: number, limit: number, fields: readonly RuleField[] = RULE_FIELDS): RuleReading[] {
    return this.replay.range(residentId, from, to, limit, fields)
  }

  close (): void { this.db.close() }
}
