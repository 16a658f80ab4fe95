import pg from 'pg'
import { migrate, type Clock, type DB, type Logger, type Migration } from '../core/index.ts'
import { outcomeOf, type ReportOutcome, type RunCopy } from '../reports/index.ts'
import { Notes, Shipper, dropTriggers, installTriggers, readShipped } from './link-state.ts'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * The cluster's copy of every node's report runs, so that a run goes on where its resident is
 * judged when the resident's partition moves (a home-BP week outlasts many a takeover).
 *
 * A run is kept by the node judging its resident (reports/book.ts). Triggers note each change of
 * a run, of the readings it collected and of its issued reports (`report_mirror_outbox`), and the
 * node ships the run whole (a few dozen readings) to `cluster_report_runs`, every 250 ms and
 * before a partition's position commits; a node that takes a partition over adopts the runs of
 * its residents that readings may still change.
 */
const STEPS: PgStep[] = [{
  version: 1,
  why: "every node's report runs, with their readings and issued reports, for the node that takes a resident over",
  sql: `
    CREATE TABLE IF NOT EXISTS cluster_report_runs (
      id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, state TEXT NOT NULL, end_ts BIGINT NOT NULL, copy JSONB NOT NULL, source TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS cluster_report_runs_open ON cluster_report_runs (end_ts) WHERE state IN ('active', 'finished');`,
}]

export const REPORT_MIRROR_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: report runs changed on this node that the cluster's copy may not have yet (triggers fill it)",
  up: 'CREATE TABLE IF NOT EXISTS report_mirror_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL)',
}]

const TRIGGERS = ['report_mirror_run_ins', 'report_mirror_run_upd', 'report_mirror_reading', 'report_mirror_result']

export interface ReportMirrorOptions {
  db: DB
  pool: pg.Pool
  clock: Clock
  logger: Logger
  source: string
  /** the run as this node holds it now */
  snapshot(runId: string): RunCopy | undefined
  /** how long after its end a finished run may still be amended (ReportBook's amendWindowMs) */
  amendMs: number
  intervalMs?: number
}

export class ReportMirror extends Shipper {
  private readonly s
  readonly stats = { shipped: 0 }

  private constructor (private readonly o: ReportMirrorOptions) {
    super(o.logger, {
      failing: "cannot ship this node's report runs to the cluster's copy in PostgreSQL; a node taking its residents over would not have their latest readings",
      back: "report runs shipped to the cluster's copy again",
      notOk: 'report runs not shipped',
    }, o.intervalMs)
    migrate(o.db, 'report-mirror', REPORT_MIRROR_MIGRATIONS)
    const note = (of: string): string => `BEGIN INSERT INTO report_mirror_outbox (run_id) VALUES (${of}); END`
    installTriggers(o.db, {
      report_mirror_run_ins: `CREATE TRIGGER report_mirror_run_ins AFTER INSERT ON report_runs ${note('NEW.id')}`,
      report_mirror_run_upd: `CREATE TRIGGER report_mirror_run_upd AFTER UPDATE ON report_runs ${note('NEW.id')}`,
      report_mirror_reading: `CREATE TRIGGER report_mirror_reading AFTER INSERT ON report_readings ${note('NEW.run_id')}`,
      report_mirror_result: `CREATE TRIGGER report_mirror_result AFTER INSERT ON report_results ${note('NEW.run_id')}`,
    })
    this.s = {
      notes: new Notes<{ id: number, run_id: string }>(o.db, 'report_mirror_outbox', 'run_id'),
    }
  }

  static async open (o: Omit<ReportMirrorOptions, 'pool'> & { postgresUrl: string }): Promise<ReportMirror> {
    return new ReportMirror({ ...o, pool: await pgOpen(o.postgresUrl, 2, 'cluster-reports', STEPS) })
  }

  /** A node not in a cluster notes nothing: the triggers an earlier cluster start left are dropped. */
  static uninstall (db: DB): void { dropTriggers(db, TRIGGERS) }

  protected async ship (): Promise<void> {
    this.stats.shipped += await this.s.notes.ship(async (rows) => {
      const copies: RunCopy[] = []
      for (const id of new Set(rows.map((r) => r.run_id))) { const c = this.o.snapshot(id); if (c) copies.push(c) }
      await pgTransaction(this.o.pool, async (c) => {
        for (const x of copies) {
          await c.query(`INSERT INTO cluster_report_runs (id, resident_id, state, end_ts, copy, source) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (id) DO UPDATE SET state = excluded.state, copy = excluded.copy, source = excluded.source`,
          [x.run.id, x.run.resident_id, x.run.state, x.run.end_ts, JSON.stringify(x), this.o.source])
        }
      })
      return copies.length
    })
  }

  /** The runs of the residents `theirs` accepts that readings may still change (running, or finished within the amend window). */
  async handedOver (theirs: (residentId: string) => boolean): Promise<RunCopy[]> {
    const r = await this.o.pool.query<{ resident_id: string, copy: RunCopy }>(
      "SELECT resident_id, copy FROM cluster_report_runs WHERE state = 'active' OR (state = 'finished' AND end_ts > $1)", [this.o.clock.now() - this.o.amendMs])
    return r.rows.filter((x) => theirs(x.resident_id)).map((x) => x.copy)
  }

  /** As ReportBook.finishedOutcomes, over every node's runs (research report aggregates). */
  async finishedOutcomes (from: number, to: number): Promise<ReportOutcome[]> {
    return await readShipped("the cluster's report runs", async () => { await this.flush() }, async () => {
      const r = await this.o.pool.query<{ copy: RunCopy }>("SELECT copy FROM cluster_report_runs WHERE state = 'finished' AND end_ts >= $1 AND end_ts < $2 ORDER BY end_ts, id", [from, to])
      const out: ReportOutcome[] = []
      for (const { copy } of r.rows) {
        const latest = copy.results.find((x) => x.version === copy.run.version)
        if (latest) out.push(outcomeOf(copy.run, latest.result))
      }
      return out
    })
  }

  override async stop (): Promise<void> {
    await super.stop()
    await this.o.pool.end().catch(() => {})
  }

  summary (): Record<string, unknown> { return { ...this.stats, problem: this.link.current } }
}
