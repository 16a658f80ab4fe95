import { randomUUID } from 'node:crypto'
import { CheckpointRounds, VitalmeshError, topics, type DB, type Logger, type Clock, type ClockTimer } from '../core/index.ts'
import { followerWantsCopy } from '../registry/followers.ts'
import { RuleIndex, type CompiledRule, type Detail, type Override, type ResidentProfile, type RuleState, type Verdict } from './engine.ts'
import type { Concern, RuleSetDoc, Severity } from './ruleset.ts'
import { alertMessage, describe, endedMessage, followerMessage, languageOf, localTime, resolvedMessage, textIn, LANGUAGES, type Language } from './messages.ts'
import { RANK, end, expire, onVerdict, type Effect, type Policy, type RuleLife } from './lifecycle.ts'
import { AlertStore, type Alert, type AlertEvent, type AlertHandover, type AlertNote, type FollowerNotice, type Preferences } from './store.ts'
import { Timeline, type EvaluatedReading } from './timeline.ts'
import { inQuietHours, planNotifications, type Candidate } from './notify.ts'

export type { Alert, AlertEvent, AlertHandover, AlertNote, AlertState, FollowerNotice, Preferences } from './store.ts'
export { ALERT_PREFERENCES_REPLICA } from './store.ts'
export type { EvaluatedReading } from './timeline.ts'

/** The duty desk's order: the furthest along the escalation chain first (hospital, desk, followers), then by severity, then the oldest. */
export function byAttention (x: Alert, y: Alert): number {
  const step = (a: Alert): number => (a.escalatedAt !== null ? 3 : a.deskAt !== null ? 2 : a.followersAt !== null ? 1 : 0)
  return step(y) - step(x) || RANK[y.severity] - RANK[x.severity] || x.openedAt - y.openedAt
}

/** The alert as it is at this moment: what an announcement made now says, whatever happens to it later in the same readings. */
function snapshot (a: Alert): Alert { return { ...a, messages: { ...a.messages } } }

export interface ResidentInfo extends ResidentProfile { language: string, hospitalId: string | null }

export interface HospitalEndpoint { url: string, token: string | null }

/** What alerting needs of the spool to rebuild timelines after a restart (see AlertBook.attachTo). */
export interface AlertSpool {
  cursor(name: string): number
  read(afterId: number, limit: number): (EvaluatedReading & { id: number })[]
  addConsumer(name: string): void
  ack(name: string, id: number): void
}

export interface AlertingDeps {
  db: DB
  clock: Clock
  logger: Logger
  activeRuleSets(): RuleSetDoc[]
  resident(id: string): ResidentInfo | undefined
  overrides(residentId: string): Map<string, Override>
  hospitalEndpoint(hospitalId: string): HospitalEndpoint | undefined
  /** enqueue an outgoing webhook inside the current transaction */
  enqueueWebhook(e: { sink: string, url: string, headers: Record<string, string>, body: string, idempotencyKey: string }): void
  /**
   * A live critical alert of a resident with a hospital: it became critical (opened or worse),
   * was escalated, or ended. Called inside the transaction that saved it (the hospital's
   * `alerts` FHIR feed enqueues there).
   */
  criticalAlert?(a: Alert, change: 'critical' | 'escalated' | 'ended', hospitalId: string): void
  /** the resident's active followers (registry/followers.ts) and the name they know the resident by */
  followers?(residentId: string): { residentName: string, followers: readonly FollowerTarget[] }
  /** is this follower still one (a removed follower is sent nothing more, not even what a crash left unsent) */
  followerActive?(followerId: string): boolean
  /**
   * Is this node the one that judges the resident now (cluster mode: it owns the resident's
   * partition)? Time passing (no data, hold-down expiry, re-notification, the escalation chain)
   * acts only on the residents it owns: a node that lost a partition never escalates what it
   * no longer follows. Unset: every resident (a single node).
   */
  owns?(residentId: string): boolean
  options: {
    escalateAfterS: number
    /** an unacknowledged critical (or lost-contact) alert reaches the duty desk after this long (default 300 s), before the hospital */
    deskAfterS?: number
    /** an unacknowledged critical (or lost-contact) alert reaches the resident's followers after this long (default 120 s), before the duty desk */
    followersAfterS?: number
    /** region -> its own escalation timeouts (the chain's default per region); unset steps take the node's */
    chainByRegion?: Record<string, Partial<EscalationChain>>
    renotifyS: Record<Severity, number>
    tickMs: number
    liveHorizonS?: number
    recordHorizonS?: number
    flapCount?: number
    flapWindowS?: number
    maxSnoozeS?: number
    timeZone?: string
    /** region (or '*') -> rule set id whose wording the resident reads when rule sets agree */
    primaryRuleSets?: Record<string, string>
    /** how often timelines are checkpointed (default 5000 ms; 0: with every transaction) */
    checkpointMs?: number
    /** bytes of timelines and rule state written per consumer transaction while a checkpoint runs (default 64 KiB; at least one resident each) */
    checkpointSlice?: number
  }
}

/** A follower as alerting needs it: where and in which language it is told, and of what. */
export interface FollowerTarget { id: string, language: string, channels: readonly string[], notify: 'all' | 'warning' | 'critical' | 'escalations' }

/**
 * The escalation chain of an unacknowledged critical (or lost-contact) alert: the resident at
 * once, then its followers, the coordination centre's duty desk, the hospital, each step
 * this long after the alert opened (or a historic alert was confirmed). An acknowledgement
 * at any step stops it.
 */
export interface EscalationChain { followersAfterS: number, deskAfterS: number, hospitalAfterS: number }

/** Delivers to residents; `delivered` is called once the broker took the message. */
export interface AlertNotifier {
  alert(a: Alert, delivered: () => void): void
  status(residentId: string, body: unknown): void
  /** every change of every alert, for clinicians' views (all rule sets' verdicts) */
  changed?(a: Alert): void
  /** the warnings held during quiet hours, sent when they end */
  digest?(residentId: string, body: { residentId: string, alerts: Alert[], message: string, language: Language }): void
  /** a notice to a follower (its MQTT topic); `delivered` once the broker took it */
  follower?(n: FollowerNotice, delivered: () => void): void
}

const TIMELINE_CURSOR = 'alerting-timeline'
const MAX_TIMELINE = 1024
const MAX_SNAPS = 128
/**
 * bytes of timelines and rule state one checkpoint slice writes (about 1 ms): counted in bytes,
 * not readings, because a resident's rule state (lifecycle snapshots) can outweigh its readings
 */
const CHECKPOINT_SLICE = 64 * 1024
const LOW_CONFIDENCE = 0.5 // project heuristic: below it the reading's message says the signal was poor

/** A rule's lifecycle right after a reading that changed it structurally (opened, worsened, resolved...): where a late reading's replay starts. */
interface Snap { ts: number, life: RuleLife }
/** `pos`: the spool record up to which the saved timeline held every reading (a rebuild places only later ones) */
interface ResidentState { tl: Timeline, st: Map<string, RuleState>, life: Map<string, RuleLife>, snaps: Map<string, Snap[]>, pos: number }
const STRUCTURAL = new Set(['open', 'worse', 'confirmed', 'resolve', 'flapping'])
interface Tx { notices: FollowerNotice[], candidates: Candidate[], saved: Map<string, Alert>, lives: Set<string>, residents: Set<string>, seen: Map<string, number>, notify: Alert[], digests: Map<string, { alertId: string, at: number, messages: Record<Language, string> }[]> }

/**
 * The driver of alerting: it places each reading on its resident's timeline, asks the
 * rules for their verdict there, feeds the verdicts to the pure lifecycle (lifecycle.ts),
 * writes what changed (store.ts) and plans who is told (notify.ts). It is a cursor consumer
 * of the spool: its state commits with its cursor, after the PUBACK, so nothing here can
 * stop ingest.
 */
export class AlertBook {
  private open = new Map<string, Map<string, Alert>>()
  private residents = new Map<string, ResidentState>()
  private lastSeen = new Map<string, number>()
  private profiles = new Map<string, ResidentInfo | null>()
  private prefs = new Map<string, Preferences>()
  private lastNotified = new Map<string, number>()
  private escalateFrom = new Map<string, number | null>()
  /** alerts opened quietly inside a cool-down: announced at this time (reading time of the cool-down's end) if still open */
  private announceAt = new Map<string, number>()
  private index: RuleIndex
  private readonly store: AlertStore
  private deliveredPending: string[] = []
  private deliveredTimer: ClockTimer | undefined
  private tickTimer: ClockTimer | undefined
  private notifier: AlertNotifier = { alert: () => {}, status: () => {} }
  private tx: Tx | undefined
  /**
   * Residents whose timeline changed since it was last written, and the checkpoint round in
   * progress (core/checkpoint-rounds.ts): a checkpoint that ran until no timeline was dirty never
   * ended under steady load, and rewrote every timeline in every transaction.
   */
  private readonly dirty = new CheckpointRounds<string>()
  private lastRowId = 0
  private checkpointedAt = 0
  private spool: AlertSpool | undefined
  private retainMs = 0
  /** how far back in reading time the active rules look (sustained windows, rates, hold-downs) */
  private lookback = 0
  readonly stats = { elsewhere: 0, followers: 0, desk: 0, opened: 0, resolved: 0, acknowledged: 0, suppressed: 0, escalated: 0, renotified: 0, historic: 0, recorded: 0, covered: 0, snoozed: 0, digested: 0, flapping: 0, ended: 0 }
  private readonly log: Logger
  private readonly o: Required<Omit<AlertingDeps['options'], 'primaryRuleSets' | 'chainByRegion'>> & { primaryRuleSets: Record<string, string>, chainByRegion: Record<string, Partial<EscalationChain>> }
  private noticesPending: number[] = []

  constructor (private readonly d: AlertingDeps) {
    this.log = d.logger
    this.store = new AlertStore(d.db)
    this.o = {
      deskAfterS: 300, followersAfterS: 120, chainByRegion: {}, liveHorizonS: 3600, recordHorizonS: 86400, flapCount: 3, flapWindowS: 3600, maxSnoozeS: 86400, timeZone: 'Asia/Shanghai', checkpointMs: 5000, checkpointSlice: CHECKPOINT_SLICE, primaryRuleSets: {},
      ...d.options,
    } as typeof this.o
    this.index = this.buildIndex()
    this.reload()
  }

  private buildIndex (): RuleIndex {
    const idx = new RuleIndex(this.d.activeRuleSets(), (id) => this.d.overrides(id))
    let lookback = 0
    for (const doc of idx.ruleSets) for (const r of doc.rules) {
      if (r.kind === 'sustained') lookback = Math.max(lookback, (r.forS + (r.maxGapS ?? 0)) * 1000)
      if (r.kind === 'rateOfChange') lookback = Math.max(lookback, r.withinS * 1000)
      if (r.kind === 'nOfM' || r.kind === 'sustained' || r.kind === 'rateOfChange' || r.kind === 'threshold' || r.kind === 'classification') lookback = Math.max(lookback, (r.clear.holdDownS) * 1000)
    }
    this.retainMs = lookback + (this.o?.liveHorizonS ?? 3600) * 1000
    this.lookback = lookback
    return idx
  }

  /** An alert's hand-over state as this node holds it (cluster mode ships it with the alert). */
  handover (id: string): AlertHandover | undefined { return this.store.handover(id) }

  /**
   * Cluster mode: this node now judges the residents `theirs` accepts (it took their partition
   * over). What it held of them from an earlier time it judged them is dropped (timelines, rule
   * lifecycles: another node judged them since), and their alerts are written as the cluster's
   * copy has them: every active one, and any this node held active. An adopted open alert gets
   * its lifecycle from itself (stateOf), so a reading of the same concern is de-duplicated
   * against it instead of opening another, and its escalation chain goes on from where it was.
   * Alerts whose delivery was not confirmed are sent again.
   */
  adopt (theirs: (residentId: string) => boolean, handed: readonly { alert: Alert, handover: AlertHandover }[]): void {
    const forget = new Set<string>([...this.residents.keys(), ...this.store.residentsWithState()].filter(theirs))
    const active = (a: Alert): boolean => a.state === 'open' || a.state === 'acknowledged'
    // an alert that has ended is not sent again, whatever its delivery was
    const adopted = handed.map((x) => active(x.alert) ? x : { alert: x.alert, handover: { ...x.handover, deliveredAt: x.handover.deliveredAt ?? x.alert.openedAt } })
    this.store.transaction(() => {
      for (const id of forget) this.store.forget(id)
      for (const { alert, handover } of adopted) this.store.adopt(alert, handover)
    })
    for (const id of forget) this.residents.delete(id)
    for (const { alert: a, handover: h } of adopted) {
      const mine = this.openOf(a.residentId)?.get(a.ruleKey)
      if (mine && mine.id !== a.id) this.unsetOpen(mine)
      if (active(a)) {
        this.setOpen(a)
        this.lastNotified.set(a.id, h.lastNotifiedAt ?? a.openedAt)
        this.escalateFrom.set(a.id, h.escalateFrom ?? (a.historic ? null : a.openedAt))
        if (h.announceAt !== null) this.announceAt.set(a.id, h.announceAt); else this.announceAt.delete(a.id)
      } else {
        if (mine?.id === a.id) this.unsetOpen(a)
        this.lastNotified.delete(a.id); this.escalateFrom.delete(a.id); this.announceAt.delete(a.id)
      }
    }
    if (handed.length || forget.size) this.log.info({ alerts: handed.length, residents: forget.size }, 'took over alerts and dropped stale state of residents whose partition this node now owns')
    if (adopted.some((x) => x.handover.deliveredAt === null)) this.resendUndelivered()
  }

  /** How far back (ms of reading time) the active rules look: what a node taking residents over must see of their past. */
  get lookbackMs (): number { return this.lookback }

  /**
   * Places readings on their residents' timelines without judging them (their verdicts were
   * the previous owner's): a node that took residents over rebuilds their recent past from the
   * reading log, so a sustained tachycardia that began on the node that died is still seen
   * whole, and the no-data rule counts from their last reading.
   */
  warm (rows: readonly EvaluatedReading[]): void {
    for (const r of [...rows].sort((a, b) => a.ts - b.ts)) { this.place(r); this.noteSeen(r.residentId, r.ts) }
  }

  /** The ids of the active alerts this node holds of the residents `theirs` accepts (what adopt must be told about). */
  activeOf (theirs: (residentId: string) => boolean): string[] {
    const out: string[] = []
    for (const [res, m] of this.open) if (theirs(res)) for (const a of m.values()) out.push(a.id)
    return out
  }

  /** (Re)loads what the engine keeps in memory from the database. */
  private reload (): void {
    this.open = new Map()
    this.residents = new Map()
    this.lastNotified = new Map()
    this.escalateFrom = new Map()
    this.dirty.clear()
    this.announceAt = new Map()
    for (const { alert, lastNotifiedAt, escalateFrom, announceAt } of this.store.active()) {
      if (announceAt !== null) this.announceAt.set(alert.id, announceAt)
      this.setOpen(alert)
      this.lastNotified.set(alert.id, lastNotifiedAt)
      this.escalateFrom.set(alert.id, escalateFrom)
    }
    this.lastSeen = this.store.allSeen()
  }

  /**
   * Feeds alerting from the spool as the cursor consumer `alerting`. Timelines are written
   * every few seconds with a cursor of their own; after a restart the readings between the
   * two cursors rebuild them (no verdicts: those were committed with the alerting cursor).
   */
  attachTo (spool: AlertSpool & { attach(c: { name: string, consume(rows: readonly EvaluatedReading[]): void, committed(): void, failed(err: Error): void, urgent?: boolean }): void }): void {
    this.spool = spool
    spool.addConsumer(TIMELINE_CURSOR)
    const rebuilt = this.rebuild()
    if (rebuilt) this.log.info({ rebuilt }, 'alert timelines rebuilt from readings committed before the restart')
    // urgent: alerts are sent before the windows and reports of the same pump are computed
    spool.attach({ name: 'alerting', urgent: true, consume: (rows) => this.consume(rows), committed: () => this.committed(), failed: (err) => this.failed(err) })
  }

  /**
   * Places again what alerting consumed after the timelines' checkpoint (the readings between
   * the two cursors: their verdicts were committed with the alerting cursor, so none is judged
   * again), after a restart or after a failed transaction threw away what was in memory.
   */
  private rebuild (): number {
    const spool = this.spool!
    const from = spool.cursor(TIMELINE_CURSOR)
    const to = spool.cursor('alerting')
    let rebuilt = 0
    if (to > from) {
      for (let rows = spool.read(from, 5000); rows.length > 0 && rows[0]!.id <= to; rows = spool.read(rows[rows.length - 1]!.id, 5000)) {
        // a reading the resident's saved timeline already holds (written after the cursor, by a later slice) is not placed again
        for (const r of rows) if (r.id <= to && r.id > this.stateOf(r.residentId).pos) { this.place(r); this.noteSeen(r.residentId, r.ts); rebuilt++ }
        this.lastRowId = rows[rows.length - 1]!.id
      }
      this.lastRowId = to
    } else this.lastRowId = Math.max(from, to)
    return rebuilt
  }

  setNotifier (n: AlertNotifier): void { this.notifier = n }

  /**
   * The active rule sets, a resident's overrides or profile changed. Open alerts of a rule
   * that no longer applies end as withdrawn or superseded (never "resolved"), or carry over
   * to the rule of the same concern in the new version when the newest reading still meets it.
   */
  rulesChanged (residentId?: string, actor = 'engine'): void {
    if (residentId) { this.index.forget(residentId); this.profiles.delete(residentId) } else { this.index = this.buildIndex(); this.profiles.clear() }
    this.run(() => this.reconcile(actor, residentId))
  }

  get activeRuleSets (): readonly RuleSetDoc[] { return this.index.ruleSets }

  private profile (residentId: string): ResidentInfo | undefined {
    let p = this.profiles.get(residentId)
    if (p === undefined) { p = this.d.resident(residentId) ?? null; this.profiles.set(residentId, p) }
    return p ?? undefined
  }

  preferences (residentId: string): Preferences {
    let p = this.prefs.get(residentId)
    if (!p) { p = this.store.preferences(residentId); this.prefs.set(residentId, p) }
    return p
  }

  /** A resident's preferences changed elsewhere (cluster mode: on another node, applied by the registry's replica): read them again. */
  preferencesChanged (residentId: string): void { this.prefs.delete(residentId) }

  /** The resident's IANA zone: their own (alert preferences), else the region's (`alerting.timeZone`). The forwarder's daily windows follow it too. */
  timeZoneOf (residentId: string): string { return this.preferences(residentId).timeZone ?? this.o.timeZone }

  /** Sets a resident's time zone and quiet hours ("22:00"–"07:00" in that zone; null for none). */
  setPreferences (residentId: string, p: { timeZone?: string | null, quietHours?: { start: string, end: string } | null }, actor: string): Preferences {
    const cur = { ...this.preferences(residentId) }
    if (p.timeZone !== undefined) {
      if (p.timeZone !== null) { try { new Intl.DateTimeFormat('en', { timeZone: p.timeZone }) } catch { throw new VitalmeshError('VM_BAD_REQUEST', `unknown time zone ${p.timeZone}`) } }
      cur.timeZone = p.timeZone
    }
    if (p.quietHours !== undefined) cur.quietHours = p.quietHours
    this.store.transaction(() => this.store.savePreferences(residentId, cur))
    this.prefs.set(residentId, cur)
    this.log.info({ residentId, actor }, 'alert preferences changed')
    return cur
  }

  /** Snoozes a concern's warnings and notes for a bounded time; criticals are never snoozed. */
  snooze (residentId: string, concern: Concern, seconds: number, actor: string): Preferences {
    if (!(seconds > 0) || seconds > this.o.maxSnoozeS) throw new VitalmeshError('VM_BAD_REQUEST', `a snooze lasts between 1 s and ${this.o.maxSnoozeS} s`)
    const cur = { ...this.preferences(residentId), snoozes: { ...this.preferences(residentId).snoozes } }
    const now = this.d.clock.now()
    for (const [c, until] of Object.entries(cur.snoozes)) if (until <= now) delete cur.snoozes[c]
    cur.snoozes[concern] = now + seconds * 1000
    this.store.transaction(() => this.store.savePreferences(residentId, cur))
    this.prefs.set(residentId, cur)
    this.log.info({ residentId, concern, seconds, actor }, 'concern snoozed')
    return cur
  }

  unsnooze (residentId: string, concern: string): Preferences {
    const cur = { ...this.preferences(residentId), snoozes: { ...this.preferences(residentId).snoozes } }
    delete cur.snoozes[concern]
    this.store.transaction(() => this.store.savePreferences(residentId, cur))
    this.prefs.set(residentId, cur)
    return cur
  }

  private openOf (residentId: string): Map<string, Alert> | undefined { return this.open.get(residentId) }

  private setOpen (a: Alert): void {
    let m = this.open.get(a.residentId)
    if (!m) this.open.set(a.residentId, m = new Map())
    m.set(a.ruleKey, a)
  }

  private unsetOpen (a: Alert): void {
    const m = this.open.get(a.residentId)
    if (!m) return
    m.delete(a.ruleKey)
    if (m.size === 0) this.open.delete(a.residentId)
  }

  /** A resident's timeline, averages and rule lifecycles, loaded on first use. */
  private stateOf (residentId: string): ResidentState {
    let rs = this.residents.get(residentId)
    if (rs) return rs
    const saved = this.store.timeline(residentId)
    rs = {
      tl: saved ? Timeline.fromJSON(residentId, saved.readings) : new Timeline(),
      st: new Map(Object.entries(((saved?.ruleState as { st?: Record<string, RuleState> } | undefined)?.st ?? {}))),
      snaps: new Map(Object.entries(((saved?.ruleState as { snaps?: Record<string, Snap[]> } | undefined)?.snaps ?? {}))),
      life: this.store.lives(residentId),
      pos: saved?.pos ?? 0,
    }
    // alerts opened before lifecycles were kept (older databases): give them one
    for (const a of this.openOf(residentId)?.values() ?? []) {
      if (!rs.life.get(a.ruleKey)?.open) {
        const ts = a.reading?.ts ?? a.openedAt
        rs.life.set(a.ruleKey, { opens: [ts], open: { severity: a.severity, openTs: ts, lastHoldTs: ts, clearSince: null, historic: a.historic, flapping: a.flapCount } })
      }
    }
    this.residents.set(residentId, rs)
    return rs
  }

  private policy (rule: CompiledRule): Policy {
    return { holdDownMs: rule.rule.clear.holdDownS * 1000, cooldownMs: rule.rule.cooldownS * 1000, flapCount: this.o.flapCount, flapWindowMs: this.o.flapWindowS * 1000 }
  }

  private newTx (): Tx { return { notices: [], candidates: [], saved: new Map(), lives: new Set(), residents: new Set(), seen: new Map(), notify: [], digests: new Map() } }

  /** Runs `fn` in a transaction with a fresh effect list, then carries out the effects. */
  private run (fn: () => void): void {
    const tx = this.tx = this.newTx()
    try {
      this.store.transaction(() => { fn(); this.finish(tx) })
    } catch (err) {
      this.tx = undefined
      this.failed(err as Error)
      throw err
    }
    this.committed()
  }

  /** The spool consumer: evaluates the readings of committed records, inside the transaction that moves alerting's cursor. */
  consume (rows: readonly (EvaluatedReading & { id?: number })[]): void {
    const tx = this.tx = this.newTx()
    const now = this.d.clock.now()
    // per resident, in reading time: a store-and-forward batch is one pass through the timeline
    const by = new Map<string, EvaluatedReading[]>()
    for (const r of rows) {
      let l = by.get(r.residentId)
      if (!l) by.set(r.residentId, l = [])
      l.push(r)
    }
    for (const [residentId, list] of by) {
      // cluster mode: a reading of a resident this node no longer judges was left in its feed by a
      // crash before the partition's position committed; the partition's owner judges it from the log
      if (this.d.owns && !this.d.owns(residentId)) { this.stats.elsewhere += list.length; continue }
      if (list.length > 1) list.sort((a, b) => a.ts - b.ts)
      const p = this.profile(residentId)
      if (!p) continue
      // the readings older than the timeline's newest (a phone syncing its history) are placed
      // first and judged in one replay per rule, not one per reading; the rest follow in order
      const newest = this.stateOf(residentId).tl.newest?.ts ?? -Infinity
      let n = 0
      while (n < list.length && list[n]!.ts < newest) n++
      if (n > 0) this.evaluateLate(list.slice(0, n), p, now, tx)
      for (let i = n; i < list.length; i++) this.evaluate(list[i]!, p, now, tx)
    }
    const last = rows[rows.length - 1]?.id
    if (last !== undefined) this.lastRowId = last
    this.finish(tx)
  }

  /** Evaluates readings in a transaction of its own and carries out the effects (without a spool: tests, backtests, tools). */
  feed (rows: readonly (EvaluatedReading & { id?: number })[]): void {
    try {
      this.store.transaction(() => this.consume(rows))
    } catch (err) {
      this.failed(err as Error)
      throw err
    }
    this.committed()
  }

  /** After the consumer's transaction committed: send what it decided. */
  committed (): void {
    const tx = this.tx
    this.tx = undefined
    if (!tx) return
    for (const a of tx.saved.values()) this.notifier.changed?.(a)
    for (const a of tx.notify) this.notify(a)
    for (const n of tx.notices) this.sendNotice(n)
    for (const [res, alerts] of tx.digests) this.sendDigest(res, alerts)
    for (const res of tx.residents) this.publishStatus(res)
    if (this.spool && (this.dirty.inProgress || this.d.clock.now() - this.checkpointedAt >= this.o.checkpointMs)) this.checkpointSlice()
  }

  /** The consumer's transaction failed: what changed in memory is not in the database, so reload. */
  failed (err: Error): void {
    this.tx = undefined
    this.log.warn({ err: err.message }, 'alert state rolled back with a failed transaction; reloading it from the database')
    this.reload()
    // the timelines come back as of their checkpoint: without this, the readings consumed since
    // (up to a checkpoint interval of them) would be missing from every resident's timeline
    if (this.spool) this.rebuild()
  }

  /** Writes every timeline that changed and moves their cursor (stop; a crash rebuilds them from the spool after it). */
  checkpoint (): void {
    this.dirty.abandon()
    this.checkpointSlice(Infinity) // a new round of every dirty timeline, in one slice
  }

  /**
   * Writes the next timelines of the round, about `budget` bytes' worth, then moves the
   * timeline cursor to the oldest change still unwritten. A checkpoint of every busy resident
   * at once stalled the event loop for tens of milliseconds (50 residents × 1,024 readings:
   * 40–55 ms), which every alert behind it waited for; a slice per consumer transaction
   * keeps each pause short. A restart rebuilds each timeline from the records after its own
   * position, so a resident written later than the cursor gets no reading twice.
   */
  private checkpointSlice (budget = this.o.checkpointSlice): void {
    if (!this.spool) return
    if (this.dirty.begin()) this.checkpointedAt = this.d.clock.now()
    let written = 0
    const saved: string[] = []
    try {
      this.store.transaction(() => {
        while (written < budget) {
          const id = this.dirty.take()
          if (id === undefined) break
          written += this.saveTimeline(id, this.lastRowId)
          saved.push(id)
        }
      })
    } catch (err) {
      // nothing of the slice was written: its residents stay dirty, the next round retries them
      this.dirty.abandon()
      this.log.warn({ err: (err as Error).message }, 'could not checkpoint alert timelines; they are rebuilt from the spool after a restart')
      return
    }
    this.dirty.written(saved)
    for (const id of saved) {
      const rs = this.residents.get(id)
      if (rs) rs.pos = this.lastRowId
    }
    const cursor = this.dirty.cursor(this.lastRowId)
    if (cursor > 0) this.spool.ack(TIMELINE_CURSOR, cursor)
  }

  /**
   * The newest reading time of a resident; with a spool, the resident is then written by the next
   * checkpoint. Called while a batch is consumed (before `lastRowId` moves past it), so the
   * timeline cursor cannot pass the reading before the time it set is written.
   */
  private noteSeen (residentId: string, ts: number): void {
    if ((this.lastSeen.get(residentId) ?? -Infinity) >= ts) return
    this.lastSeen.set(residentId, ts)
    if (this.spool) this.markDirty(residentId)
  }

  /** A reading of this transaction: its resident's newest reading time, for the transaction and for good. */
  private seenIn (tx: Tx, r: EvaluatedReading): void {
    if ((tx.seen.get(r.residentId) ?? 0) < r.ts) tx.seen.set(r.residentId, r.ts)
    this.noteSeen(r.residentId, r.ts)
  }

  /** Writes a resident's timeline and rule state, holding every reading up to spool record `pos`, and when it was last seen; returns the bytes written. */
  private saveTimeline (residentId: string, pos = 0): number {
    const seen = this.lastSeen.get(residentId)
    if (seen !== undefined) this.store.seen(residentId, seen)
    const rs = this.residents.get(residentId)
    return rs ? this.store.saveTimeline(residentId, rs.tl.toJSON(), { st: Object.fromEntries(rs.st), snaps: Object.fromEntries(rs.snaps) }, pos) : 0
  }

  private markDirty (residentId: string): void {
    this.dirty.mark(residentId, this.lastRowId)
  }

  /** Places a reading on its timeline without judging it (rebuilding after a restart). */
  private place (r: EvaluatedReading): void {
    if (this.d.clock.now() - r.ts > this.o.recordHorizonS * 1000) return
    const p = this.profile(r.residentId)
    if (!p) return
    const rs = this.stateOf(r.residentId)
    rs.tl.insert(r)
    for (const rule of this.index.rulesFor(p, this.d.clock.now())) if (rule.rule.kind === 'average') rule.observe(r, this.ruleState(rs, rule.key))
    rs.tl.trim(this.retainMs, MAX_TIMELINE)
    this.markDirty(r.residentId)
  }

  private ruleState (rs: ResidentState, key: string): RuleState {
    let st = rs.st.get(key)
    if (!st) rs.st.set(key, st = {})
    return st
  }

  private evaluate (r: EvaluatedReading, p: ResidentInfo, now: number, tx: Tx): void {
    const age = now - r.ts
    this.seenIn(tx, r)
    const rules = this.index.rulesFor(p, now)
    if (age > this.o.recordHorizonS * 1000) { this.recordOld(r, p, rules, now, tx); return }
    const rs = this.stateOf(r.residentId)
    const i = rs.tl.insert(r)
    const tl = rs.tl.readings
    const late = i < tl.length - 1
    this.markDirty(r.residentId)
    for (const rule of rules) {
      const st = rule.rule.kind === 'average' ? this.ruleState(rs, rule.key) : undefined
      if (st) rule.observe(r, st)
      if (late) { this.replay(rs, rule, [r], p, now, tx); continue }
      const v = rule.evaluate(tl, i, st ?? {})
      if (v) this.step(rs, rule, v, r, age > this.o.liveHorizonS * 1000 ? 'historic' : 'live', p, tx)
    }
    this.trim(rs)
  }

  /** Readings older than the newest on their resident's timeline, sorted by time. */
  private evaluateLate (lates: EvaluatedReading[], p: ResidentInfo, now: number, tx: Tx): void {
    const rules = this.index.rulesFor(p, now)
    const placed: EvaluatedReading[] = []
    for (const r of lates) {
      this.seenIn(tx, r)
      if (now - r.ts > this.o.recordHorizonS * 1000) { this.recordOld(r, p, rules, now, tx); continue }
      placed.push(r)
    }
    if (placed.length === 0) return
    const rs = this.stateOf(p.id)
    for (const r of placed) {
      rs.tl.insert(r)
      for (const rule of rules) if (rule.rule.kind === 'average') rule.observe(r, this.ruleState(rs, rule.key))
    }
    this.markDirty(p.id)
    for (const rule of rules) this.replay(rs, rule, placed, p, now, tx)
    this.trim(rs)
  }

  private trim (rs: ResidentState): void {
    rs.tl.trim(this.retainMs, MAX_TIMELINE)
    const start = rs.tl.readings[0]?.ts ?? -Infinity
    // a replay starts at the newest snapshot before a late reading: keep one from before the timeline's start
    for (const [key, snaps] of rs.snaps) {
      let cut = 0
      while (cut + 1 < snaps.length && snaps[cut + 1]!.ts < start) cut++
      // and at most MAX_SNAPS: an alert that comes and goes many times a minute would otherwise grow
      // them without bound; a late reading older than the oldest is replayed from that one
      cut = Math.max(cut, snaps.length - MAX_SNAPS)
      if (cut > 0) snaps.splice(0, cut)
      if (snaps.length === 0) rs.snaps.delete(key)
    }
  }

  private firstClearAfter (rs: ResidentState, rule: CompiledRule): (ts: number) => number | null {
    const tl = rs.tl.readings
    return (ts) => {
      let k = tl.length
      while (k > 0 && tl[k - 1]!.ts > ts) k--
      for (; k < tl.length; k++) { const x = rule.evaluate(tl, k, rs.st.get(rule.key) ?? {}); if (x && !x.trigger && !x.holds) return tl[k]!.ts }
      return null
    }
  }

  /** A reading in order: the rule's lifecycle takes one step. */
  private step (rs: ResidentState, rule: CompiledRule, v: Verdict, r: EvaluatedReading, age: 'live' | 'historic', p: ResidentInfo, tx: Tx): void {
    const life = rs.life.get(rule.key)
    if (!v.trigger && !life?.open) return // nothing to open, nothing open to clear: the common case, no allocation
    const out = onVerdict(life ?? {}, { ts: r.ts, trigger: v.trigger, holds: v.holds, severity: v.severity, age, firstClearAfter: this.firstClearAfter(rs, rule) }, this.policy(rule))
    if (STRUCTURAL.has(out.effect.kind)) this.snap(rs, rule.key, r.ts, out.life)
    this.apply(rs, rule, out, p, tx, { v, r, ref: { deviceId: r.deviceId, seq: r.seq, ts: r.ts } })
  }

  private snap (rs: ResidentState, key: string, ts: number, life: RuleLife): void {
    let snaps = rs.snaps.get(key)
    if (!snaps) rs.snaps.set(key, snaps = [])
    snaps.push({ ts, life })
  }

  /**
   * A late reading: the rule's lifecycle is replayed in reading time from the last snapshot
   * before it, so the outcome is what in-order arrival gives; then what is open now is
   * brought to that outcome. It may open, worsen or confirm an alert, and resolve one only
   * with readings newer than the one that opened it.
   */
  private replay (rs: ResidentState, rule: CompiledRule, lates: readonly EvaluatedReading[], p: ResidentInfo, now: number, tx: Tx): void {
    const tl = rs.tl.readings
    const key = rule.key
    const cur = rs.life.get(key) ?? {}
    const snaps = rs.snaps.get(key) ?? []
    const earliest = lates[0]!.ts
    const latest = lates[lates.length - 1]!.ts
    // late readings that do not meet the rule, with nothing open and nothing since: no change (the common case)
    if (!cur.open && !snaps.some((x) => x.ts >= earliest)) {
      const newest = rule.windowed ? rule.evaluate(tl, tl.length - 1, rs.st.get(key) ?? {}) : undefined
      let meets = newest?.trigger === true
      if (!meets) {
        const set = new Set<EvaluatedReading>(lates)
        for (let k = 0; k < tl.length && !meets; k++) {
          if (!set.has(tl[k]!)) continue
          const v = rule.evaluate(tl, k, rs.st.get(key) ?? {})
          meets = v?.trigger === true || v?.holds === true
        }
      }
      if (!meets) return
    }
    let b = snaps.length - 1
    while (b >= 0 && snaps[b]!.ts >= earliest) b--
    // older than every snapshot kept, but snapshots were dropped (MAX_SNAPS): start from the oldest kept
    if (b < 0 && snaps.length >= MAX_SNAPS) b = 0
    let life: RuleLife = b >= 0 ? snaps[b]!.life : {}
    const from = b >= 0 ? snaps[b]!.ts : -Infinity
    const kept = snaps.slice(0, b + 1)
    const policy = this.policy(rule)
    const fca = this.firstClearAfter(rs, rule)
    // the episodes of the replay: when each opened, with what, and how it ended
    interface Episode { openTs: number, opener?: { v: Verdict, r: EvaluatedReading, cooled: boolean, cooledUntil?: number }, worst?: { v: Verdict, r: EvaluatedReading }, resolve?: Extract<Effect, { kind: 'resolve' }> }
    const episodes: Episode[] = []
    if (life.open) {
      // open at the snapshot: its opening reading is still on the timeline, or it is the open alert
      const openTs = life.open.openTs
      const k = tl.findIndex((x) => x.ts === openTs)
      const vk = k >= 0 ? rule.evaluate(tl, k, rs.st.get(key) ?? {}) : undefined
      episodes.push(vk ? { openTs, opener: { v: vk, r: tl[k]!, cooled: false }, worst: { v: vk, r: tl[k]! } } : { openTs })
    }
    for (let k = 0; k < tl.length; k++) {
      const x = tl[k]!
      if (x.ts <= from) continue
      const vk = rule.evaluate(tl, k, rs.st.get(key) ?? {})
      if (!vk || (!vk.trigger && !life.open)) continue
      const out = onVerdict(life, { ts: x.ts, trigger: vk.trigger, holds: vk.holds, severity: vk.severity, age: now - x.ts > this.o.liveHorizonS * 1000 ? 'historic' : 'live', firstClearAfter: fca }, policy)
      const e = out.effect
      if (e.kind === 'open') episodes.push({ openTs: x.ts, opener: { v: vk, r: x, cooled: e.cooled, ...(e.cooledUntil !== undefined ? { cooledUntil: e.cooledUntil } : {}) }, worst: { v: vk, r: x } })
      if (e.kind === 'worse' && episodes.length) episodes[episodes.length - 1]!.worst = { v: vk, r: x }
      if (e.kind === 'resolve' && episodes.length) episodes[episodes.length - 1]!.resolve = e
      if (STRUCTURAL.has(e.kind)) kept.push({ ts: x.ts, life: out.life })
      life = out.life
    }
    // (a hold-down that ran out with no reading is the timer's to resolve, as for readings in order)
    if (kept.length) rs.snaps.set(key, kept); else rs.snaps.delete(key)
    const C = cur.open
    const L = life.open
    const last = L ? episodes[episodes.length - 1] : undefined
    const at = (o: { v: Verdict, r: EvaluatedReading }) => ({ v: o.v, r: o.r, ref: { deviceId: o.r.deviceId, seq: o.r.seq, ts: o.r.ts } })
    const openLast = (): void => {
      const o = last?.opener ?? last?.worst
      const w = last?.worst ?? o
      if (!L || !o || !w) return
      // worded on its worst reading, referring to the one that opened it
      this.apply(rs, rule, { life, effect: { kind: 'open', severity: L.severity, historic: L.historic, flapping: L.flapping > 0, cooled: last?.opener?.cooled ?? false, ...(last?.opener?.cooledUntil !== undefined ? { cooledUntil: last.opener.cooledUntil } : {}) } }, p, tx,
        { v: w.v, r: w.r, ref: { deviceId: o.r.deviceId, seq: o.r.seq, ts: o.r.ts } })
    }
    if (!C) { if (L) openLast(); else this.apply(rs, rule, { life, effect: { kind: 'none' } }, p, tx); return }
    // the episode of the replay that the alert open now belongs to
    const E = [...episodes].reverse().find((ep) => ep.openTs <= C.openTs && (!ep.resolve || ep.resolve.at >= C.openTs))
      ?? episodes.find((ep) => ep.openTs > C.openTs && ep.openTs <= latest) // a late reading opened it earlier than it was
    if (!E) { this.apply(rs, rule, { life: cur, effect: { kind: 'none' } }, p, tx); return } // cannot place it: leave it as it is
    if (E.resolve) {
      // in reading time that episode is over, by readings newer than the one that opened it; a later one may be open
      this.apply(rs, rule, { life: L ? {} : life, effect: E.resolve }, p, tx)
      if (L) openLast()
      return
    }
    // the same episode: a suppression never hides a worse state, so its severity only rises
    const Lo = L!
    const severity = RANK[C.severity] >= RANK[Lo.severity] ? C.severity : Lo.severity
    const merged: RuleLife = { ...life, open: { ...Lo, severity, historic: C.historic && Lo.historic } }
    let effect: Effect = { kind: 'changed' }
    if (RANK[Lo.severity] > RANK[C.severity]) effect = { kind: 'worse', severity: Lo.severity }
    else if (C.historic && !Lo.historic) effect = { kind: 'confirmed' }
    this.apply(rs, rule, { life: merged, effect }, p, tx, E.worst ? at(E.worst) : undefined)
    const a = this.openOf(p.id)?.get(key)
    if (a && Lo.openTs < C.openTs && E.opener) {
      // the late reading opened this episode earlier than the reading the alert was opened by: that is its first reading now
      a.firstReading = { deviceId: E.opener.r.deviceId, seq: E.opener.r.seq, ts: E.opener.r.ts }
      this.store.save(a, this.escalateFrom.get(a.id) ?? null)
      this.store.event(a.id, this.d.clock.now(), `episode-from:${new Date(E.opener.r.ts).toISOString()}`, 'engine')
    }
  }

  /** A reading beyond the record horizon: its verdicts go into the alert history, nothing else. */
  private recordOld (r: EvaluatedReading, p: ResidentInfo, rules: readonly CompiledRule[], now: number, tx: Tx): void {
    for (const rule of rules) {
      if (rule.windowed || rule.rule.kind === 'average' || rule.rule.kind === 'noData') continue
      const v = rule.evaluate([r], 0, {})
      if (!v?.trigger) continue
      const a = this.newAlert(rule, v, p, { deviceId: r.deviceId, seq: r.seq, ts: r.ts }, now, true, r)
      a.state = 'recorded'
      this.store.insert(a, null)
      this.store.event(a.id, now, 'recorded', 'engine')
      this.stats.recorded++
      tx.saved.set(a.id, a)
    }
  }

  /** Carries out a lifecycle effect: the alert row, its history, and a notification candidate. */
  private apply (rs: ResidentState, rule: CompiledRule | undefined, out: { life: RuleLife, effect: Effect }, p: { id: string }, tx: Tx, at?: { v: Verdict, r: EvaluatedReading, ref: NonNullable<Alert['reading']> }, ruleKey = rule?.key ?? ''): void {
    const before = rs.life.get(ruleKey)
    if (out.life !== before) { rs.life.set(ruleKey, out.life); tx.lives.add(`${p.id}\u0000${ruleKey}`) }
    const now = this.d.clock.now()
    const cur = this.openOf(p.id)?.get(ruleKey)
    const e = out.effect
    switch (e.kind) {
      case 'none': case 'changed': return
      case 'suppressed': this.stats.suppressed++; return
      case 'open': {
        if (!rule || !at) return
        const info = this.profile(p.id)!
        const a = this.newAlert(rule, { ...at.v, severity: e.severity }, info, at.ref, now, e.historic, at.r)
        a.flapCount = e.flapping ? out.life.open?.flapping ?? 0 : 0
        this.store.insert(a, e.historic ? null : now)
        this.store.event(a.id, now, e.historic ? 'open:historic' : 'open', 'engine')
        if (e.flapping) this.store.event(a.id, now, `flapping:${a.flapCount}`, 'engine')
        if (cur) { // cannot happen while life and open alerts agree; keep one active alert per rule
          this.log.warn({ alertId: cur.id, ruleKey }, 'an alert was open without its lifecycle; ending it')
          this.finishAlert(cur, 'resolved', now, 'engine')
        }
        this.setOpen(a)
        this.lastNotified.set(a.id, now)
        this.escalateFrom.set(a.id, e.historic ? null : now)
        if (a.severity === 'critical' && !a.historic) this.toHospital(a, 'critical')
        this.stats.opened++
        if (e.historic) this.stats.historic++
        tx.saved.set(a.id, a)
        tx.candidates.push({ alert: a, snapshot: snapshot(a), kind: 'open', readingKey: `${at.ref.deviceId}\u0000${at.ref.seq}`, ruleSetId: rule.ruleSetId, cooled: e.cooled, ...(e.cooledUntil !== undefined ? { cooledUntil: e.cooledUntil } : {}) })
        tx.residents.add(p.id)
        return
      }
      case 'worse': case 'confirmed': {
        if (!cur || !rule || !at) return
        const wasHistoric = cur.historic
        const wasOpen = cur.state === 'open'
        const wasCritical = cur.severity === 'critical'
        if (e.kind === 'worse') cur.severity = e.severity
        cur.historic = out.life.open?.historic ?? false
        Object.assign(cur, { state: 'open', acknowledgedAt: null, acknowledgedBy: null, detail: at.v.detail, reading: e.kind === 'worse' ? at.ref : cur.reading })
        cur.messages = this.messagesFor(rule, at.v, cur.severity, at.r, cur.historic, p.id)
        // the chain's clock starts when it becomes a live critical (a warning that worsened, an
        // acknowledged alert opened again, a historic one confirmed), not when the warning opened:
        // otherwise every step would fire at the same moment. Steps already taken stay taken.
        if (!cur.historic && ((wasHistoric) || (cur.severity === 'critical' && !wasCritical) || !wasOpen)) this.escalateFrom.set(cur.id, now)
        if (cur.severity === 'critical' && !cur.historic && (e.kind === 'worse' || wasHistoric)) this.toHospital(cur, 'critical')
        this.store.save(cur, this.escalateFrom.get(cur.id) ?? null)
        this.store.event(cur.id, now, e.kind === 'worse' ? `severity:${e.severity}` : 'confirmed', 'engine')
        tx.saved.set(cur.id, cur)
        tx.candidates.push({ alert: cur, snapshot: snapshot(cur), kind: e.kind, readingKey: `${at.ref.deviceId}\u0000${at.ref.seq}`, ruleSetId: rule.ruleSetId })
        tx.residents.add(p.id)
        return
      }
      case 'flapping': {
        if (!cur) return
        cur.flapCount = e.count
        this.store.save(cur, this.escalateFrom.get(cur.id) ?? null)
        this.store.event(cur.id, now, `flapping:${e.count}`, 'engine')
        this.stats.flapping++
        tx.saved.set(cur.id, cur)
        tx.residents.add(p.id)
        return
      }
      case 'resolve': {
        if (!cur) return
        const title = rule ? rule.rule.title : cur.ruleKey
        for (const lang of LANGUAGES) cur.messages[lang] = resolvedMessage(textIn(title, lang), lang)
        cur.clearedFrom = e.clearSince
        this.finishAlert(cur, 'resolved', now, 'engine')
        this.stats.resolved++
        tx.saved.set(cur.id, cur)
        if (!e.historic) tx.candidates.push({ alert: cur, kind: 'resolved', readingKey: null, ruleSetId: cur.ruleSetId })
        tx.residents.add(p.id)
      }
    }
  }

  /** a live critical alert to its resident's hospital's FHIR feed (d.criticalAlert) */
  private toHospital (a: Alert, change: 'critical' | 'escalated' | 'ended'): void {
    if (!this.d.criticalAlert) return
    const h = this.profile(a.residentId)?.hospitalId
    if (h) this.d.criticalAlert(a, change, h)
  }

  private finishAlert (a: Alert, state: Alert['state'], now: number, actor: string, event: string = state): void {
    a.state = state
    a.resolvedAt = now
    this.store.save(a, this.escalateFrom.get(a.id) ?? null)
    if (a.severity === 'critical' && !a.historic) this.toHospital(a, 'ended')
    this.store.event(a.id, now, event, actor)
    this.unsetOpen(a)
    this.lastNotified.delete(a.id)
    this.escalateFrom.delete(a.id)
    if (this.announceAt.delete(a.id)) this.store.announceAt(a.id, null)
  }

  private newAlert (rule: CompiledRule, v: Verdict, p: ResidentInfo, ref: NonNullable<Alert['reading']>, now: number, historic: boolean, r: EvaluatedReading): Alert {
    const messages = this.messagesFor(rule, v, v.severity, r, historic, p.id)
    const lang = languageOf(p.language)
    return {
      id: randomUUID(), residentId: p.id, ruleSetId: rule.ruleSetId, ruleSetVersion: rule.ruleSetVersion, ruleId: rule.rule.id, ruleKey: rule.key, concern: rule.concern,
      severity: v.severity, state: 'open', openedAt: now, acknowledgedAt: null, acknowledgedBy: null, resolvedAt: null,
      message: messages[lang], messages, language: lang, reading: ref, firstReading: ref, detail: v.detail, escalatedAt: null,
      historic, flapCount: 0, endedReason: null, closedAt: null, closedBy: null, clearedFrom: null, deskAt: null, followersAt: null, assignedTo: null,
    }
  }

  private messagesFor (rule: CompiledRule, v: { detail: Detail }, severity: Severity, r: EvaluatedReading | undefined, historic: boolean, residentId: string): Record<Language, string> {
    const out = {} as Record<Language, string>
    const ru = rule.rule
    const now = this.d.clock.now()
    for (const lang of LANGUAGES) {
      const cat = ru.kind === 'classification' && v.detail.category ? textIn(ru.categories.find((c) => c.id === v.detail.category)?.title ?? v.detail.category, lang) : undefined
      const ctx: Parameters<typeof alertMessage>[0] = {
        title: textIn(ru.title, lang), detail: describe(v.detail, lang, cat, ru.kind === 'classification'), concern: rule.concern, severity,
      }
      if (historic && r) ctx.historicAt = localTime(r.ts, this.timeZoneOf(residentId), now, lang)
      if (r?.motion) ctx.motion = true
      if (r?.confidence !== undefined && r.confidence < LOW_CONFIDENCE) ctx.lowConfidence = true
      out[lang] = alertMessage(ctx, lang)
    }
    return out
  }

  /** Writes what the transaction changed and decides whom to tell. */
  private finish (tx: Tx): void {
    if (!this.spool && this.d.clock.now() - this.checkpointedAt >= this.o.checkpointMs) {
      // no spool to rebuild them from (tests, tools): timelines are written with everything else, when due
      this.checkpointedAt = this.d.clock.now()
      for (const id of this.dirty.keys()) this.saveTimeline(id)
      this.dirty.clear()
    }
    for (const key of tx.lives) {
      const [residentId, ruleKey] = key.split('\u0000') as [string, string]
      this.store.saveLife(residentId, ruleKey, this.residents.get(residentId)?.life.get(ruleKey))
    }
    for (const [res, ts] of tx.seen) {
      // with a spool, when a resident was last seen is written with the resident's timeline (and
      // rebuilt with it after a crash): one upsert per resident per transaction was 19% of the
      // engine's time at small transactions (`bench/alert-engine.ts 5`), and a county's readings
      // come from a different resident each. Without one (tests, tools), with the transaction.
      if (!this.spool) this.store.seen(res, ts)
    }
    // quiet alerts of a cool-down that is over by now (or by the newest reading): announced
    if (this.announceAt.size > 0) {
      for (const [res, ts] of tx.seen) for (const a of this.openOf(res)?.values() ?? []) {
        const at = this.announceAt.get(a.id)
        if (at === undefined || Math.max(ts, this.d.clock.now()) < at || a.state !== 'open') continue
        this.announceAt.delete(a.id)
        this.store.announceAt(a.id, null)
        tx.candidates.push({ alert: a, kind: 'open', readingKey: null, ruleSetId: a.ruleSetId })
      }
    }
    if (tx.candidates.length === 0) return
    const now = this.d.clock.now()
    const plan = planNotifications(tx.candidates, {
      now,
      openOf: (res) => [...(this.openOf(res)?.values() ?? [])],
      preferences: (res) => this.preferences(res),
      timeZone: (res) => this.timeZoneOf(res),
      primaryRuleSet: (res) => { const region = this.profile(res)?.region; return (region ? this.o.primaryRuleSets[region] : undefined) ?? this.o.primaryRuleSets['*'] },
    })
    const cooledUntil = new Map(tx.candidates.filter((c) => c.cooledUntil !== undefined).map((c) => [c.alert.id, c.cooledUntil!]))
    for (const { alert, reason, by } of plan.held) {
      this.store.event(alert.id, now, reason === 'covered' ? `covered-by:${by}` : reason, 'engine')
      if (reason === 'cooldown') {
        // announced when the cool-down is over, if it is still open then
        const at = cooledUntil.get(alert.id) ?? now
        this.announceAt.set(alert.id, at)
        this.store.announceAt(alert.id, at)
        this.stats.suppressed++
      }
      if (reason === 'covered') this.stats.covered++
      if (reason === 'snoozed') this.stats.snoozed++
      if (reason === 'quiet-hours') { this.store.addDigest(alert.residentId, alert.id, now, alert.messages); this.stats.digested++ }
    }
    for (const a of plan.send) {
      this.store.dropDigest(a.residentId, a.id) // told now (it became critical): not again in the morning
      this.store.pending(a.id, now)
      this.lastNotified.set(a.id, now)
      tx.notify.push(a)
      if (!a.historic) this.tellFollowers(a, 'alert', now, tx)
    }
  }

  /**
   * The engine's own timer: no-data rules, hold-downs that ran out without new readings,
   * re-notification of unacknowledged alerts, escalation of critical ones, and the digests
   * of quiet hours that ended.
   */
  tick (): void {
    try {
      this.run(() => this.timePassed())
    } catch (err) {
      this.log.error({ err }, 'alert timer failed')
    }
  }

  private timePassed (): void {
    const tx = this.tx!
    const now = this.d.clock.now()
    const owns = this.d.owns
    if (this.index.hasNoData) for (const [res, last] of this.lastSeen) {
      if (owns && !owns(res)) continue
      const p = this.profile(res)
      if (!p) continue
      for (const rule of this.index.rulesFor(p, now)) {
        if (rule.rule.kind !== 'noData') continue
        const silentForS = Math.max(0, Math.round((now - last) / 1000))
        const silent = now - last >= rule.rule.forS * 1000
        const rs = this.stateOf(res)
        const life = rs.life.get(rule.key)
        if (!silent && !life?.open) continue
        const v: Verdict = { key: rule.key, rule, trigger: silent, holds: silent, severity: rule.rule.severity, detail: { values: {}, silentForS } }
        const out = onVerdict(life ?? {}, { ts: now, trigger: silent, holds: silent, severity: v.severity, age: 'live', firstClearAfter: () => null }, this.policy(rule))
        this.apply(rs, rule, out, p, tx, { v, r: { deviceId: '', residentId: res, seq: -1, ts: now }, ref: { deviceId: '', seq: -1, ts: now } })
      }
    }
    for (const [res, m] of [...this.open]) {
      if (owns && !owns(res)) continue
      const p = this.profile(res)
      for (const a of [...m.values()]) {
        const rule = p ? this.index.rulesFor(p, now).find((c) => c.key === a.ruleKey) : undefined
        if (!rule) continue // reconcile() ends alerts whose rule went away
        const rs = this.stateOf(res)
        const life = rs.life.get(a.ruleKey)
        if (life?.open) {
          const out = expire(life, now, this.policy(rule))
          if (out.effect.kind === 'resolve') this.snap(rs, rule.key, out.effect.at, out.life)
          if (out.effect.kind !== 'none') { this.apply(rs, rule, out, { id: res }, tx); if (out.effect.kind === 'resolve') continue }
        }
        if (a.state !== 'open') continue
        const quietUntil = this.announceAt.get(a.id)
        if (quietUntil !== undefined) {
          if (now < quietUntil) continue
          this.announceAt.delete(a.id)
          this.store.announceAt(a.id, null)
          tx.candidates.push({ alert: a, kind: 'open', readingKey: null, ruleSetId: a.ruleSetId })
          continue
        }
        const every = this.d.options.renotifyS[a.severity] * 1000
        const last = this.lastNotified.get(a.id) ?? a.openedAt
        if (every > 0 && now - last >= every && !a.historic && a.flapCount === 0) {
          this.lastNotified.set(a.id, now)
          this.store.pending(a.id, now)
          this.stats.renotified++
          tx.notify.push(a)
        }
        const from = this.escalateFrom.get(a.id)
        // the escalation chain: the resident, then its followers, the coordination centre's duty desk, the hospital;
        // an acknowledgement at any step stops it (only open alerts get here)
        const chain = this.chainOf(res)
        const chained = (a.severity === 'critical' || a.concern === 'no-data') && from !== null && from !== undefined
        if (chained && a.followersAt === null && now - from >= chain.followersAfterS * 1000) {
          a.followersAt = now
          this.store.save(a, from)
          const told = this.tellFollowers(a, 'escalation', now, tx, Math.round((now - from) / 60_000))
          // told: notices kept until the broker took them (MQTT); live: shown to followers who chose only the live stream, if connected
          this.store.event(a.id, now, told.mqtt + told.live > 0 ? `escalated:followers:${told.mqtt}${told.live ? `:live:${told.live}` : ''}` : 'escalation-skipped:no-followers', 'engine')
          if (told.mqtt + told.live > 0) this.stats.followers++
          tx.saved.set(a.id, a)
        }
        if (chained && a.deskAt === null && now - from >= chain.deskAfterS * 1000) {
          a.deskAt = now
          this.store.save(a, from)
          this.store.event(a.id, now, 'escalated:duty-desk', 'engine')
          this.stats.desk++
          tx.saved.set(a.id, a)
        }
        if (a.severity === 'critical' && a.escalatedAt === null && from !== null && from !== undefined && now - from >= chain.hospitalAfterS * 1000) this.escalate(a, now)
      }
    }
    // quiet hours that ended: one message with what was held
    for (const res of this.store.digestResidents()) {
      if (inQuietHours(this.preferences(res).quietHours, this.timeZoneOf(res), now)) continue
      const held = this.store.takeDigest(res)
      if (held.length) tx.digests.set(res, held)
    }
  }

  /** Ends or carries over the open alerts whose rule no longer applies (see rulesChanged). */
  private reconcile (actor: string, only?: string): void {
    const tx = this.tx!
    const now = this.d.clock.now()
    for (const [res, m] of [...this.open]) {
      if (only && res !== only) continue
      const p = this.profile(res)
      const rules = p ? this.index.rulesFor(p, now) : []
      for (const a of [...m.values()]) {
        if (rules.some((c) => c.key === a.ruleKey && c.ruleSetVersion === a.ruleSetVersion)) continue
        const rs = this.stateOf(res)
        const life = rs.life.get(a.ruleKey) ?? {}
        const successor = rules.find((c) => c.ruleSetId === a.ruleSetId && c.rule.id === a.ruleId) ?? rules.find((c) => c.ruleSetId === a.ruleSetId && c.concern === a.concern)
        if (successor) {
          const tl = rs.tl.readings
          let v: Verdict | undefined
          for (let j = tl.length - 1; j >= 0 && !v; j--) v = successor.evaluate(tl, j, rs.st.get(successor.key) ?? {})
          if (v && (v.trigger || v.holds)) {
            // the new version still sees it: the same alert goes on under the new rule, and nobody is told anything new
            const from = a.ruleSetVersion
            rs.life.delete(a.ruleKey); tx.lives.add(`${res}\u0000${a.ruleKey}`)
            this.unsetOpen(a)
            Object.assign(a, { ruleKey: successor.key, ruleId: successor.rule.id, ruleSetVersion: successor.ruleSetVersion, concern: successor.concern })
            if (v.trigger && RANK[v.severity] > RANK[a.severity]) a.severity = v.severity
            rs.life.set(a.ruleKey, life); tx.lives.add(`${res}\u0000${a.ruleKey}`)
            this.setOpen(a)
            this.store.save(a, this.escalateFrom.get(a.id) ?? null)
            this.store.event(a.id, now, `carried-over:${from}->${successor.ruleSetVersion}`, actor)
            tx.saved.set(a.id, a)
            continue
          }
        }
        const reason = successor ? 'superseded' : 'withdrawn'
        const title = successor ? successor.rule.title : a.ruleKey
        for (const lang of LANGUAGES) a.messages[lang] = endedMessage(typeof title === 'string' ? title : textIn(title, lang), reason, successor?.ruleSetVersion, lang)
        a.message = a.messages[a.language]
        // still active, but no longer for this resident (their profile or the audience changed): not "withdrawn" as such
        const stillActive = !successor && this.index.ruleSets.some((d) => d.id === a.ruleSetId)
        a.endedReason = successor ? `superseded by ${a.ruleSetId} version ${successor.ruleSetVersion}` : stillActive ? `rule set ${a.ruleSetId} no longer applies to this resident` : `rule set ${a.ruleSetId} withdrawn`
        rs.life.set(a.ruleKey, end(life)); tx.lives.add(`${res}\u0000${a.ruleKey}`)
        this.finishAlert(a, reason, now, actor, `${reason}:${a.endedReason}`)
        this.stats.ended++
        tx.saved.set(a.id, a)
        tx.residents.add(res)
      }
    }
  }

  private escalate (a: Alert, now: number): void {
    a.escalatedAt = now
    this.store.save(a, this.escalateFrom.get(a.id) ?? null)
    this.toHospital(a, 'escalated')
    const p = this.profile(a.residentId)
    const endpoint = p?.hospitalId ? this.d.hospitalEndpoint(p.hospitalId) : undefined
    if (!endpoint) {
      this.store.event(a.id, now, 'escalation-skipped:no-hospital-endpoint', 'engine')
      this.log.warn({ alertId: a.id, residentId: a.residentId }, 'critical alert not acknowledged, but the resident has no hospital with a webhook')
      return
    }
    const body = JSON.stringify({
      type: 'vitalmesh.alert.escalated',
      reason: `critical alert not acknowledged within ${this.chainOf(a.residentId).hospitalAfterS} s`,
      hospitalId: p!.hospitalId,
      resident: { id: a.residentId },
      alert: { id: a.id, ruleKey: a.ruleKey, ruleSetVersion: a.ruleSetVersion, concern: a.concern, severity: a.severity, state: a.state, openedAt: new Date(a.openedAt).toISOString(), message: a.messages.en, detail: a.detail, reading: a.reading, readingAt: a.reading ? new Date(a.reading.ts).toISOString() : null },
    })
    this.d.enqueueWebhook({ sink: 'hospital-escalation', url: endpoint.url, headers: endpoint.token ? { authorization: `Bearer ${endpoint.token}` } : {}, body, idempotencyKey: `escalation:${a.id}` })
    this.store.event(a.id, now, 'escalated', 'engine')
    this.stats.escalated++
  }

  /** A resident (or an operator) acknowledges an alert. Idempotent. */
  acknowledge (alertId: string, actor: string, residentId?: string): Alert {
    const row = this.store.get(alertId)
    if (!row || (residentId !== undefined && row.residentId !== residentId)) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId} for this resident`)
    const a = this.openOf(row.residentId)?.get(row.ruleKey)
    if (!a || a.id !== alertId || a.state !== 'open') return row
    this.run(() => {
      const now = this.d.clock.now()
      Object.assign(a, { state: 'acknowledged', acknowledgedAt: now, acknowledgedBy: actor })
      this.store.save(a, this.escalateFrom.get(a.id) ?? null)
      this.store.event(a.id, now, 'acknowledged', actor)
      this.stats.acknowledged++
      this.tx!.saved.set(a.id, a)
      this.tx!.residents.add(a.residentId)
    })
    return a
  }

  /** The worklist: a staff member takes an alert (or hands it on). Any alert, any state; recorded in its history. */
  assign (alertId: string, to: string, actor: string): Alert {
    const a = this.activeOrStored(alertId)
    this.run(() => {
      a.assignedTo = to
      this.store.save(a, this.escalateFrom.get(a.id) ?? null)
      this.store.event(a.id, this.d.clock.now(), `assigned:${to.slice(0, 100)}`, actor)
      this.tx!.saved.set(a.id, a)
    })
    return a
  }

  /** The worklist: a note on an alert (a call made, a visit arranged). */
  addNote (alertId: string, text: string, actor: string): AlertNote {
    const a = this.activeOrStored(alertId)
    const n = { at: this.d.clock.now(), actor, text }
    this.run(() => {
      this.store.addNote(a.id, n)
      this.store.event(a.id, n.at, 'note', actor)
      this.tx!.saved.set(a.id, a)
    })
    return n
  }

  notes (alertId: string): AlertNote[] { return this.store.notes(alertId) }

  /**
   * The worklist: staff resolve an open or acknowledged alert by hand, with a reason (the
   * resident was reached, it was a cuff fitted wrongly). The rule's episode ends with it, so
   * a reading that still meets the rule opens a new alert: resolving by hand never hides a
   * state that persists. The resident is not told "back in range": its readings did not say so.
   */
  resolveByHand (alertId: string, reason: string, actor: string): Alert {
    const row = this.store.get(alertId)
    if (!row) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId}`)
    const a = this.openOf(row.residentId)?.get(row.ruleKey)
    if (!a || a.id !== alertId) throw new VitalmeshError('VM_CONFLICT', `alert ${alertId} is ${row.state}: only open or acknowledged alerts are resolved by hand`)
    // a critical the newest reading still shows is not closed by hand: acknowledging stops its chain; a new reading decides
    if (a.severity === 'critical' && this.stillMet(a)) throw new VitalmeshError('VM_CONFLICT', `the newest reading still meets the rule of critical alert ${alertId}: acknowledge it to stop the escalation, and resolve it once a new reading is taken`)
    this.run(() => {
      const now = this.d.clock.now()
      const rs = this.stateOf(a.residentId)
      rs.life.set(a.ruleKey, end(rs.life.get(a.ruleKey) ?? {}))
      this.tx!.lives.add(`${a.residentId}\u0000${a.ruleKey}`)
      a.endedReason = `resolved by hand: ${reason.slice(0, 200)}`
      this.finishAlert(a, 'resolved', now, actor, `resolved-by-hand:${reason.slice(0, 200)}`)
      this.tx!.saved.set(a.id, a)
      this.tx!.residents.add(a.residentId)
    })
    return a
  }

  /** Does the resident's newest reading still meet the alert's rule? */
  private stillMet (a: Alert): boolean {
    const p = this.profile(a.residentId)
    const rule = p ? this.index.rulesFor(p, this.d.clock.now()).find((c) => c.key === a.ruleKey) : undefined
    const rs = this.residents.get(a.residentId)
    if (!rule || !rs) return false
    const tl = rs.tl.readings
    for (let j = tl.length - 1; j >= 0; j--) {
      const v = rule.evaluate(tl, j, rs.st.get(rule.key) ?? {})
      if (v) return v.trigger || v.holds
    }
    return false
  }

  /** The live copy of an active alert (so the engine and the database agree), else the stored one. */
  private activeOrStored (alertId: string): Alert {
    const row = this.store.get(alertId)
    if (!row) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId}`)
    const live = this.openOf(row.residentId)?.get(row.ruleKey)
    return live && live.id === alertId ? live : row
  }

  /** Someone handling it closes an alert whose standard was withdrawn or replaced (criticals stay in view until then). */
  close (alertId: string, actor: string, reason: string): Alert {
    const a = this.store.get(alertId)
    if (!a) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId}`)
    if (a.state !== 'withdrawn' && a.state !== 'superseded') throw new VitalmeshError('VM_CONFLICT', `alert ${alertId} is ${a.state}: only withdrawn or superseded alerts are closed by hand`)
    if (a.closedAt !== null) return a
    this.run(() => {
      const now = this.d.clock.now()
      a.closedAt = now
      a.closedBy = actor
      this.store.save(a, null)
      this.store.event(a.id, now, `closed:${reason.slice(0, 200)}`, actor)
      this.tx!.saved.set(a.id, a)
    })
    return a
  }

  private notify (a: Alert): void {
    // in the resident's language at the time of sending, not the one it was opened in
    const lang = languageOf(this.profile(a.residentId)?.language ?? a.language)
    a.language = lang
    a.message = a.messages[lang]
    this.notifier.alert(a, () => {
      this.deliveredPending.push(a.id)
      this.deliveredTimer ??= this.d.clock.setTimeout(() => this.flushDelivered(), 50)
    })
  }

  private sendDigest (residentId: string, held: { alertId: string, at: number, messages: Record<Language, string> }[]): void {
    const lang = languageOf(this.profile(residentId)?.language)
    const tz = this.timeZoneOf(residentId)
    const now = this.d.clock.now()
    const alerts = held.map((h) => this.store.get(h.alertId)).filter((a): a is Alert => a !== undefined)
    const lines = held.map((h) => `• ${localTime(h.at, tz, now, lang)} ${h.messages[lang]}`)
    const head = lang === 'zh-CN' ? `免打扰时段内有 ${held.length} 条提醒：` : `${held.length} alert${held.length === 1 ? '' : 's'} during your quiet hours:`
    this.notifier.digest?.(residentId, { residentId, alerts, message: [head, ...lines].join('\n'), language: lang })
  }

  private publishStatus (residentId: string): void {
    const active = [...(this.openOf(residentId)?.values() ?? [])]
      .map((a) => ({ id: a.id, ruleKey: a.ruleKey, concern: a.concern, severity: a.severity, state: a.state, openedAt: a.openedAt, historic: a.historic, message: a.messages[languageOf(this.profile(residentId)?.language)] }))
    const worst = active.reduce<Severity | null>((w, a) => (w === null || RANK[a.severity] > RANK[w] ? a.severity : w), null)
    this.notifier.status(residentId, { residentId, worst, active, updatedAt: this.d.clock.now() })
  }

  flushDelivered (): void {
    this.d.clock.clearTimeout(this.deliveredTimer)
    this.deliveredTimer = undefined
    const ids = this.deliveredPending
    const notices = this.noticesPending
    if (ids.length === 0 && notices.length === 0) return
    this.deliveredPending = []
    this.noticesPending = []
    try {
      this.store.transaction(() => { this.store.delivered(ids, this.d.clock.now()); this.store.noticesDelivered(notices, this.d.clock.now()) })
    } catch (err) {
      this.log.error({ err }, 'could not record alert delivery; the alerts will be re-sent after a restart')
    }
  }

  /** Re-sends the notifications a crash interrupted; an alert already delivered is not sent again. */
  resendUndelivered (): number {
    const rows = this.store.undelivered()
    for (const a of rows) this.notify(a)
    const notices = this.store.undeliveredNotices()
    for (const n of notices) this.sendNotice(n)
    if (rows.length || notices.length) this.log.info({ count: rows.length, followerNotices: notices.length }, 're-sending alerts whose delivery was interrupted')
    return rows.length + notices.length
  }

  /** The chain's timeouts for a resident: its region's, else the node's. */
  chainOf (residentId: string): EscalationChain {
    const region = this.profile(residentId)?.region
    const r = (region ? this.o.chainByRegion[region] : undefined) ?? {}
    return { followersAfterS: r.followersAfterS ?? this.o.followersAfterS, deskAfterS: r.deskAfterS ?? this.o.deskAfterS, hospitalAfterS: r.hospitalAfterS ?? this.d.options.escalateAfterS }
  }

  /**
   * Notices to the resident's followers, recorded in this transaction and sent after it
   * commits: a copy of an alert the resident is told of (to those who chose its severity), or
   * the escalation step (to every follower). Returns how many followers it reached.
   */
  private tellFollowers (a: Alert, kind: 'alert' | 'escalation', now: number, tx: Tx, minutes?: number): { mqtt: number, live: number } {
    const told = { mqtt: 0, live: 0 }
    const f = this.d.followers?.(a.residentId)
    if (!f || f.followers.length === 0) return told
    for (const t of f.followers) {
      if (kind === 'alert' && !followerWantsCopy(t.notify, a.severity)) continue
      if (!t.channels.includes('mqtt')) { if (t.channels.includes('live')) told.live++; continue } // the live stream shows every change of the alert; nothing to keep
      const lang = languageOf(t.language)
      const message = followerMessage(kind, { residentName: f.residentName, severity: a.severity, concern: a.concern, residentMessage: a.messages[lang], ...(minutes !== undefined ? { minutes } : {}) }, lang)
      const body = { type: kind === 'alert' ? 'alert' : 'escalation', followerId: t.id, residentId: a.residentId, residentName: f.residentName, alert: { id: a.id, concern: a.concern, severity: a.severity, state: a.state, openedAt: a.openedAt, reading: a.reading, historic: a.historic }, message, language: lang, at: now, ackTopic: topics.followerAck(t.id) }
      tx.notices.push(this.store.addNotice({ followerId: t.id, alertId: a.id, kind, at: now, body }))
      told.mqtt++
    }
    return told
  }

  /**
   * Publishes a follower notice (with its id, so an app can drop the copy a crash may re-send).
   * A follower removed since, or an escalation of an alert nobody needs to check on any more
   * (re-sent after a restart), is not sent: it is marked done.
   */
  private sendNotice (n: FollowerNotice): void {
    if (!this.notifier.follower) return
    const stale = (this.d.followerActive && !this.d.followerActive(n.followerId)) || (n.kind === 'escalation' && this.store.get(n.alertId)?.state !== 'open')
    const done = (): void => {
      this.noticesPending.push(n.id)
      this.deliveredTimer ??= this.d.clock.setTimeout(() => this.flushDelivered(), 50)
    }
    if (stale) done()
    else this.notifier.follower({ ...n, body: { ...(n.body as object), noticeId: n.id } }, done)
  }

  /** What each follower was told of an alert (the alert's history names the steps; this, the people). */
  followerNotices (alertId: string): ReturnType<AlertStore['noticesOf']> { return this.store.noticesOf(alertId) }

  start (): void {
    const loop = (): void => { this.tick(); this.tickTimer = this.d.clock.setTimeout(loop, this.d.options.tickMs) }
    this.tickTimer = this.d.clock.setTimeout(loop, this.d.options.tickMs)
  }

  stop (): void {
    this.d.clock.clearTimeout(this.tickTimer)
    this.tickTimer = undefined
    this.flushDelivered()
    if (this.spool) this.checkpoint()
  }

  /** Open and acknowledged alerts. */
  activeAlerts (residentId?: string): Alert[] {
    if (residentId) return [...(this.openOf(residentId)?.values() ?? [])]
    const out: Alert[] = []
    for (const m of this.open.values()) for (const a of m.values()) out.push(a)
    return out
  }

  /** What someone must still look at: active alerts, and criticals whose standard was withdrawn until a person closes them. */
  needingAttention (residentIds?: (id: string) => boolean): Alert[] {
    const all = [...this.activeAlerts(), ...this.store.attention()].sort(byAttention)
    return residentIds ? all.filter((a) => residentIds(a.residentId)) : all
  }

  forResident (residentId: string, limit = 100): Alert[] { return this.store.forResident(residentId, limit) }

  /** How many alerts opened for a resident in [from, to) (window summaries report it). */
  openedBetween (residentId: string, from: number, to: number): number { return this.store.openedBetween(residentId, from, to) }

  get (alertId: string): Alert | undefined { return this.store.get(alertId) }

  history (alertId: string): { at: number, state: string, actor: string }[] { return this.store.history(alertId) }

  /** The append-only log of alert state changes after position `after`, oldest first (the InfluxDB export). */
  eventsAfter (after: number, limit: number): AlertEvent[] { return this.store.eventsAfter(after, limit) }
}
