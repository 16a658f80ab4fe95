import { CheckpointRounds, addColumns, atomically, isTimeZone, migrate, type Clock, type DB, type Logger, type Migration, type Reading } from '../core/index.ts'
import { BUILTIN_RULE_SETS, compileRule } from '../alerting/index.ts'
import { addValue, emptyStats, mergeStats, statsFromJSON, statsToJSON, summarize, type MetricStats, type StatsSummary } from './stats.ts'
import { windowAt, type WindowBounds, type WindowKind } from './windows.ts'
import { checkRollup } from './rollup.ts'

/** One resident's summary of one window: what hospitals receive (as FHIR) and research cells are built from. */
export interface ResidentSummary {
  residentId: string
  window: { kind: string, start: number, end: number }
  version: number
  hr: StatsSummary
  sys: StatsSummary
  dia: StatsSummary
  /** ACC/AHA 2017 category of each BP reading */
  bpCategories: Record<string, number>
  /** share of readings in range: BP below 130/80, HR 50-100 bpm (readings are periodic, so this approximates time) */
  timeInRange: { bp: number | null, hr: number | null }
  alerts: number
}

export interface ResidentWindow {
  residentId: string
  kind: string
  start: number
  /** a daily window of a DST-observing zone is 23 or 25 hours long (forwarder/windows.ts) */
  end: number
  /** the zone the window was cut in: the resident's, else the region's */
  timeZone: string
  hr: MetricStats
  sys: MetricStats
  dia: MetricStats
  cats: Record<string, number>
  bpIn: number
  hrIn: number
  /**
   * the spool record up to which this window holds every reading, as last checkpointed (0: not
   * known). Windows are checkpointed a slice at a time, so some are saved after the spool cursor;
   * replaying the spool from the cursor after a crash skips the records a window holds already.
   */
  pos?: number
}

/** A roll-up: the mergeable aggregate of a region for one window, sent up to the parent region. */
export interface RegionRollup {
  schema: 'vitalmesh.region-rollup/1'
  region: string
  level: string
  /** `timeZone` is left out for UTC windows, which is what roll-ups of before local windows were */
  window: { kind: string, start: number, end: number, timeZone?: string }
  version: number
  residents: number
  hr: ReturnType<typeof statsToJSON>
  sys: ReturnType<typeof statsToJSON>
  dia: ReturnType<typeof statsToJSON>
  bpCategories: Record<string, number>
  /** the regions below, as received (a county has none) */
  children: string[]
  /** this node's own residents were left out: fewer than `rollupK` had readings in the window */
  suppressed?: boolean
}

export interface ResidentFacts { region: string | null, birthYear: number | null, hospitalId: string | null, researchConsent: boolean }

/** A window that closed (or changed after closing): what every sink gets. */
export interface ClosedWindow {
  kind: string
  start: number
  end: number
  /** the zone whose calendar the window follows (UTC for fixed-size windows in whole-hour zones as well as before local windows) */
  timeZone: string
  version: number
  /** summaries of residents whose data changed since the last emission of this window */
  changed: ResidentSummary[]
  /** every resident's raw window, for aggregates (research cells) */
  all: ResidentWindow[]
  rollup: RegionRollup
  facts(residentId: string): ResidentFacts | undefined
}

export interface SummarySink { name: string, emit(w: ClosedWindow): void }

/**
 * What the aggregator needs of the spool: its own cursor, to replay after a crash what it had
 * not checkpointed. The cursor table is the spool's: the aggregator moves its cursor only
 * through these methods (the spool is on the aggregator's database).
 */
export interface SpoolCursor {
  cursor(name: string): number
  read(afterId: number, limit: number): (Reading & { id: number, residentId: string })[]
  /** moves the cursor inside the caller's transaction, so that it commits with the window state */
  commitCursor(name: string, id: number): void
  /** moves the cursor and lets the spool drop what every consumer has */
  ack(name: string, id: number): void
  addConsumer(name: string): void
}

/**
 * The forwarder's window tables (component 'forwarder'); its spool cursor is in the spool's
 * `cursors` table, not here. Never edit a shipped step: add one.
 */
export const FORWARDER_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'window state per resident, per window group its emitted version, and the roll-ups received from child regions',
    up: `
      CREATE TABLE IF NOT EXISTS summary_windows (
        kind TEXT NOT NULL, start INTEGER NOT NULL, resident_id TEXT NOT NULL, state TEXT NOT NULL, dirty INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (kind, start, resident_id)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS summary_windows_resident ON summary_windows(resident_id, kind, start);
      CREATE TABLE IF NOT EXISTS summary_groups (
        kind TEXT NOT NULL, start INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 0, dirty INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (kind, start)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS child_rollups (
        child TEXT NOT NULL, kind TEXT NOT NULL, start INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, received_at INTEGER NOT NULL,
        PRIMARY KEY (child, kind, start)) WITHOUT ROWID;`,
  },
  {
    version: 2,
    why: 'daily windows start at local midnight of the resident\'s zone (issue 15): a window period keeps its end (23 or 25 hours on a DST change day) and its zone; NULL is a UTC window of before, ending at start + size',
    up: addColumns('summary_groups', { end_ts: 'INTEGER', time_zone: 'TEXT' }),
  },
]

export interface AggregatorDeps {
  db: DB
  /** with a spool, window state is checkpointed on a timer instead of in every commit */
  spool?: SpoolCursor
  clock: Clock
  logger: Logger
  windows: WindowKind[]
  latenessMs: number
  /** how long a closed window is kept for late readings and corrections */
  retainMs: number
  /** how often window state is written (with a spool cursor); also before a window closes and before a read (default 5000 ms) */
  checkpointMs?: number
  /** windows written per transaction by the periodic checkpoint (default 64: about 1–3 ms; a window with its three histograms is 1–2 KB of JSON) */
  checkpointSlice?: number
  region: { id: string, level: string }
  /**
   * k-anonymity of roll-ups: a window in which fewer of this node's own residents had readings
   * goes up without them (the node keeps its own detail). Default 1: every window goes up.
   */
  rollupK?: number
  resident(id: string): ResidentFacts | undefined
  /**
   * The IANA zone whose days a resident's daily windows follow: the resident's own, else the
   * region's. Without it (or for a zone Intl does not know) windows are UTC's.
   */
  timeZone?(residentId: string): string
  alertsIn(residentId: string, from: number, to: number): number
  sinks: SummarySink[]
  /**
   * Cluster mode: does this node judge the resident now (it owns the resident's partition)?
   * Only the resident's judge sends its windows: a node that lost the resident to another
   * keeps no say in its summaries. Unset: every resident (a single node).
   */
  owns?(residentId: string): boolean
}

const CURSOR = 'forwarder'

interface GroupRow { start: number, version: number, end_ts: number | null, time_zone: string | null }
const accAha = BUILTIN_RULE_SETS.find((d) => d.id === 'acc-aha-2017')!
const classify = compileRule(accAha, accAha.rules[0]!)

const HOUR = 3600_000

function newWindow (residentId: string, kind: string, b: WindowBounds, timeZone: string): ResidentWindow {
  return { residentId, kind, start: b.start, end: b.end, timeZone, hr: emptyStats(), sys: emptyStats(), dia: emptyStats(), cats: {}, bpIn: 0, hrIn: 0 }
}

export function windowToJSON (w: ResidentWindow): string {
  return JSON.stringify({ ...w, hr: statsToJSON(w.hr), sys: statsToJSON(w.sys), dia: statsToJSON(w.dia) })
}

/** `ms`: the window's size, for states written before windows kept their end (they were UTC-aligned) */
export function windowFromJSON (s: string, ms: number): ResidentWindow {
  const j = JSON.parse(s) as ResidentWindow & { hr: ReturnType<typeof statsToJSON>, sys: ReturnType<typeof statsToJSON>, dia: ReturnType<typeof statsToJSON> }
  return { ...j, end: j.end ?? j.start + ms, timeZone: j.timeZone ?? 'UTC', hr: statsFromJSON(j.hr), sys: statsFromJSON(j.sys), dia: statsFromJSON(j.dia) }
}

/** A region's aggregate for one window: its own residents' windows and its child regions' roll-ups, merged exactly. */
export function mergeRegion (all: readonly ResidentWindow[], children: readonly RegionRollup[]): { residents: number, hr: MetricStats, sys: MetricStats, dia: MetricStats, cats: Record<string, number> } {
  const hr = emptyStats(); const sys = emptyStats(); const dia = emptyStats()
  const cats: Record<string, number> = {}
  let residents = all.length
  for (const a of all) {
    mergeStats(hr, a.hr); mergeStats(sys, a.sys); mergeStats(dia, a.dia)
    for (const [c, n] of Object.entries(a.cats)) cats[c] = (cats[c] ?? 0) + n
  }
  for (const c of children) {
    mergeStats(hr, statsFromJSON(c.hr)); mergeStats(sys, statsFromJSON(c.sys)); mergeStats(dia, statsFromJSON(c.dia))
    for (const [k, n] of Object.entries(c.bpCategories)) cats[k] = (cats[k] ?? 0) + n
    residents += c.residents
  }
  return { residents, hr, sys, dia, cats }
}

/** A region's aggregate for one window, as the API reads it. */
export interface RegionAggregate { window: { kind: string, start: number, end: number }, residents: number, hr: StatsSummary, sys: StatsSummary, dia: StatsSummary, bpCategories: Record<string, number>, children: { region: string, residents: number, readings: number }[] }

/** What the API reads of windows: the aggregator's own, or in cluster mode the cluster's copy of every node's (cluster/window-mirror.ts). */
export interface WindowReads {
  residentSummaries(residentId: string, kind: string, from: number, to: number, limit?: number): ResidentSummary[] | Promise<ResidentSummary[]>
  closedWindows(kind: string, from: number, to: number, limit: number): ClosedWindow[] | Promise<ClosedWindow[]>
  regionAggregates(kind: string, from: number, to: number, minOwn?: number): RegionAggregate[] | Promise<RegionAggregate[]>
  /** the region's own residents with readings in one window, and the alerts opened for them in it (public statistics) */
  ownAlerts(kind: string, start: number): { residents: number, alerts: number } | Promise<{ residents: number, alerts: number }>
}

/** A resident's window as hospitals receive it; `alerts`: the alerts opened for the resident in it. */
export function residentSummary (acc: ResidentWindow, w: WindowKind, version: number, alerts: number): ResidentSummary {
  const bpN = acc.sys.n
  return {
    residentId: acc.residentId,
    window: { kind: w.name, start: acc.start, end: acc.end },
    version,
    hr: summarize(acc.hr), sys: summarize(acc.sys), dia: summarize(acc.dia),
    bpCategories: { ...acc.cats },
    timeInRange: { bp: bpN ? Math.round((acc.bpIn / bpN) * 1000) / 1000 : null, hr: acc.hr.n ? Math.round((acc.hrIn / acc.hr.n) * 1000) / 1000 : null },
    alerts,
  }
}

/** The region's roll-up of one window: its residents' windows (left out when fewer than `rollupK`) and its child regions' roll-ups, merged exactly. */
export function regionRollup (region: { id: string, level: string }, rollupK: number, w: WindowKind, period: { start: number, end: number, timeZone: string }, version: number, all: readonly ResidentWindow[], children: readonly RegionRollup[]): RegionRollup {
  const { start, end, timeZone } = period
  // the roll-up names its window as the parent checks it: a window of its zone (the longer of two sharing a start is local to the node)
  const cut = windowAt(w, start, timeZone)
  // fewer own residents than rollupK: the window goes up without them (children are k-protected by their own nodes)
  const suppressed = all.length > 0 && all.length < rollupK
  const { residents, hr, sys, dia, cats } = mergeRegion(suppressed ? [] : all, children)
  return {
    schema: 'vitalmesh.region-rollup/1', region: region.id, level: region.level,
    window: { kind: w.name, start, end: cut.start === start ? cut.end : end, ...(timeZone === 'UTC' ? {} : { timeZone }) }, version, residents,
    hr: statsToJSON(hr), sys: statsToJSON(sys), dia: statsToJSON(dia), bpCategories: cats, children: children.map((c) => c.region),
    ...(suppressed ? { suppressed: true } : {}),
  }
}

/**
 * Windowed summaries computed incrementally from the ingest stream (it takes part in the
 * spool's commit): each reading updates its resident's open windows; a window closes
 * `latenessMs` after its end and goes to every sink; a late reading (a device that was
 * offline) is folded into its own window, which is emitted again as a correction.
 */
export class Aggregator {
  private readonly open = new Map<string, ResidentWindow>()
  /** windows changed since the last checkpoint (open ones and late-loaded closed ones) */
  private readonly dirty = new Map<string, ResidentWindow>()
  /**
   * The same windows with the spool position before each one's first unsaved reading, and the
   * periodic checkpoint's round in progress (core/checkpoint-rounds.ts), written a slice per
   * consumer transaction: all of a county's windows at once held the event loop for tens of
   * milliseconds to seconds, and every alert behind it waited.
   */
  private readonly rounds = new CheckpointRounds<ResidentWindow>()
  /** per resident, the open window of each kind the last reading went to: most readings go to the same one */
  private recent = new Map<string, (ResidentWindow | undefined)[]>()
  private lastSpoolId = 0
  private checkpointedAt = 0
  /** while windows are rebuilt (takeOver): windows that closed before this time are left alone */
  private warming: number | undefined
  private readonly s
  private timer: NodeJS.Timeout | undefined
  readonly stats = { windowsClosed: 0, corrections: 0, lateReadings: 0, tooLate: 0 }

  constructor (private readonly d: AggregatorDeps) {
    const db = d.db
    migrate(db, 'forwarder', FORWARDER_MIGRATIONS)
    this.s = {
      save: db.prepare('INSERT INTO summary_windows (kind, start, resident_id, state, dirty) VALUES (?, ?, ?, ?, 1) ON CONFLICT(kind, start, resident_id) DO UPDATE SET state = excluded.state, dirty = 1'),
      load: db.prepare<[string, number, string], { state: string }>('SELECT state FROM summary_windows WHERE kind = ? AND start = ? AND resident_id = ?'),
      // residents of two zones whose days start at the same instant but differ in length (one has a DST change) share a period: it ends with the longer
      group: db.prepare('INSERT INTO summary_groups (kind, start, end_ts, time_zone, dirty) VALUES (?, ?, ?, ?, 1) ON CONFLICT(kind, start) DO UPDATE SET dirty = 1, end_ts = max(coalesce(end_ts, excluded.end_ts), excluded.end_ts), time_zone = coalesce(time_zone, excluded.time_zone)'),
      groupRow: db.prepare<[string, number], GroupRow>('SELECT start, version, end_ts, time_zone FROM summary_groups WHERE kind = ? AND start = ?'),
      due: db.prepare<[string, number, number], GroupRow>('SELECT start, version, end_ts, time_zone FROM summary_groups WHERE kind = ? AND dirty = 1 AND coalesce(end_ts, start + ?) <= ? ORDER BY start'),
      windowsOf: db.prepare<[string, number], { resident_id: string, state: string, dirty: number }>('SELECT resident_id, state, dirty FROM summary_windows WHERE kind = ? AND start = ?'),
      emitted: db.prepare('UPDATE summary_groups SET version = ?, dirty = 0 WHERE kind = ? AND start = ?'),
      clean: db.prepare('UPDATE summary_windows SET dirty = 0 WHERE kind = ? AND start = ?'),
      children: db.prepare<[string, number], { body: string }>('SELECT body FROM child_rollups WHERE kind = ? AND start = ? ORDER BY child'),
      saveChild: db.prepare('INSERT INTO child_rollups (child, kind, start, version, body, received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(child, kind, start) DO UPDATE SET version = excluded.version, body = excluded.body, received_at = excluded.received_at WHERE excluded.version > child_rollups.version'),
      openWindows: db.prepare<[string, number], { resident_id: string, start: number, state: string }>('SELECT resident_id, start, state FROM summary_windows WHERE kind = ? AND start >= ?'),
      regionStarts: db.prepare<[string, number, number, string, number, number], { start: number }>('SELECT start FROM summary_windows WHERE kind = ? AND start >= ? AND start < ? UNION SELECT start FROM child_rollups WHERE kind = ? AND start >= ? AND start < ? ORDER BY start'),
      residentWindows: db.prepare<[string, string, number, number, number], { start: number, state: string }>('SELECT start, state FROM summary_windows WHERE resident_id = ? AND kind = ? AND start >= ? AND start < ? ORDER BY start LIMIT ?'),
      groupStarts: db.prepare<[string, number, number, number], GroupRow>('SELECT start, version, end_ts, time_zone FROM summary_groups WHERE kind = ? AND start >= ? AND start < ? AND version > 0 ORDER BY start LIMIT ?'),
      pruneWindows: db.prepare('DELETE FROM summary_windows WHERE kind = ? AND start < ?'),
      forgetWindow: db.prepare('DELETE FROM summary_windows WHERE kind = ? AND start = ? AND resident_id = ?'),
      pruneGroups: db.prepare('DELETE FROM summary_groups WHERE kind = ? AND start < ? AND dirty = 0'),
      pruneChildren: db.prepare('DELETE FROM child_rollups WHERE kind = ? AND start < ?'),
    }
    this.checkpointedAt = d.clock.now() // the first periodic checkpoint comes checkpointMs after the start
    this.loadOpen()
    if (d.spool) {
      // readings committed after the last checkpoint are still in the spool: fold them in again
      d.spool.addConsumer(CURSOR)
      this.lastSpoolId = d.spool.cursor(CURSOR)
      let replayed = 0
      for (let rows = d.spool.read(this.lastSpoolId, 5000); rows.length > 0; rows = d.spool.read(this.lastSpoolId, 5000)) {
        this.fold(rows)
        replayed += rows.length
      }
      if (replayed) { this.checkpoint(); d.logger.info({ replayed }, 'windows caught up with readings committed before the restart') }
    }
  }

  /** Windows still open (not yet past their lateness) are kept in memory: loaded as the last checkpoint wrote them. */
  private loadOpen (): void {
    const now = this.d.clock.now()
    for (const w of this.d.windows) {
      // the current and the previous window, a DST change's hour either way
      for (const row of this.s.openWindows.all(w.name, now - 2 * w.ms - 2 * HOUR)) {
        const acc = windowFromJSON(row.state, w.ms)
        if (acc.end + this.d.latenessMs >= now) this.open.set(`${w.name}|${row.start}|${row.resident_id}`, acc)
      }
    }
  }

  /**
   * A batch failed part-way (a lookup threw in the middle of `fold`): some of its readings are in
   * the windows, some not, and the spool feeds the whole batch again. The windows go back to their
   * checkpoint and the spool feeds them from their cursor, as after a restart; keeping them would
   * count the readings folded before the throw twice (a wrong count and mean for the hospital).
   */
  failed (): void {
    this.open.clear()
    this.clearDirty()
    this.recent.clear()
    this.loadOpen()
    if (this.d.spool) this.lastSpoolId = this.d.spool.cursor(CURSOR)
  }

  /**
   * Cluster mode: this node now judges the residents `theirs` accepts (it took their partition
   * over). Their open windows as this node held them from an earlier time are dropped (another
   * node counted their readings since), and rebuilt from `past`, the readings of their partition
   * that reached the reading log before the point the partition resumes from; the readings
   * after it come through the feed. Windows that closed before `closedSince` stay as they
   * were: the node that held them then sent them. One that closed since (while the partition
   * had no owner, between a node's death and the takeover) is rebuilt and sent: twice, if the
   * dead node sent it just before it died, rather than never.
   *
   * In three steps, because a day's window of a busy partition is millions of readings to read
   * back: `beginTakeOver` before the partition resumes, `foldPast` for each batch read from the
   * log while the feed's readings are folded too (a window's figures are sums, extremes and
   * counts: the order they come in does not matter), and `endTakeOver`. In between no window
   * closes, so none is sent with part of its readings.
   */
  takeOver (theirs: (residentId: string) => boolean, past: readonly (Reading & { residentId: string })[], closedSince = this.d.clock.now()): void {
    this.beginTakeOver(theirs)
    try { this.foldPast(past, closedSince) } finally { this.endTakeOver(past.length) }
  }

  /** How many takeovers are rebuilding windows now: while any is, no window closes. */
  private rebuilding = 0

  /** Drops what this node held of `theirs`' open windows, and holds the closing of windows until endTakeOver (see takeOver). */
  beginTakeOver (theirs: (residentId: string) => boolean): void {
    this.drop(theirs)
    this.rebuilding++
  }

  /**
   * Drops the open windows of `theirs`, in memory and in the table: those of residents another
   * node counts now, or part of a rebuild that stopped (cluster/window-rebuild.ts).
   */
  drop (theirs: (residentId: string) => boolean): void {
    this.checkpoint()
    const now = this.d.clock.now()
    let dropped = 0
    for (const [key, acc] of this.open) if (theirs(acc.residentId)) { this.open.delete(key); dropped++ }
    for (const id of [...this.recent.keys()]) if (theirs(id)) this.recent.delete(id)
    atomically(this.d.db, () => {
      for (const w of this.d.windows) {
        for (const row of this.s.openWindows.all(w.name, now - 2 * w.ms - 2 * HOUR)) {
          if (!theirs(row.resident_id)) continue
          if (windowFromJSON(row.state, w.ms).end + this.d.latenessMs >= now) this.s.forgetWindow.run(w.name, row.start, row.resident_id)
        }
      }
    })
    if (dropped) this.d.logger.info({ dropped }, 'open windows of residents this node took over, or stopped rebuilding, dropped')
  }

  /** Folds readings read back from the log into the windows of a takeover under way (see takeOver). */
  foldPast (past: readonly (Reading & { residentId: string })[], closedSince: number): void {
    this.warming = closedSince
    try { this.fold(past) } finally { this.warming = undefined }
  }

  /** The rebuild of a takeover is over (done, or given up because the partition moved on): windows close again. */
  endTakeOver (readings: number): void {
    this.rebuilding = Math.max(0, this.rebuilding - 1)
    this.checkpoint()
    if (readings) this.d.logger.info({ readings }, 'open windows of residents this node took over rebuilt from the reading log')
  }

  /** A resident's zone, looked up when a reading leaves the resident's current window (not for every reading). */
  private zoneOf (residentId: string): string {
    const tz = this.d.timeZone?.(residentId)
    return tz && isTimeZone(tz) ? tz : 'UTC'
  }

  private windowFor (residentId: string, w: WindowKind, b: WindowBounds, timeZone: string, now: number, late: Map<string, ResidentWindow>): ResidentWindow | undefined {
    const key = `${w.name}|${b.start}|${residentId}`
    let acc = this.open.get(key) ?? late.get(key) ?? this.dirty.get(key)
    if (acc) return acc
    // rebuilding windows a node took over: a window that closed before the previous owner could have been gone was sent by it
    if (this.warming !== undefined && b.end + this.d.latenessMs < this.warming) return undefined
    if (b.end + this.d.retainMs < now) { this.stats.tooLate++; return undefined }
    const row = this.s.load.get(w.name, b.start, residentId)
    acc = row ? windowFromJSON(row.state, w.ms) : newWindow(residentId, w.name, b, timeZone)
    // old windows are loaded for one late reading and written back, not kept in memory
    if (acc.end + this.d.latenessMs >= now) this.open.set(key, acc)
    else { late.set(key, acc); this.stats.lateReadings++ }
    return acc
  }

  /**
   * Folds the readings of one spool commit into their windows. With a spool cursor the change
   * stays in memory until the next checkpoint (a crash replays the spool from the cursor);
   * without one it is written inside the commit's transaction.
   */
  prepare (rows: readonly (Reading & { residentId: string, id?: number })[]): void {
    const touched = this.fold(rows)
    if (!this.d.spool) { this.save(touched); this.clearDirty(); return }
    if (this.rounds.inProgress || this.d.clock.now() - this.checkpointedAt >= (this.d.checkpointMs ?? 5000)) {
      try {
        this.checkpointSlice()
      } catch (err) {
        // the windows stay dirty and in memory; the next round writes them (a crash replays the spool)
        this.rounds.abandon()
        this.d.logger.warn({ err: (err as Error).message }, 'could not checkpoint summary windows; they are rebuilt from the spool after a restart')
      }
    }
  }

  private clearDirty (): void {
    this.dirty.clear()
    this.rounds.clear()
  }

  private fold (rows: readonly (Reading & { residentId: string, id?: number })[]): Set<ResidentWindow> {
    const now = this.d.clock.now()
    const touched = new Set<ResidentWindow>()
    const late = new Map<string, ResidentWindow>()
    const windows = this.d.windows
    const track = !this.d.spool
    let last = this.lastSpoolId
    const owns = this.d.owns
    for (const r of rows) {
      if (r.id !== undefined && r.id > last) last = r.id
      // cluster mode: a reading of a resident this node no longer judges (left in its feed by a crash before the
      // partition's position committed): the resident's judge counts it, from the log
      if (owns && !owns(r.residentId)) continue
      const bp = r.sys !== undefined && r.dia !== undefined
      const cat = bp ? classify.evaluateOne(r, {})!.detail.category! : undefined
      let cache = this.recent.get(r.residentId)
      let zone: string | undefined
      for (let wi = 0; wi < windows.length; wi++) {
        const w = windows[wi]!
        let acc = cache?.[wi]
        // most readings fall in the window the resident's last one went to: no zone arithmetic for them.
        // A resident who changes zone keeps the current window; the next one follows the new zone
        if (acc === undefined || r.ts < acc.start || r.ts >= acc.end) {
          zone ??= this.zoneOf(r.residentId)
          acc = this.windowFor(r.residentId, w, windowAt(w, r.ts, zone), zone, now, late)
          if (!acc) continue
          if (this.open.get(`${w.name}|${acc.start}|${r.residentId}`) === acc) {
            if (!cache) this.recent.set(r.residentId, cache = [])
            cache[wi] = acc
          }
        }
        // replaying after a crash: this window was checkpointed with this reading in it already
        if (r.id !== undefined && acc.pos !== undefined && r.id <= acc.pos) continue
        if (r.hr !== undefined) { addValue(acc.hr, r.hr); if (r.hr >= 50 && r.hr <= 100) acc.hrIn++ }
        if (bp) {
          addValue(acc.sys, r.sys!); addValue(acc.dia, r.dia!)
          acc.cats[cat!] = (acc.cats[cat!] ?? 0) + 1
          if (r.sys! < 130 && r.dia! < 80) acc.bpIn++
        }
        if (track) touched.add(acc)
        if (!this.rounds.isDirty(acc)) {
          this.rounds.mark(acc, this.lastSpoolId)
          this.dirty.set(`${acc.kind}|${acc.start}|${acc.residentId}`, acc)
        }
      }
    }
    // moved once the batch is folded: readings of one spool record (several residents) share its
    // id, and a window made dirty by the record's second reading must not count it as covered
    this.lastSpoolId = last
    return touched
  }

  private save (windows: Iterable<ResidentWindow>): void {
    const groups = new Set<string>()
    for (const acc of windows) {
      this.s.save.run(acc.kind, acc.start, acc.residentId, windowToJSON(acc))
      // one group row per window period, not per resident (10,000 residents shared a handful)
      const g = `${acc.kind}|${acc.start}|${acc.end}`
      if (!groups.has(g)) { groups.add(g); this.s.group.run(acc.kind, acc.start, acc.end, acc.timeZone) }
    }
  }

  /**
   * Writes the next slice of the checkpoint in progress (starting one if none is), each window
   * with the position it holds everything up to, and moves the cursor to the oldest change
   * still unwritten, in one transaction.
   */
  private checkpointSlice (budget = this.d.checkpointSlice ?? 64): void {
    if (this.rounds.begin()) this.checkpointedAt = this.d.clock.now()
    const slice = new Set<ResidentWindow>()
    while (slice.size < budget) {
      const w = this.rounds.take()
      if (w === undefined) break
      slice.add(w)
    }
    if (slice.size === 0) return
    for (const w of slice) w.pos = this.lastSpoolId
    const cursor = this.rounds.cursor(this.lastSpoolId, slice)
    atomically(this.d.db, () => {
      this.save(slice)
      if (this.d.spool && cursor > 0) this.d.spool.commitCursor(CURSOR, cursor)
    })
    this.rounds.written(slice)
    for (const w of slice) this.dirty.delete(`${w.kind}|${w.start}|${w.residentId}`)
    if (this.d.spool && cursor > 0) this.d.spool.ack(CURSOR, cursor)
  }

  /** Writes every changed window and moves the spool cursor past the readings they hold, in one transaction (before windows close or are read, and at stop). */
  checkpoint (): void {
    this.checkpointedAt = this.d.clock.now()
    if (this.dirty.size === 0) return
    const windows = [...this.dirty.values()]
    for (const w of windows) w.pos = this.lastSpoolId
    atomically(this.d.db, () => {
      this.save(windows)
      // the cursor moves in the same transaction as the state: a crash loses both or neither
      if (this.d.spool && this.lastSpoolId > 0) this.d.spool.commitCursor(CURSOR, this.lastSpoolId)
    })
    this.clearDirty()
    // then the spool may drop what the store has too (a separate, idempotent step)
    if (this.d.spool && this.lastSpoolId > 0) this.d.spool.ack(CURSOR, this.lastSpoolId)
  }

  commit (): void {}

  /** A child region's roll-up arrived on the federation endpoint. Newer versions replace older ones. */
  receiveRollup (r: RegionRollup): boolean {
    // checked by the API already; again here, since what is stored must never break a window
    if (!checkRollup(r, this.d.windows).ok) return false
    atomically(this.d.db, () => {
      if (this.s.saveChild.run(r.region, r.window.kind, r.window.start, r.version, JSON.stringify(r), this.d.clock.now()).changes) this.s.group.run(r.window.kind, r.window.start, r.window.end, r.window.timeZone ?? 'UTC')
    })
    return true
  }

  /** The stored roll-ups of the child regions for one window; one that does not pass the roll-up check is skipped and logged, never merged. */
  private childRollups (kind: string, start: number): RegionRollup[] {
    const out: RegionRollup[] = []
    for (const row of this.s.children.all(kind, start)) {
      let body: unknown
      try { body = JSON.parse(row.body) } catch { body = undefined }
      const r = checkRollup(body, this.d.windows)
      if (r.ok) out.push(r.rollup as RegionRollup)
      else this.d.logger.warn({ kind, start: new Date(start).toISOString(), problem: r.ok ? undefined : r.message }, 'stored child roll-up skipped: it does not pass the roll-up check')
    }
    return out
  }

  /** The residents' stored windows of one window period; a row that cannot be read is skipped and logged. */
  private residentRows (w: WindowKind, start: number): { w: ResidentWindow, dirty: boolean }[] {
    const kind = w.name
    const out: { w: ResidentWindow, dirty: boolean }[] = []
    for (const row of this.s.windowsOf.all(kind, start)) {
      try { out.push({ w: windowFromJSON(row.state, w.ms), dirty: row.dirty === 1 }) } catch (err) {
        this.d.logger.warn({ err, kind, start: new Date(start).toISOString() }, 'stored resident window skipped: it cannot be read')
      }
    }
    return out
  }

  summaryOf (acc: ResidentWindow, w: WindowKind, version: number): ResidentSummary {
    return residentSummary(acc, w, version, this.d.alertsIn(acc.residentId, acc.start, acc.end))
  }

  /** Closes the windows that are past their lateness, and re-emits corrected ones. */
  tick (): number {
    const now = this.d.clock.now()
    // window state is written every checkpointMs (each write of 10,000 residents' windows held the
    // event loop for a second or more when it ran every tick), and before any window closes
    // while a takeover rebuilds windows from the log none closes: they close once it is done, with every reading
    const dues = this.d.windows.map((w) => this.rebuilding > 0 ? [] : this.s.due.all(w.name, w.ms, now - this.d.latenessMs))
    // a window that closes is read from the table: everything must be written first. Otherwise a
    // slice, as after a consumer transaction (here too, for a node that receives nothing)
    if (dues.some((d) => d.length > 0)) this.checkpoint()
    else if (this.d.spool && (this.rounds.inProgress || now - this.checkpointedAt >= (this.d.checkpointMs ?? 5000))) this.checkpointSlice()
    else if (!this.d.spool && now - this.checkpointedAt >= (this.d.checkpointMs ?? 5000)) this.checkpoint()
    let emitted = 0
    for (const [wi, w] of this.d.windows.entries()) {
      const due = dues[wi]!
      for (const g of due) {
        try {
          atomically(this.d.db, () => { this.emit(w, g, g.version + 1); emitted++ })
        } catch (err) {
          this.d.logger.error({ err, window: w.name, start: new Date(g.start).toISOString() }, 'closing a window failed; will retry')
        }
      }
      // drop what can no longer change (a day window ends at most an hour after start + size)
      const horizon = now - 2 * w.ms - this.d.retainMs
      this.recent.clear() // it may point at windows dropped here
      for (const [key, acc] of this.open) {
        if (acc.kind === w.name && acc.end + this.d.latenessMs < now) this.open.delete(key)
      }
      this.s.pruneWindows.run(w.name, horizon)
      this.s.pruneGroups.run(w.name, horizon)
      this.s.pruneChildren.run(w.name, horizon)
    }
    return emitted
  }

  /** A window period's end and zone; periods of before local windows are UTC and end at start + size. */
  private period (w: WindowKind, g: Pick<GroupRow, 'start' | 'end_ts' | 'time_zone'> | undefined, start: number): { end: number, timeZone: string } {
    return { end: g?.end_ts ?? start + w.ms, timeZone: g?.time_zone ?? 'UTC' }
  }

  private emit (w: WindowKind, g: GroupRow, version: number): void {
    const start = g.start
    const { end, timeZone } = this.period(w, g, start)
    const owns = this.d.owns
    // cluster mode: the windows of residents another node judges now are that node's to send
    const rows = owns ? this.residentRows(w, start).filter((r) => owns(r.w.residentId)) : this.residentRows(w, start)
    const all = rows.map((r) => r.w)
    const changed = rows.filter((r) => r.dirty).map((r) => this.summaryOf(r.w, w, version))
    const rollup = regionRollup(this.d.region, this.d.rollupK ?? 1, w, { start, end, timeZone }, version, all, this.childRollups(w.name, start))
    const closed: ClosedWindow = { kind: w.name, start, end, timeZone, version, changed, all, rollup, facts: (id) => this.d.resident(id) }
    for (const sink of this.d.sinks) sink.emit(closed)
    this.s.emitted.run(version, w.name, start)
    this.s.clean.run(w.name, start)
    this.stats.windowsClosed++
    if (version > 1) this.stats.corrections++
  }

  /** One resident's summaries in [from, to), oldest first (hospitals and residents read them). */
  residentSummaries (residentId: string, kind: string, from: number, to: number, limit = 1000): ResidentSummary[] {
    const w = this.d.windows.find((x) => x.name === kind)
    if (!w) return []
    this.checkpoint() // what is read comes from the table: the readings of the last seconds too
    return this.s.residentWindows.all(residentId, kind, from, to, limit).map((r) => this.summaryOf(windowFromJSON(r.state, w.ms), w, 0))
  }

  /** Closed windows in [from, to), oldest first, with every resident's data, for research pulls. */
  closedWindows (kind: string, from: number, to: number, limit: number): ClosedWindow[] {
    this.checkpoint()
    const w = this.d.windows.find((x) => x.name === kind)
    if (!w) return []
    return this.s.groupStarts.all(kind, from, to, limit).map((g) => ({
      kind, start: g.start, ...this.period(w, g, g.start), version: g.version, changed: [],
      all: this.residentRows(w, g.start).map((r) => r.w),
      rollup: undefined as never,
      facts: (id: string) => this.d.resident(id),
    }))
  }

  /**
   * The region's aggregates per window (own residents and child regions merged), for the API.
   * `minOwn`: own residents fewer than this in a window are left out (for readers outside the node).
   */
  regionAggregates (kind: string, from: number, to: number, minOwn = 1): RegionAggregate[] {
    const w = this.d.windows.find((x) => x.name === kind)
    if (!w) return []
    this.checkpoint()
    return this.s.regionStarts.all(kind, from, to, kind, from, to).map(({ start }) => {
      const own = this.residentRows(w, start).map((r) => r.w)
      const children = this.childRollups(kind, start)
      const { residents, hr, sys, dia, cats } = mergeRegion(own.length >= minOwn ? own : [], children)
      return {
        window: { kind, start, end: this.period(w, this.s.groupRow.get(kind, start), start).end }, residents, hr: summarize(hr), sys: summarize(sys), dia: summarize(dia), bpCategories: cats,
        children: children.map((c) => ({ region: c.region, residents: c.residents, readings: Math.max(c.hr.n, c.sys.n) })),
      }
    })
  }

  /** This node's own residents with readings in one window, and the alerts opened for them in it (for public statistics). */
  ownAlerts (kind: string, start: number): { residents: number, alerts: number } {
    const w = this.d.windows.find((x) => x.name === kind)
    if (!w) return { residents: 0, alerts: 0 }
    const rows = this.residentRows(w, start)
    let alerts = 0
    for (const r of rows) alerts += this.d.alertsIn(r.w.residentId, start, r.w.end)
    return { residents: rows.length, alerts }
  }

  start (tickMs: number): void {
    const loop = (): void => { this.tick(); this.timer = setTimeout(loop, tickMs) }
    this.timer = setTimeout(loop, tickMs)
  }

  stop (): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.checkpoint()
  }
}
