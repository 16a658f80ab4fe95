import pg from 'pg'
import { migrate, type DB, type Logger, type Migration } from '../core/index.ts'
import { byAttention, type Alert, type AlertHandover } from '../alerting/index.ts'
import { Notes, Shipper, dropTriggers, installTriggers, readShipped } from './link-state.ts'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * Every node's alerts, readable on every node: the duty desk's worklist and a resident's alerts
 * answer the same through any node of a cluster.
 *
 * Alerting runs on the node that owns the resident's partition, and keeps its alerts in that
 * node's SQLite. A trigger notes every change of an alert row there (`alert_mirror_outbox`, in
 * the transaction of the change), and the node ships the alert as it is then, with what the next
 * owner needs to go on with it (`handover`), to `cluster_alerts` in PostgreSQL: before a
 * partition's position commits, every 250 ms, and before every read. An alert is written by one
 * node at a time (the resident's judge), so the copy in PostgreSQL is simply the last one shipped;
 * a node that takes a partition over adopts its residents' active alerts from it. Acting on an
 * alert (acknowledge, assign, close) works through any node: the request goes to the node judging
 * the resident (cluster/node.ts `judge`).
 */
const STEPS: PgStep[] = [{
  version: 1,
  why: "every node's alerts as they are now, for the worklists and alert lists of every node",
  sql: `
    CREATE TABLE IF NOT EXISTS cluster_alerts (
      id TEXT PRIMARY KEY, source TEXT NOT NULL, resident_id TEXT NOT NULL, severity TEXT NOT NULL, state TEXT NOT NULL,
      opened_at BIGINT NOT NULL, closed_at BIGINT, body JSONB NOT NULL);
    CREATE INDEX IF NOT EXISTS cluster_alerts_resident ON cluster_alerts (resident_id, opened_at DESC);
    CREATE INDEX IF NOT EXISTS cluster_alerts_state ON cluster_alerts (state);`,
}, {
  version: 2,
  why: 'what the next owner of a resident\'s partition needs to go on with an alert (last sent, escalation start, announcement, delivery)',
  sql: 'ALTER TABLE cluster_alerts ADD COLUMN IF NOT EXISTS handover JSONB',
}]

export const ALERT_MIRROR_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: alerts changed on this node that the cluster's copy may not have yet (a trigger on alerts fills it)",
  up: `
    CREATE TABLE IF NOT EXISTS alert_mirror_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS alert_mirror_state (id INTEGER PRIMARY KEY CHECK (id = 1), seeded INTEGER NOT NULL DEFAULT 0);
    INSERT OR IGNORE INTO alert_mirror_state (id) VALUES (1);`,
}]

const TRIGGERS = ['alert_mirror_ins', 'alert_mirror_upd']

export class ClusterAlerts {
  private constructor (readonly pool: pg.Pool) {}

  static async open (connectionString: string): Promise<ClusterAlerts> {
    return new ClusterAlerts(await pgOpen(connectionString, 2, 'cluster-alerts', STEPS))
  }

  async put (source: string, alerts: readonly (Alert | { alert: Alert, handover?: AlertHandover })[]): Promise<void> {
    if (alerts.length === 0) return
    await pgTransaction(this.pool, async (c) => {
      for (const x of alerts) {
        const { alert: a, handover } = 'alert' in x ? x : { alert: x, handover: undefined }
        await c.query(`INSERT INTO cluster_alerts (id, source, resident_id, severity, state, opened_at, closed_at, body, handover) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
          ON CONFLICT (id) DO UPDATE SET source = excluded.source, severity = excluded.severity, state = excluded.state, closed_at = excluded.closed_at, body = excluded.body, handover = excluded.handover`,
        [a.id, source, a.residentId, a.severity, a.state, a.openedAt, a.closedAt, JSON.stringify(a), handover ? JSON.stringify(handover) : null])
      }
    })
  }

  /**
   * What a node taking over a partition adopts (AlertBook.adopt): the active alerts of the
   * residents `theirs` accepts, the alerts `ids` (those it held active) as they are now, and
   * those opened since `since` whatever their state (a summary window still open counts them).
   */
  async handedOver (theirs: (residentId: string) => boolean, ids: readonly string[], since = Number.MAX_SAFE_INTEGER): Promise<{ alert: Alert, handover: AlertHandover }[]> {
    const r = await this.pool.query<{ body: Alert, handover: AlertHandover | null }>(
      "SELECT body, handover FROM cluster_alerts WHERE state IN ('open', 'acknowledged') OR id = ANY($1::text[]) OR opened_at >= $2", [ids, since])
    const none: AlertHandover = { lastNotifiedAt: null, escalateFrom: null, announceAt: null, deliveredAt: null }
    return r.rows.filter((x) => theirs(x.body.residentId)).map((x) => ({ alert: x.body, handover: x.handover ?? none }))
  }

  /** As AlertBook.forResident: newest first. */
  async forResident (residentId: string, limit: number): Promise<Alert[]> {
    const r = await this.pool.query<{ body: Alert }>('SELECT body FROM cluster_alerts WHERE resident_id = $1 ORDER BY opened_at DESC, id DESC LIMIT $2', [residentId, limit])
    return r.rows.map((x) => x.body)
  }

  /** As AlertBook.needingAttention: open and acknowledged alerts, and criticals whose standard was withdrawn until someone closes them. */
  async needingAttention (residentIds?: (id: string) => boolean): Promise<Alert[]> {
    const r = await this.pool.query<{ body: Alert }>(`SELECT body FROM cluster_alerts WHERE state IN ('open', 'acknowledged')
      OR (state IN ('withdrawn', 'superseded') AND severity = 'critical' AND closed_at IS NULL)`)
    const all = r.rows.map((x) => x.body).sort(byAttention)
    return residentIds ? all.filter((a) => residentIds(a.residentId)) : all
  }

  /** Alerts opened for a resident in [from, to), as AlertBook.openedBetween (a summary window counts them). */
  async openedBetween (residentId: string, from: number, to: number): Promise<number> {
    const r = await this.pool.query<{ n: string }>("SELECT count(*) AS n FROM cluster_alerts WHERE resident_id = $1 AND opened_at >= $2 AND opened_at < $3 AND state != 'recorded'", [residentId, from, to])
    return Number(r.rows[0]!.n)
  }

  /** One alert as the cluster's copy has it. */
  async get (alertId: string): Promise<Alert | undefined> {
    return (await this.pool.query<{ body: Alert }>('SELECT body FROM cluster_alerts WHERE id = $1', [alertId])).rows[0]?.body
  }

  async close (): Promise<void> { await this.pool.end() }
}

export interface AlertMirrorOptions {
  db: DB
  /** the alert as this node holds it now */
  alert(id: string): Alert | undefined
  /** what the next owner of the resident's partition needs to go on with it */
  handover?(id: string): AlertHandover | undefined
  cluster: ClusterAlerts
  source: string
  logger: Logger
  /** how often the outbox is looked at (default 250 ms) */
  intervalMs?: number
}

/** Ships this node's alert changes to the cluster's copy; reads the cluster's copy (after shipping this node's). */
export class AlertMirror extends Shipper {
  private readonly s
  readonly stats = { shipped: 0 }

  constructor (private readonly o: AlertMirrorOptions) {
    super(o.logger, {
      failing: "cannot ship this node's alerts to the cluster's copy in PostgreSQL; other nodes do not see its latest changes until it can",
      back: "alerts shipped to the cluster's copy again",
      notOk: 'alerts not shipped',
    }, o.intervalMs)
    migrate(o.db, 'alert-mirror', ALERT_MIRROR_MIGRATIONS)
    installTriggers(o.db, {
      alert_mirror_ins: 'CREATE TRIGGER alert_mirror_ins AFTER INSERT ON alerts BEGIN INSERT INTO alert_mirror_outbox (alert_id) VALUES (NEW.id); END',
      alert_mirror_upd: 'CREATE TRIGGER alert_mirror_upd AFTER UPDATE ON alerts BEGIN INSERT INTO alert_mirror_outbox (alert_id) VALUES (NEW.id); END',
    })
    this.s = {
      notes: new Notes<{ id: number, alert_id: string }>(o.db, 'alert_mirror_outbox', 'alert_id'),
      seeded: o.db.prepare<[], { seeded: number }>('SELECT seeded FROM alert_mirror_state WHERE id = 1'),
      seed: o.db.prepare('INSERT INTO alert_mirror_outbox (alert_id) SELECT id FROM alerts ORDER BY opened_at'),
      markSeeded: o.db.prepare('UPDATE alert_mirror_state SET seeded = 1 WHERE id = 1'),
    }
  }

  /** A node not in a cluster notes nothing: the triggers an earlier cluster start left are dropped. */
  static uninstall (db: DB): void { dropTriggers(db, TRIGGERS) }

  protected async ship (): Promise<void> {
    this.stats.shipped += await this.s.notes.ship(async (rows) => {
      const alerts: { alert: Alert, handover?: AlertHandover }[] = []
      for (const id of new Set(rows.map((r) => r.alert_id))) {
        const a = this.o.alert(id)
        if (a) alerts.push({ alert: a, handover: this.o.handover?.(id) })
      }
      await this.o.cluster.put(this.o.source, alerts)
      return alerts.length
    })
  }

  override start (): void {
    // a node that joins with alerts of its own (or a history from before cluster mode) brings them in
    if (!this.s.seeded.get()!.seeded) this.o.db.transaction(() => { this.s.seed.run(); this.s.markSeeded.run() })()
    super.start()
  }

  summary (): Record<string, unknown> { return { shipped: this.stats.shipped, problem: this.link.current } }

  private async fresh<T> (read: () => Promise<T>): Promise<T> { return await readShipped("the cluster's alerts", async () => { await this.flush() }, read) }


  async forResident (residentId: string, limit: number): Promise<Alert[]> { return await this.fresh(async () => await this.o.cluster.forResident(residentId, limit)) }
  async needingAttention (residentIds?: (id: string) => boolean): Promise<Alert[]> { return await this.fresh(async () => await this.o.cluster.needingAttention(residentIds)) }
  async get (alertId: string): Promise<Alert | undefined> { return await this.fresh(async () => await this.o.cluster.get(alertId)) }
}
