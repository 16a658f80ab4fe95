import type { DB, Logger } from '../../core/index.ts'
import { lineFor } from './schema.ts'
import type { RollupTarget } from './rollups.ts'

export const ALERTS_MEASUREMENT = 'alerts'

/**
 * Copies alert state changes to InfluxDB (measurement `alerts`, tags severity, rule,
 * state, resident, region; field n=1) for the fleet dashboard's "alerts by severity".
 * It reads alerting's append-only event log (`alert_events`) like an outbox: a cursor
 * advances only after InfluxDB confirmed the points, so an outage delays them, never
 * loses them, and a re-send overwrites the same points (timestamp: event ms * 1e6 +
 * rowid mod 1e6).
 */
export class AlertExport {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private readonly s
  readonly stats = { exported: 0, failures: 0 }

  constructor (db: DB, private readonly target: Pick<RollupTarget, 'writeLines'>, private readonly regionOf: (residentId: string) => string | null | undefined, private readonly logger: Logger) {
    db.exec('CREATE TABLE IF NOT EXISTS export_cursors (name TEXT PRIMARY KEY, id INTEGER NOT NULL)')
    this.s = {
      cursor: db.prepare<[], { id: number }>("SELECT id FROM export_cursors WHERE name = 'alerts'"),
      setCursor: db.prepare("INSERT INTO export_cursors (name, id) VALUES ('alerts', ?) ON CONFLICT(name) DO UPDATE SET id = excluded.id"),
      events: db.prepare<[number], { rowid: number, at: number, state: string, alert_id: string, severity: string, rule_id: string, resident_id: string }>(
        'SELECT e.rowid AS rowid, e.at, e.state, e.alert_id, a.severity, a.rule_id, a.resident_id FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.rowid > ? ORDER BY e.rowid LIMIT 5000'),
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
      const events = this.s.events.all(this.s.cursor.get()?.id ?? 0)
      if (events.length === 0) return
      const lines = events.map((e) => lineFor(ALERTS_MEASUREMENT,
        { severity: e.severity, rule: e.rule_id, state: e.state, resident: e.resident_id, region: this.regionOf(e.resident_id) ?? '' },
        { n: 1 }, `${e.at}${String(e.rowid % 1_000_000).padStart(6, '0')}`))
      try {
        await this.target.writeLines(lines)
      } catch (err) {
        this.stats.failures++
        this.logger.warn({ err, pending: events.length }, 'alert export to InfluxDB failed; it is retried')
        return
      }
      this.s.setCursor.run(events[events.length - 1]!.rowid)
      this.stats.exported += events.length
    }
  }
}
