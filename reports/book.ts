import { randomBytes } from 'node:crypto'
import { migrate, VitalmeshError, type Activity, type Clock, type DB, type Logger, type Migration } from '../core/index.ts'
import type { ValidationLookup, ValidationStatus } from './devices.ts'
import type { FinishedReport } from './fhir.ts'
import { computeHomeBp, homeBpEnd, type HomeBpResult } from './home-bp.ts'
import { isTimeZone } from './localtime.ts'
import { computeProfile, profileEnd, type ProfileResult } from './profile.ts'
import { BUILTIN_PROTOCOLS, GuidelineSchema, ReportProtocolSchema, type Guideline, type ReportProtocol } from './protocol.ts'
import type { ReportReading } from './reading.ts'

/** The reports' tables (component 'reports'). Never edit a shipped step: add one. */
export const REPORT_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'report runs, the readings each run collected, and every issued version of a report',
    up: `
      CREATE TABLE IF NOT EXISTS report_runs (
        id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, protocol TEXT NOT NULL, time_zone TEXT NOT NULL, guideline TEXT NOT NULL,
        start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL, state TEXT NOT NULL, started_by TEXT NOT NULL, created_at INTEGER NOT NULL,
        version INTEGER NOT NULL DEFAULT 0, dirty INTEGER NOT NULL DEFAULT 0, finished_at INTEGER);
      CREATE INDEX IF NOT EXISTS report_runs_resident ON report_runs(resident_id, start_ts);
      CREATE TABLE IF NOT EXISTS report_readings (
        run_id TEXT NOT NULL, device_id TEXT NOT NULL, ts INTEGER NOT NULL, sys REAL, dia REAL, hr REAL, activity TEXT,
        device_model TEXT, validation TEXT NOT NULL, PRIMARY KEY (run_id, device_id, ts)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS report_results (
        run_id TEXT NOT NULL, version INTEGER NOT NULL, result TEXT NOT NULL, issued_at INTEGER NOT NULL, PRIMARY KEY (run_id, version));`,
  },
  {
    version: 2,
    why: 'the validated-device register (issue 15): operators record each device model\'s validation status, and the protocol a validated cuff passed, instead of a catalogue compiled into the code',
    up: `
      CREATE TABLE IF NOT EXISTS device_models (
        model TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('validated', 'unvalidated', 'cuffless')),
        protocol TEXT CHECK (status <> 'validated' OR protocol IS NOT NULL),
        source TEXT NOT NULL, note TEXT, registered_by TEXT NOT NULL, registered_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;`,
  },
]

/** What the feed needs of a reading (a spool row has these and more). */
export interface FeedRow { residentId: string, deviceId: string, ts: number, sys?: number, dia?: number, hr?: number, activity?: Activity }

export interface ReportBookDeps {
  db: DB
  clock: Clock
  logger: Logger
  /** the model a device is registered as */
  deviceModel(deviceId: string): string | null | undefined
  /** the validated-device register (reports/register.ts), or a fixed catalogue in tests */
  catalogue: ValidationLookup
  protocols?: readonly ReportProtocol[]
  /**
   * Cluster mode: does this node judge the resident now (it owns the resident's partition)?
   * Only the judge finishes and amends a resident's runs, so a node that lost the resident
   * sends no report of its own. Unset: every resident (a single node).
   */
  owns?(residentId: string): boolean
  options?: {
    /** a run is finished this long after its end, so buffered readings of devices that were offline still count */
    finishGraceMs?: number
    /** a reading arriving this long after a run's end still amends the report */
    amendWindowMs?: number
  }
}

export type RunState = 'active' | 'finished' | 'cancelled'

export interface RunView {
  id: string
  residentId: string
  protocol: { id: string, version: string, kind: ReportProtocol['kind'] }
  timeZone: string
  guideline: Guideline
  start: number
  end: number
  state: RunState
  startedBy: string
  createdAt: number
  /** report versions sent so far (0 while running) */
  version: number
  finishedAt: number | null
}

/** A finished report reduced to what research aggregates count. */
export interface ReportOutcome {
  residentId: string
  runId: string
  kind: 'home-bp' | 'abpm-24h'
  guideline: string
  start: number
  end: number
  /** home-BP: `hypertension` or `below-threshold` (the guideline's home threshold); 24-hour profile: the dipping class; either: `insufficient-data` */
  category: string
}

export interface StartRun { residentId: string, protocolId: string, timeZone: string, guideline: string, startTs?: number, startedBy: string }

/** A finished report's outcome for research: the home-BP classification or the dipping class, or `insufficient-data`. */
export function outcomeOf (r: { id: string, resident_id: string, guideline: string, start_ts: number, end_ts: number }, resultJson: string): ReportOutcome {
  const result = JSON.parse(resultJson) as HomeBpResult | ProfileResult
  const category = result.kind === 'home-bp'
    ? (result.outcome.status === 'complete' ? result.outcome.classification : 'insufficient-data')
    : (result.outcome.status === 'complete' && result.dip ? result.dip.classification : 'insufficient-data')
  return { residentId: r.resident_id, runId: r.id, kind: result.kind, guideline: r.guideline, start: r.start_ts, end: r.end_ts, category }
}

/**
 * A run as the cluster's copy holds it (cluster mode): its row, the readings it collected and the
 * reports issued for it, so the node that takes the resident over goes on with it.
 */
export interface RunCopy { run: RunRow, readings: Record<string, unknown>[], results: { version: number, result: string, issued_at: number }[] }

export interface RunRow {
  id: string, resident_id: string, protocol: string, time_zone: string, guideline: string, start_ts: number, end_ts: number,
  state: RunState, started_by: string, created_at: number, version: number, dirty: number, finished_at: number | null
}
interface LiveRun { id: string, start: number, end: number, state: RunState }

/**
 * Clinical reports: protocol runs (a home-BP week, a 24-hour profile) that readings feed,
 * finished and amended on the wall clock. Owns its tables in the node's database; `consume`
 * only writes (the caller's transaction holds it with the readings), `tick` returns the
 * reports to send, to be enqueued in the same transaction as its writes.
 */
export class ReportBook {
  private readonly s
  private readonly protocols = new Map<string, ReportProtocol>()
  /** runs that readings may still change, per resident: a reading of anyone else costs one lookup */
  private readonly live = new Map<string, LiveRun[]>()
  private readonly dirty = new Set<string>()
  private readonly graceMs: number
  private readonly amendMs: number
  private timer: NodeJS.Timeout | undefined
  readonly stats = { consumed: 0, finished: 0, amended: 0 }

  constructor (private readonly d: ReportBookDeps) {
    migrate(d.db, 'reports', REPORT_MIGRATIONS)
    for (const p of d.protocols ?? BUILTIN_PROTOCOLS) this.protocols.set(p.id, ReportProtocolSchema.parse(p))
    this.graceMs = d.options?.finishGraceMs ?? 3600_000
    this.amendMs = d.options?.amendWindowMs ?? 7 * 86400_000
    const db = d.db
    this.s = {
      insertRun: db.prepare('INSERT INTO report_runs (id, resident_id, protocol, time_zone, guideline, start_ts, end_ts, state, started_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      run: db.prepare<[string], RunRow>('SELECT * FROM report_runs WHERE id = ?'),
      runs: db.prepare<[string], RunRow>('SELECT * FROM report_runs WHERE resident_id = ? ORDER BY start_ts DESC, id'),
      live: db.prepare<[number], RunRow>("SELECT * FROM report_runs WHERE state = 'active' OR (state = 'finished' AND end_ts > ?)"),
      insertReading: db.prepare('INSERT OR IGNORE INTO report_readings (run_id, device_id, ts, sys, dia, hr, activity, device_model, validation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      readings: db.prepare<[string], { device_id: string, ts: number, sys: number | null, dia: number | null, hr: number | null, activity: string | null, device_model: string | null, validation: ValidationStatus }>('SELECT device_id, ts, sys, dia, hr, activity, device_model, validation FROM report_readings WHERE run_id = ? ORDER BY ts, device_id'),
      markDirty: db.prepare('UPDATE report_runs SET dirty = 1 WHERE id = ?'),
      finish: db.prepare("UPDATE report_runs SET state = 'finished', version = ?, dirty = 0, finished_at = coalesce(finished_at, ?) WHERE id = ?"),
      clean: db.prepare('UPDATE report_runs SET dirty = 0 WHERE id = ?'),
      cancel: db.prepare("UPDATE report_runs SET state = 'cancelled' WHERE id = ? AND state = 'active'"),
      insertResult: db.prepare('INSERT INTO report_results (run_id, version, result, issued_at) VALUES (?, ?, ?, ?)'),
      latestResult: db.prepare<[string], { version: number, result: string, issued_at: number }>('SELECT version, result, issued_at FROM report_results WHERE run_id = ? ORDER BY version DESC LIMIT 1'),
      allReadings: db.prepare<[string], Record<string, unknown>>('SELECT run_id, device_id, ts, sys, dia, hr, activity, device_model, validation FROM report_readings WHERE run_id = ?'),
      results: db.prepare<[string], { version: number, result: string, issued_at: number }>('SELECT version, result, issued_at FROM report_results WHERE run_id = ? ORDER BY version'),
      putRun: db.prepare(`INSERT INTO report_runs (id, resident_id, protocol, time_zone, guideline, start_ts, end_ts, state, started_by, created_at, version, dirty, finished_at)
        VALUES (@id, @resident_id, @protocol, @time_zone, @guideline, @start_ts, @end_ts, @state, @started_by, @created_at, @version, @dirty, @finished_at)
        ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version, dirty = excluded.dirty, finished_at = excluded.finished_at`),
      putReading: db.prepare('INSERT OR IGNORE INTO report_readings (run_id, device_id, ts, sys, dia, hr, activity, device_model, validation) VALUES (@run_id, @device_id, @ts, @sys, @dia, @hr, @activity, @device_model, @validation)'),
      putResult: db.prepare('INSERT OR IGNORE INTO report_results (run_id, version, result, issued_at) VALUES (?, ?, ?, ?)'),
      finishedBetween: db.prepare<[number, number], { id: string, resident_id: string, guideline: string, start_ts: number, end_ts: number, result: string }>(
        "SELECT r.id, r.resident_id, r.guideline, r.start_ts, r.end_ts, x.result FROM report_runs r JOIN report_results x ON x.run_id = r.id AND x.version = r.version WHERE r.state = 'finished' AND r.end_ts >= ? AND r.end_ts < ? ORDER BY r.end_ts, r.id"),
    }
    for (const r of this.s.live.all(d.clock.now() - this.amendMs)) {
      this.index(r.resident_id, { id: r.id, start: r.start_ts, end: r.end_ts, state: r.state })
      if (r.dirty) this.dirty.add(r.id)
    }
  }

  protocolList (): ReportProtocol[] { return [...this.protocols.values()] }

  /** Starts a protocol for a resident (now, or at `startTs`), in the resident's time zone. */
  start (s: StartRun): RunView {
    const p = this.protocols.get(s.protocolId)
    if (!p) throw new VitalmeshError('VM_BAD_REQUEST', `no protocol "${s.protocolId}": use one of ${[...this.protocols.keys()].join(', ')}`)
    if (!isTimeZone(s.timeZone)) throw new VitalmeshError('VM_BAD_REQUEST', `"${s.timeZone}" is not an IANA time zone (like Asia/Shanghai or Europe/Berlin)`)
    const g = GuidelineSchema.safeParse(s.guideline)
    if (!g.success) throw new VitalmeshError('VM_BAD_REQUEST', `guideline must be one of ${GuidelineSchema.options.join(', ')}`)
    const now = this.d.clock.now()
    const start = s.startTs ?? now
    const end = p.kind === 'home-bp' ? homeBpEnd(p, start, s.timeZone) : profileEnd(p, start)
    if (end + this.graceMs <= now) throw new VitalmeshError('VM_BAD_REQUEST', 'that protocol would have ended already: start it now or later')
    const id = `rpt-${randomBytes(8).toString('hex')}`
    this.s.insertRun.run(id, s.residentId, JSON.stringify(p), s.timeZone, g.data, start, end, 'active', s.startedBy, now)
    this.index(s.residentId, { id, start, end, state: 'active' })
    return this.view(this.s.run.get(id)!)
  }

  cancel (runId: string): boolean {
    const r = this.s.run.get(runId)
    if (!r || !this.s.cancel.run(runId).changes) return false
    this.unindex(r.resident_id, runId)
    return true
  }

  /**
   * Readings of the residents' runs (in the caller's transaction). Rows outside every run
   * cost a map lookup; a reading for a finished run marks it for amendment.
   */
  consume (rows: readonly FeedRow[]): void {
    if (this.live.size === 0) return
    for (const row of rows) {
      const runs = this.live.get(row.residentId)
      if (!runs || (row.sys === undefined && row.dia === undefined)) continue
      for (const run of runs) {
        if (row.ts < run.start || row.ts >= run.end) continue
        const model = this.d.deviceModel(row.deviceId) ?? null
        const added = this.s.insertReading.run(run.id, row.deviceId, row.ts, row.sys ?? null, row.dia ?? null, row.hr ?? null, row.activity ?? null, model, this.d.catalogue.status(model)).changes
        this.stats.consumed += added
        if (added && run.state === 'finished') { this.s.markDirty.run(run.id); this.dirty.add(run.id) }
      }
    }
  }

  /** How long after its end a finished run may still be amended by a late reading. */
  get amendWindowMs (): number { return this.amendMs }

  /** A run as it is here, for the cluster's copy (cluster/report-mirror.ts). */
  snapshot (runId: string): RunCopy | undefined {
    const run = this.s.run.get(runId)
    return run && { run, readings: this.s.allReadings.all(runId), results: this.s.results.all(runId) }
  }

  /**
   * Cluster mode: this node now judges the residents whose runs these are (it took their
   * partition over). Each run, its readings and its reports are written here as the node that
   * judged them before left them, and the runs still open to readings are followed here.
   */
  adopt (copies: readonly RunCopy[]): void {
    this.d.db.transaction(() => {
      for (const c of copies) {
        this.s.putRun.run(c.run)
        for (const r of c.readings) this.s.putReading.run(r)
        for (const x of c.results) this.s.putResult.run(c.run.id, x.version, x.result, x.issued_at)
      }
    })()
    const since = this.d.clock.now() - this.amendMs
    for (const c of copies) {
      const r = this.s.run.get(c.run.id)!
      this.unindex(r.resident_id, r.id)
      if (r.state === 'active' || (r.state === 'finished' && r.end_ts > since)) {
        this.index(r.resident_id, { id: r.id, start: r.start_ts, end: r.end_ts, state: r.state })
        if (r.dirty) this.dirty.add(r.id)
      }
    }
    if (copies.length) this.d.logger.info({ runs: copies.length }, 'took over the report runs of residents whose partition this node now owns')
  }

  /** Finishes the runs that are due and amends those late readings changed: the reports to send. */
  tick (now: number = this.d.clock.now()): FinishedReport[] {
    const out: FinishedReport[] = []
    for (const [residentId, runs] of this.live) {
      // cluster mode: the node judging the resident finishes its runs
      if (this.d.owns && !this.d.owns(residentId)) continue
      for (const run of [...runs]) {
        if (run.state === 'active' && run.end + this.graceMs <= now) {
          out.push(this.report(run.id, now))
          run.state = 'finished'
          this.stats.finished++
        } else if (run.state === 'finished' && this.dirty.has(run.id)) {
          const r = this.report(run.id, now)
          if (r.version > 1 && r.issuedAt === now) { out.push(r); this.stats.amended++ }
        }
        this.dirty.delete(run.id)
        if (run.state === 'finished' && run.end + this.amendMs <= now) this.unindex(residentId, run.id)
      }
    }
    return out
  }

  /** A resident's runs, newest first, each with its progress (running) or its latest report. */
  list (residentId: string): (RunView & { result: HomeBpResult | ProfileResult })[] {
    return this.s.runs.all(residentId).map((r) => ({ ...this.view(r), result: this.current(r) }))
  }

  get (runId: string): (RunView & { result: HomeBpResult | ProfileResult }) | undefined {
    const r = this.s.run.get(runId)
    return r && { ...this.view(r), result: this.current(r) }
  }

  /**
   * The outcome of every finished report (its latest version) that ended in [from, to), for
   * research aggregates (forwarder/research.ts researchReportPayload): the home-BP
   * classification or the dipping class, or `insufficient-data`.
   */
  finishedOutcomes (from: number, to: number): ReportOutcome[] {
    return this.s.finishedBetween.all(from, to).map((r) => outcomeOf(r, r.result))
  }

  /** Ticks on a timer; `deliver` gets the reports (the caller enqueues them in one transaction with the tick). */
  every (ms: number, deliver: (tick: () => FinishedReport[]) => void): void {
    this.timer ??= setInterval(() => {
      try { deliver(() => this.tick()) } catch (err) { this.d.logger.error({ err }, 'could not finish or amend clinical reports; trying again next tick') }
    }, ms)
    this.timer.unref()
  }

  stop (): void { if (this.timer) clearInterval(this.timer); this.timer = undefined }

  private current (r: RunRow): HomeBpResult | ProfileResult {
    const latest = r.state === 'finished' ? this.s.latestResult.get(r.id) : undefined
    return latest ? JSON.parse(latest.result) as HomeBpResult | ProfileResult : this.compute(r, this.d.clock.now())
  }

  private compute (r: RunRow, now: number): HomeBpResult | ProfileResult {
    const p = JSON.parse(r.protocol) as ReportProtocol
    const readings: ReportReading[] = this.s.readings.all(r.id).map((x) => {
      // the register as it is now, not as it was when the reading came: a model an operator registers
      // (or finds unvalidated) during a run counts (or stops counting) for the report it is part of
      const o: ReportReading = { ts: x.ts, deviceId: x.device_id, deviceModel: x.device_model, validation: this.d.catalogue.status(x.device_model) }
      if (x.sys !== null) o.sys = x.sys
      if (x.dia !== null) o.dia = x.dia
      if (x.hr !== null) o.hr = x.hr
      if (x.activity !== null) o.activity = x.activity as Activity
      return o
    })
    const run = { startTs: r.start_ts, timeZone: r.time_zone, guideline: r.guideline as Guideline, now }
    return p.kind === 'home-bp' ? computeHomeBp(p, run, readings) : computeProfile(p, run, readings)
  }

  /** The run's report as of now: a new version only when the result changed. */
  private report (runId: string, now: number): FinishedReport {
    const r = this.s.run.get(runId)!
    const result = this.compute(r, now)
    const json = JSON.stringify(result)
    const latest = this.s.latestResult.get(runId)
    const protocol = JSON.parse(r.protocol) as ReportProtocol
    if (latest && latest.result === json) {
      this.s.clean.run(runId)
      return { runId, residentId: r.resident_id, version: latest.version, issuedAt: latest.issued_at, protocol, result }
    }
    const version = (latest?.version ?? 0) + 1
    this.s.insertResult.run(runId, version, json, now)
    this.s.finish.run(version, now, runId)
    this.d.logger.info({ runId, version, protocol: protocol.id, outcome: result.outcome.status }, version > 1 ? 'clinical report amended' : 'clinical report finished')
    return { runId, residentId: r.resident_id, version, issuedAt: now, protocol, result, ...(latest ? { previous: JSON.parse(latest.result) as HomeBpResult | ProfileResult } : {}) }
  }

  private view (r: RunRow): RunView {
    const p = JSON.parse(r.protocol) as ReportProtocol
    return {
      id: r.id, residentId: r.resident_id, protocol: { id: p.id, version: p.version, kind: p.kind }, timeZone: r.time_zone,
      guideline: r.guideline as Guideline, start: r.start_ts, end: r.end_ts, state: r.state, startedBy: r.started_by,
      createdAt: r.created_at, version: r.version, finishedAt: r.finished_at,
    }
  }

  private index (residentId: string, run: LiveRun): void {
    const l = this.live.get(residentId) ?? []
    l.push(run)
    this.live.set(residentId, l)
  }

  private unindex (residentId: string, runId: string): void {
    const l = (this.live.get(residentId) ?? []).filter((x) => x.id !== runId)
    if (l.length) this.live.set(residentId, l); else this.live.delete(residentId)
    this.dirty.delete(runId)
  }
}
