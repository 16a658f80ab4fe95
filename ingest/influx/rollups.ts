import { migrate, type Clock, type DB, type Logger, type Migration, type StoredReading } from '../../core/index.ts'
import { lineFor, MEASUREMENT, ROLLUPS, qid } from './schema.ts'
import type { Series } from './http.ts'

export interface RollupTarget {
  query(q: string): Promise<Series[]>
  writeLines(lines: string[]): Promise<void>
}

type Kind = keyof typeof ROLLUPS

/** The roll-ups' table (component 'rollups'). Never edit a shipped step: add one. */
export const ROLLUP_MIGRATIONS: Migration[] = [
  { version: 1, why: 'windows whose InfluxDB roll-ups must be computed again', up: 'CREATE TABLE IF NOT EXISTS rollup_stale (kind TEXT NOT NULL, start INTEGER NOT NULL, PRIMARY KEY (kind, start)) WITHOUT ROWID' },
]

/**
 * vitalmesh's own hourly and daily roll-ups (`vitals_1h`, `vitals_1d`), written as
 * ordinary measurements so downsampled data works on every InfluxDB version (1.x
 * continuous queries and 2.x tasks differ, and 3.x has neither).
 *
 * Drained readings mark their hour and day stale in a durable table; a periodic pass
 * recomputes each stale window from the raw measurement and overwrites its roll-up
 * points (same tags and window-start timestamp, so re-runs are idempotent). Late
 * readings (store-and-forward, up to 30 days) simply mark an old window stale again.
 */
export class Rollups {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private readonly s
  readonly stats = { windows: 0, points: 0, failures: 0 }

  constructor (db: DB, private readonly target: RollupTarget, private readonly clock: Clock, private readonly logger: Logger, private readonly opts: { everyMs?: number } = {}) {
    migrate(db, 'rollups', ROLLUP_MIGRATIONS)
    this.s = {
      mark: db.prepare('INSERT OR IGNORE INTO rollup_stale (kind, start) VALUES (?, ?)'),
      list: db.prepare<[], { kind: Kind, start: number }>('SELECT kind, start FROM rollup_stale ORDER BY start LIMIT 500'),
      clear: db.prepare('DELETE FROM rollup_stale WHERE kind = ? AND start = ?'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM rollup_stale'),
    }
  }

  /** Marks the windows of drained readings stale. */
  touch (rows: readonly Pick<StoredReading, 'ts'>[]): void {
    const seen = new Set<string>()
    for (const r of rows) {
      for (const kind of Object.keys(ROLLUPS) as Kind[]) {
        const w = ROLLUPS[kind].ms
        const start = Math.floor(r.ts / w) * w
        const key = kind + start
        if (seen.has(key)) continue
        seen.add(key)
        this.s.mark.run(kind, start)
      }
    }
  }

  stale (): number { return this.s.count.get()!.n }

  start (): void {
    const every = this.opts.everyMs ?? 60_000
    this.timer = setInterval(() => { void this.run() }, every)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
  }

  /** Recomputes every stale window; a window whose write fails stays stale. */
  run (): Promise<void> {
    this.running ??= this.pass().finally(() => { this.running = undefined })
    return this.running
  }

  private async pass (): Promise<void> {
    for (;;) {
      const stale = this.s.list.all()
      if (stale.length === 0) return
      for (const { kind, start } of stale) {
        // cleared before computing: readings drained meanwhile mark the window stale again
        this.s.clear.run(kind, start)
        try {
          await this.recompute(kind, start)
          this.stats.windows++
        } catch (err) {
          this.s.mark.run(kind, start)
          this.stats.failures++
          this.logger.warn({ err, kind, start: new Date(start).toISOString() }, 'roll-up failed; the window stays stale and is retried')
          return
        }
      }
    }
  }

  private async recompute (kind: Kind, start: number): Promise<void> {
    const { measurement, ms } = ROLLUPS[kind]
    const series = await this.target.query(
      `SELECT count(seq) AS n, mean(hr) AS hr_mean, min(hr) AS hr_min, max(hr) AS hr_max, mean(sys) AS sys_mean, max(sys) AS sys_max, mean(dia) AS dia_mean, max(dia) AS dia_max ` +
      `FROM ${qid(MEASUREMENT)} WHERE time >= ${start}ms AND time < ${start + ms}ms GROUP BY device, resident, region, model`)
    const lines: string[] = []
    for (const s of series) {
      const v = s.values[0]
      if (!v) continue
      const fields: Record<string, number> = {}
      s.columns.forEach((c, i) => { if (i > 0 && typeof v[i] === 'number') fields[c] = v[i] as number })
      if (!fields.n) continue
      lines.push(lineFor(measurement, s.tags ?? {}, fields, `${start}000000`))
    }
    if (lines.length) await this.target.writeLines(lines)
    this.stats.points += lines.length
    if (this.clock.now() - start < ms) this.logger.debug({ kind, start }, 'roll-up of an open window; it is recomputed when more readings arrive')
  }
}
