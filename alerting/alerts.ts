import { randomUUID } from 'node:crypto'
import type { DB, Logger, Clock } from '../core/index.ts'
import { evaluate, type RuleSet, type Severity } from './rules.ts'
import { alertMessage } from './messages.ts'

/** The fields of a reading an alert refers to (anything a spool row carries). */
export interface EvaluatedReading {
  deviceId: string, residentId: string, seq: number, ts: number, hr?: number, sys?: number, dia?: number
}

export type AlertState = 'open' | 'acknowledged' | 'resolved'

export interface Alert {
  id: string
  residentId: string
  ruleSetId: string
  ruleId: string
  severity: Severity
  state: AlertState
  openedAt: number
  resolvedAt: number | null
  message: string
  reading: { deviceId: string, seq: number, ts: number, hr?: number, sys?: number, dia?: number }
}

/** Delivers alerts to residents; calls back once the alert was handed over for delivery. */
export type AlertNotifier = (alert: Alert, delivered: () => void) => void

interface Prepared { changed: Alert[], open: Map<string, Alert | null> }

const key = (residentId: string, ruleId: string): string => `${residentId}\u0000${ruleId}`

/**
 * Alert state: at most one active alert per resident and rule. It takes part in the
 * spool's commit, so an accepted reading and the alert it opens are durable together;
 * notifications go out after the commit, and ones a crash interrupted are re-sent at
 * start-up (delivered_at is still empty).
 */
export class AlertBook {
  private readonly open = new Map<string, Alert>()
  private readonly s
  private deliveredPending: string[] = []
  private deliveredTimer: NodeJS.Timeout | undefined
  readonly stats = { opened: 0, resolved: 0 }

  constructor (
    private readonly db: DB,
    private readonly ruleSet: RuleSet,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private notifier: AlertNotifier = () => {},
  ) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, rule_set_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, opened_at INTEGER NOT NULL, resolved_at INTEGER,
        message TEXT NOT NULL, reading TEXT NOT NULL, delivered_at INTEGER);
      CREATE INDEX IF NOT EXISTS alerts_resident ON alerts(resident_id, opened_at);
      CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(delivered_at) WHERE delivered_at IS NULL;
      CREATE TABLE IF NOT EXISTS alert_events (
        alert_id TEXT NOT NULL, at INTEGER NOT NULL, state TEXT NOT NULL, actor TEXT NOT NULL);
    `)
    this.s = {
      insert: db.prepare('INSERT INTO alerts (id, resident_id, rule_set_id, rule_id, severity, state, opened_at, message, reading) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      resolve: db.prepare("UPDATE alerts SET state = 'resolved', resolved_at = ?, delivered_at = NULL WHERE id = ?"),
      event: db.prepare('INSERT INTO alert_events (alert_id, at, state, actor) VALUES (?, ?, ?, ?)'),
      delivered: db.prepare('UPDATE alerts SET delivered_at = ? WHERE id = ?'),
      active: db.prepare<[], AlertRow>("SELECT * FROM alerts WHERE state != 'resolved'"),
      undelivered: db.prepare<[], AlertRow>('SELECT * FROM alerts WHERE delivered_at IS NULL ORDER BY opened_at'),
      forResident: db.prepare<[string, number], AlertRow>('SELECT * FROM alerts WHERE resident_id = ? ORDER BY opened_at DESC LIMIT ?'),
    }
    for (const row of this.s.active.all()) {
      const a = fromRow(row)
      this.open.set(key(a.residentId, a.ruleId), a)
    }
  }

  setNotifier (n: AlertNotifier): void { this.notifier = n }

  /** Evaluates the readings of one commit and writes the alert changes in its transaction. */
  prepare (rows: readonly EvaluatedReading[]): Prepared {
    const p: Prepared = { changed: [], open: new Map() }
    const now = this.clock.now()
    for (const r of rows) {
      for (const f of evaluate(r, this.ruleSet)) {
        const k = key(r.residentId, f.ruleId)
        const cur = p.open.has(k) ? p.open.get(k) : this.open.get(k)
        if (f.active && !cur) {
          const rule = this.ruleSet.rules.find((x) => x.id === f.ruleId)!
          const reading: Alert['reading'] = { deviceId: r.deviceId, seq: r.seq, ts: r.ts }
          if (r.hr !== undefined) reading.hr = r.hr
          if (r.sys !== undefined) reading.sys = r.sys
          if (r.dia !== undefined) reading.dia = r.dia
          const a: Alert = {
            id: randomUUID(), residentId: r.residentId, ruleSetId: this.ruleSet.id, ruleId: f.ruleId, severity: f.severity,
            state: 'open', openedAt: now, resolvedAt: null, message: alertMessage(rule.title, f.detail, f.severity), reading,
          }
          this.s.insert.run(a.id, a.residentId, a.ruleSetId, a.ruleId, a.severity, a.state, a.openedAt, a.message, JSON.stringify(a.reading))
          this.s.event.run(a.id, now, 'open', 'engine')
          p.open.set(k, a)
          p.changed.push(a)
        } else if (!f.active && cur) {
          // a reading back in range resolves the alert (hysteresis comes with the full engine)
          const a: Alert = { ...cur, state: 'resolved', resolvedAt: now }
          this.s.resolve.run(now, a.id)
          this.s.event.run(a.id, now, 'resolved', 'engine')
          p.open.set(k, null)
          p.changed.push(a)
        }
      }
    }
    return p
  }

  commit (p: Prepared): void {
    for (const [k, a] of p.open) {
      if (a) this.open.set(k, a)
      else this.open.delete(k)
    }
    for (const a of p.changed) {
      if (a.state === 'resolved') this.stats.resolved++
      else this.stats.opened++
      this.notify(a)
    }
  }

  private notify (a: Alert): void {
    this.notifier(a, () => {
      this.deliveredPending.push(a.id)
      // one small write for many alerts, off the hot path
      this.deliveredTimer ??= setTimeout(() => this.flushDelivered(), 50)
    })
  }

  flushDelivered (): void {
    if (this.deliveredTimer) clearTimeout(this.deliveredTimer)
    this.deliveredTimer = undefined
    const ids = this.deliveredPending
    if (ids.length === 0) return
    this.deliveredPending = []
    const now = this.clock.now()
    try {
      this.db.transaction(() => { for (const id of ids) this.s.delivered.run(now, id) })()
    } catch (err) {
      this.logger.error({ err }, 'could not record alert delivery; the alerts will be re-sent after a restart')
    }
  }

  /** Re-sends the alerts whose notification a crash interrupted. */
  resendUndelivered (): number {
    const rows = this.s.undelivered.all()
    for (const row of rows) this.notify(fromRow(row))
    if (rows.length) this.logger.info({ count: rows.length }, 're-sending alerts whose delivery was interrupted')
    return rows.length
  }

  activeAlerts (): Alert[] { return [...this.open.values()] }

  forResident (residentId: string, limit = 100): Alert[] {
    return this.s.forResident.all(residentId, limit).map(fromRow)
  }
}

interface AlertRow {
  id: string, resident_id: string, rule_set_id: string, rule_id: string, severity: Severity, state: AlertState,
  opened_at: number, resolved_at: number | null, message: string, reading: string
}

function fromRow (r: AlertRow): Alert {
  return {
    id: r.id, residentId: r.resident_id, ruleSetId: r.rule_set_id, ruleId: r.rule_id, severity: r.severity, state: r.state,
    openedAt: r.opened_at, resolvedAt: r.resolved_at, message: r.message, reading: JSON.parse(r.reading) as Alert['reading'],
  }
}
