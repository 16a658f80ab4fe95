import { migrate, type DB, type Logger, type Migration } from '../../core/index.ts'
import { lineFor } from './schema.ts'
import type { RollupTarget } from './rollups.ts'

export const ALERTS_MEASUREMENT = 'alerts'

/** The export's cursor table (component 'alert-export'). Never edit a shipped step: add one. */
export const ALERT_EXPORT_MIGRATIONS: Migration[] = [
  { version: 1, why: 'how far alert events have been exported to InfluxDB', up: 'CREATE TABLE IF NOT EXISTS export_cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL)' },
]

/** One entry of alerting's append-only event log (`AlertBook.eventsAfter`). */
export interface ExportedAlertEvent { position: number, at: number, state: string, severity: string, ruleId: string, residentId: string }

/**
 * Copies alert state changes to InfluxDB (measurement `alerts`, tags severity, rule,
 * state, resident, region; field n=1) for the fleet dashboard's "alerts by severity".
 * It reads alerting's append-only event log (through `events`) like an outbox: a cursor
 * advances only after InfluxDB confirmed the points, so an outage delays them, never
 * loses them, and a re-send overwrites the same points (timestamp: event ms * 1e6 +
 * rowid mod 1e6).
 */
export class AlertExport {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private readonly s
  readonly stats = { exported: 0, failures: 0 }

  constructor (db: DB, private readonly events: (after: number, limit: number) => ExportedAlertEvent[], private readonly target: Pick<RollupTarget, 'writeLines'>, private readonly regionOf: (residentId: string) => string | null | undefined, private readonly logger: Logger) {
    migrate(db, 'alert-export', ALERT_EXPORT_MIGRATIONS)
    this.s = {
      cursor: db.prepare<[], { id: number }>("SELECT id FROM export_cursors WHERE name = 'alerts'"),
      setCursor: db.prepare("INSERT INTO export_cursors (name, id) VALUES ('alerts', ?) ON CONFLICT(name) DO UPDATE SET id = excluded.id"),
    }
  }

  start (everyMs = 5000): void {
    this.timer = setInterval(() => { void this.run() }, everyMs)
    this.timer.unref()
  }

  stop (): void { if (this.timer) clearInterval(this.timer) }

  run (): Promise<void> {
    this.running ??= this.pass().finally(() => { this.running = undefined })
    return this.running
  }

  private async pass (): Promise<void> {
    for (;;) {
      const events = this.events(this.s.cursor.get()?.id ?? 0, 5000)
      if (events.length === 0) return
      const lines = events.map((e) => lineFor(ALERTS_MEASUREMENT,
        { severity: e.severity, rule: e.ruleId, state: e.state, resident: e.residentId, region: this.regionOf(e.residentId) ?? '' },
        { n: 1 }, `${e.at}${String(e.position % 1_000_000).padStart(6, '0')}`))
      try {
        await this.target.writeLines(lines)
      } catch (err) {
        this.stats.failures++
        this.logger.warn({ err, pending: events.length }, 'alert export to InfluxDB failed; it is retried')
        return
      }
      this.s.setCursor.run(events[events.length - 1]!.position)
      this.stats.exported += events.length
    }
  }
}
