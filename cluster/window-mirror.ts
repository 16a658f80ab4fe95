import pg from 'pg'
import { atomically, migrate, type Clock, type DB, type Logger, type Migration } from '../core/index.ts'
import { checkRollup, mergeRegion, regionRollup, residentSummary, summarize, windowFromJSON, type ClosedWindow, type RegionRollup, type ResidentFacts, type ResidentSummary, type RegionAggregate, type ResidentWindow, type SummarySink, type WindowKind, type WindowReads } from '../forwarder/index.ts'
import { Notes, Shipper, dropTriggers, installTriggers, readShipped } from './link-state.ts'
import { pgOpen, pgTransaction, type PgStep } from './pg.ts'

/**
 * The region's summary windows as one node would have them, in a cluster.
 *
 * Each resident's windows are kept by the node that judges the resident (the owner of its
 * partition), which sends the resident's summaries to its hospital. What is about the whole
 * region, the research institutions' cells and the parent region's roll-up, needs every
 * resident's window: each node ships its windows to `cluster_windows` in PostgreSQL as the
 * aggregator checkpoints them (a trigger notes each write in `window_mirror_outbox`), and the
 * child regions' roll-ups it receives to `cluster_child_rollups`; the owner of partition 0 (one
 * node at a time, and another when it dies) closes the region's windows from there, a few
 * seconds after the nodes closed their residents' (`settleMs`), and sends them again, as the
 * next version, when a resident's window changed after that (a late reading, a takeover that
 * rebuilt it). The versions sent are in PostgreSQL (`cluster_window_groups`), so the next
 * emitter goes on numbering them. The API's reads of windows (a resident's summaries, research
 * pulls, the region's aggregates) read the same copy on every node.
 */
const STEPS: PgStep[] = [{
  version: 1,
  why: "every resident's summary windows and the child regions' roll-ups, for the region's windows closed by one node, and the versions it sent",
  sql: `
    -- the order of changes, whichever node's clock: the emitter notes up to which one a version it sent covers
    CREATE SEQUENCE IF NOT EXISTS cluster_windows_change;
    CREATE TABLE IF NOT EXISTS cluster_windows (
      kind TEXT NOT NULL, start BIGINT NOT NULL, resident_id TEXT NOT NULL, end_ts BIGINT NOT NULL, time_zone TEXT NOT NULL,
      state JSONB NOT NULL, source TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (kind, start, resident_id)); -- updated_at: cluster_windows_change
    CREATE INDEX IF NOT EXISTS cluster_windows_resident ON cluster_windows (resident_id, kind, start);
    CREATE INDEX IF NOT EXISTS cluster_windows_changed ON cluster_windows (kind, updated_at);
    CREATE TABLE IF NOT EXISTS cluster_child_rollups (
      child TEXT NOT NULL, kind TEXT NOT NULL, start BIGINT NOT NULL, version INTEGER NOT NULL, body JSONB NOT NULL, updated_at BIGINT NOT NULL,
      PRIMARY KEY (child, kind, start));
    CREATE TABLE IF NOT EXISTS cluster_window_groups (
      kind TEXT NOT NULL, start BIGINT NOT NULL, version INTEGER NOT NULL, covers BIGINT NOT NULL, PRIMARY KEY (kind, start));`,
}]

export const WINDOW_MIRROR_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: summary windows and child roll-ups written on this node that the cluster's copy may not have yet (triggers fill it)",
  up: 'CREATE TABLE IF NOT EXISTS window_mirror_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, start INTEGER NOT NULL, resident_id TEXT, child TEXT)',
}]

const TRIGGERS = ['window_mirror_ins', 'window_mirror_upd', 'child_mirror_ins', 'child_mirror_upd']

interface Row { kind: string, start: string, resident_id: string, state: ResidentWindow & Record<string, unknown> }

export interface WindowMirrorOptions {
  db: DB
  pool: pg.Pool
  clock: Clock
  logger: Logger
  /** this node's name in the cluster's shared logs */
  source: string
  windows: readonly WindowKind[]
  latenessMs: number
  retainMs: number
  region: { id: string, level: string }
  rollupK: number
  /** the region-level sinks (research, parent region): sent by the emitter only */
  sinks: readonly SummarySink[]
  facts(residentId: string): ResidentFacts | undefined
  /** is this node the region's emitter now (it owns partition 0)? */
  emitter(): boolean
  /** the alerts opened for a resident in [from, to) (a summary counts them) */
  alertsIn(residentId: string, from: number, to: number): Promise<number>
  /** how long after the nodes closed a window the region's is closed (default 3000 ms: their last checkpoint is shipped by then) */
  settleMs?: number
  intervalMs?: number
}

/** Ships this node's windows to the cluster's copy, closes the region's windows when this node is the emitter, and reads the copy for the API. */
export class WindowMirror extends Shipper implements WindowReads {
  private readonly s
  readonly stats = { shipped: 0, regionWindows: 0 }

  private constructor (private readonly o: WindowMirrorOptions) {
    super(o.logger, {
      failing: "cannot ship this node's summary windows to the cluster's copy in PostgreSQL; the region's windows wait for them",
      back: "summary windows shipped to the cluster's copy again",
      notOk: 'summary windows not shipped',
    }, o.intervalMs)
    migrate(o.db, 'window-mirror', WINDOW_MIRROR_MIGRATIONS)
    const note = (cols: string, values: string): string => `BEGIN INSERT INTO window_mirror_outbox (${cols}) VALUES (${values}); END`
    installTriggers(o.db, {
      window_mirror_ins: `CREATE TRIGGER window_mirror_ins AFTER INSERT ON summary_windows ${note('kind, start, resident_id', 'NEW.kind, NEW.start, NEW.resident_id')}`,
      window_mirror_upd: `CREATE TRIGGER window_mirror_upd AFTER UPDATE ON summary_windows ${note('kind, start, resident_id', 'NEW.kind, NEW.start, NEW.resident_id')}`,
      child_mirror_ins: `CREATE TRIGGER child_mirror_ins AFTER INSERT ON child_rollups ${note('kind, start, child', 'NEW.kind, NEW.start, NEW.child')}`,
      child_mirror_upd: `CREATE TRIGGER child_mirror_upd AFTER UPDATE ON child_rollups ${note('kind, start, child', 'NEW.kind, NEW.start, NEW.child')}`,
    })
    this.s = {
      notes: new Notes<{ id: number, kind: string, start: number, resident_id: string | null, child: string | null }>(o.db, 'window_mirror_outbox', 'kind, start, resident_id, child'),
      window: o.db.prepare<[string, number, string], { state: string }>('SELECT state FROM summary_windows WHERE kind = ? AND start = ? AND resident_id = ?'),
      child: o.db.prepare<[string, string, number], { version: number, body: string }>('SELECT version, body FROM child_rollups WHERE child = ? AND kind = ? AND start = ?'),
    }
  }

  static async open (o: Omit<WindowMirrorOptions, 'pool'> & { postgresUrl: string }): Promise<WindowMirror> {
    return new WindowMirror({ ...o, pool: await pgOpen(o.postgresUrl, 2, 'cluster-windows', STEPS) })
  }

  /** A node not in a cluster notes nothing: the triggers an earlier cluster start left are dropped. */
  static uninstall (db: DB): void { dropTriggers(db, TRIGGERS) }

  protected async ship (): Promise<void> {
    this.stats.shipped += await this.s.notes.ship(async (rows) => {
      // the window as the aggregator wrote it (forwarder/aggregator.ts windowToJSON), without its position in this node's feed
      const windows = new Map<string, { kind: string, start: number, residentId: string, end: number, timeZone: string, state: string }>()
      const children = new Map<string, { child: string, kind: string, start: number, version: number, body: string }>()
      for (const r of rows) {
        if (r.resident_id !== null) {
          const row = this.s.window.get(r.kind, r.start, r.resident_id)
          const ms = this.o.windows.find((w) => w.name === r.kind)?.ms ?? 0
          // gone: dropped when another node took the resident over, whose copy is the one that counts
          if (row) {
            const { pos: _, ...state } = JSON.parse(row.state) as { pos?: number, end?: number, timeZone?: string }
            windows.set(`${r.kind}|${r.start}|${r.resident_id}`, { kind: r.kind, start: r.start, residentId: r.resident_id, end: state.end ?? r.start + ms, timeZone: state.timeZone ?? 'UTC', state: JSON.stringify(state) })
          }
        } else if (r.child !== null) {
          const row = this.s.child.get(r.child, r.kind, r.start)
          if (row) children.set(`${r.child}|${r.kind}|${r.start}`, { child: r.child, kind: r.kind, start: r.start, ...row })
        }
      }
      await pgTransaction(this.o.pool, async (c) => {
        for (const x of windows.values()) {
          await c.query(`INSERT INTO cluster_windows (kind, start, resident_id, end_ts, time_zone, state, source, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, nextval('cluster_windows_change'))
            ON CONFLICT (kind, start, resident_id) DO UPDATE SET end_ts = excluded.end_ts, time_zone = excluded.time_zone, state = excluded.state, source = excluded.source, updated_at = excluded.updated_at`,
          [x.kind, x.start, x.residentId, x.end, x.timeZone, x.state, this.o.source])
        }
        for (const x of children.values()) {
          await c.query(`INSERT INTO cluster_child_rollups (child, kind, start, version, body, updated_at) VALUES ($1, $2, $3, $4, $5, nextval('cluster_windows_change'))
            ON CONFLICT (child, kind, start) DO UPDATE SET version = excluded.version, body = excluded.body, updated_at = excluded.updated_at WHERE excluded.version > cluster_child_rollups.version`,
          [x.child, x.kind, x.start, x.version, x.body])
        }
      })
      return windows.size + children.size
    })
  }

  protected override async afterShip (): Promise<void> { if (this.o.emitter()) await this.closeRegionWindows() }

  override async stop (): Promise<void> {
    await super.stop()
    await this.o.pool.end().catch(() => {})
  }

  summary (): Record<string, unknown> { return { ...this.stats, emitter: this.o.emitter(), problem: this.link.current } }

  /**
   * The emitter's round: every window period whose residents' windows closed on their nodes
   * (end + lateness + settle) and changed since the region's version was last sent, is sent to
   * the region-level sinks as the next version.
   */
  async closeRegionWindows (): Promise<number> {
    const now = this.o.clock.now()
    const settle = this.o.settleMs ?? 3000
    let sent = 0
    for (const w of this.o.windows) {
      const horizon = now - 2 * w.ms - this.o.retainMs
      const due = await this.o.pool.query<{ start: string, end_ts: string, time_zone: string, changed: string }>(`
        SELECT c.start, max(c.end_ts) AS end_ts, min(c.time_zone) AS time_zone, max(c.updated_at) AS changed FROM (
          SELECT start, end_ts, time_zone, updated_at FROM cluster_windows WHERE kind = $1 AND start >= $3
          UNION ALL SELECT start, (body->'window'->>'end')::bigint, coalesce(body->'window'->>'timeZone', 'UTC'), updated_at FROM cluster_child_rollups WHERE kind = $1 AND start >= $3) c
        LEFT JOIN cluster_window_groups g ON g.kind = $1 AND g.start = c.start
        GROUP BY c.start, g.covers HAVING max(c.end_ts) + $2 <= $4 AND (g.covers IS NULL OR max(c.updated_at) > g.covers)
        ORDER BY c.start`, [w.name, this.o.latenessMs + settle, horizon, now])
      for (const g of due.rows) {
        const start = Number(g.start)
        const all = await this.residentWindows(w, start)
        const children = await this.children(w.name, start)
        const version = Number((await this.o.pool.query<{ version: number }>('SELECT version FROM cluster_window_groups WHERE kind = $1 AND start = $2', [w.name, start])).rows[0]?.version ?? 0) + 1
        const period = { start, end: Number(g.end_ts), timeZone: g.time_zone }
        const closed: ClosedWindow = {
          kind: w.name, ...period, version, changed: [], all,
          rollup: regionRollup(this.o.region, this.o.rollupK, w, period, version, all, children),
          facts: (id) => this.o.facts(id),
        }
        // the sinks enqueue into this node's outbox; the version is noted after: a crash in between sends it again, never skips it
        atomically(this.o.db, () => { for (const sink of this.o.sinks) sink.emit(closed) })
        await this.o.pool.query(`INSERT INTO cluster_window_groups (kind, start, version, covers) VALUES ($1, $2, $3, $4)
          ON CONFLICT (kind, start) DO UPDATE SET version = excluded.version, covers = excluded.covers`, [w.name, start, version, Number(g.changed)])
        this.stats.regionWindows++
        sent++
      }
      await this.o.pool.query('DELETE FROM cluster_windows WHERE kind = $1 AND start < $2', [w.name, horizon])
      await this.o.pool.query('DELETE FROM cluster_child_rollups WHERE kind = $1 AND start < $2', [w.name, horizon])
      await this.o.pool.query('DELETE FROM cluster_window_groups WHERE kind = $1 AND start < $2', [w.name, horizon])
    }
    return sent
  }

  private async residentWindows (w: WindowKind, start: number, residentId?: string): Promise<ResidentWindow[]> {
    const r = await this.o.pool.query<Row>(`SELECT kind, start, resident_id, state FROM cluster_windows WHERE kind = $1 AND start = $2 ${residentId ? 'AND resident_id = $3' : ''} ORDER BY resident_id`,
      residentId ? [w.name, start, residentId] : [w.name, start])
    return r.rows.map((x) => windowFromJSON(JSON.stringify(x.state), w.ms))
  }

  private async children (kind: string, start: number): Promise<RegionRollup[]> {
    const r = await this.o.pool.query<{ body: unknown }>('SELECT body FROM cluster_child_rollups WHERE kind = $1 AND start = $2 ORDER BY child', [kind, start])
    const out: RegionRollup[] = []
    for (const x of r.rows) {
      const c = checkRollup(x.body, this.o.windows)
      if (c.ok) out.push(c.rollup as RegionRollup)
    }
    return out
  }

  private async fresh<T> (read: () => Promise<T>): Promise<T> { return await readShipped('the cluster\'s summary windows', async () => { await this.flush() }, read) }

  /** As Aggregator.residentSummaries, from the cluster's copy. */
  async residentSummaries (residentId: string, kind: string, from: number, to: number, limit = 1000): Promise<ResidentSummary[]> {
    const w = this.o.windows.find((x) => x.name === kind)
    if (!w) return []
    return await this.fresh(async () => {
      const r = await this.o.pool.query<Row>('SELECT kind, start, resident_id, state FROM cluster_windows WHERE resident_id = $1 AND kind = $2 AND start >= $3 AND start < $4 ORDER BY start LIMIT $5', [residentId, kind, from, to, limit])
      const out: ResidentSummary[] = []
      for (const x of r.rows) {
        const acc = windowFromJSON(JSON.stringify(x.state), w.ms)
        out.push(residentSummary(acc, w, 0, await this.o.alertsIn(residentId, acc.start, acc.end)))
      }
      return out
    })
  }

  /** As Aggregator.closedWindows (research pulls): the periods the emitter sent, with every resident's window. */
  async closedWindows (kind: string, from: number, to: number, limit: number): Promise<ClosedWindow[]> {
    const w = this.o.windows.find((x) => x.name === kind)
    if (!w) return []
    return await this.fresh(async () => {
      const groups = await this.o.pool.query<{ start: string, version: number }>('SELECT start, version FROM cluster_window_groups WHERE kind = $1 AND start >= $2 AND start < $3 ORDER BY start LIMIT $4', [kind, from, to, limit])
      const out: ClosedWindow[] = []
      for (const g of groups.rows) {
        const start = Number(g.start)
        const all = await this.residentWindows(w, start)
        const end = Math.max(start + w.ms, ...all.map((a) => a.end))
        out.push({ kind, start, end, timeZone: all[0]?.timeZone ?? 'UTC', version: g.version, changed: [], all, rollup: undefined as never, facts: (id) => this.o.facts(id) })
      }
      return out
    })
  }

  /** As Aggregator.ownAlerts, from the cluster's copies of every node's windows and alerts. */
  async ownAlerts (kind: string, start: number): Promise<{ residents: number, alerts: number }> {
    return await this.fresh(async () => {
      const r = await this.o.pool.query<{ residents: string, alerts: string }>(`SELECT count(*) AS residents, coalesce(sum((
        SELECT count(*) FROM cluster_alerts a WHERE a.resident_id = w.resident_id AND a.opened_at >= w.start AND a.opened_at < w.end_ts AND a.state <> 'recorded')), 0) AS alerts
        FROM cluster_windows w WHERE w.kind = $1 AND w.start = $2`, [kind, start])
      return { residents: Number(r.rows[0]!.residents), alerts: Number(r.rows[0]!.alerts) }
    })
  }

  /** As Aggregator.regionAggregates, from the cluster's copy. */
  async regionAggregates (kind: string, from: number, to: number, minOwn = 1): Promise<RegionAggregate[]> {
    const w = this.o.windows.find((x) => x.name === kind)
    if (!w) return []
    return await this.fresh(async () => {
      const starts = await this.o.pool.query<{ start: string }>(`SELECT start FROM cluster_windows WHERE kind = $1 AND start >= $2 AND start < $3
        UNION SELECT start FROM cluster_child_rollups WHERE kind = $1 AND start >= $2 AND start < $3 ORDER BY start`, [kind, from, to])
      const out: RegionAggregate[] = []
      for (const { start: s } of starts.rows) {
        const start = Number(s)
        const own = await this.residentWindows(w, start)
        const children = await this.children(kind, start)
        const { residents, hr, sys, dia, cats } = mergeRegion(own.length >= minOwn ? own : [], children)
        out.push({
          window: { kind, start, end: Math.max(start + w.ms, ...own.map((a) => a.end)) }, residents, hr: summarize(hr), sys: summarize(sys), dia: summarize(dia), bpCategories: cats,
          children: children.map((c) => ({ region: c.region, residents: c.residents, readings: Math.max(c.hr.n, c.sys.n) })),
        })
      }
      return out
    })
  }
}
