import { randomUUID } from 'node:crypto'
import { ensureColumns, VitalmeshError, type DB, type Logger, type Clock, type Reading } from '../core/index.ts'
import { RuleIndex, type CompiledRule, type Detail, type Override, type ResidentProfile, type RuleState, type Verdict } from './engine.ts'
import type { RuleSetDoc, Severity } from './ruleset.ts'
import { alertMessage, describe, languageOf, textIn, LANGUAGES, type Language } from './messages.ts'

/** The fields of a reading the engine looks at (any spool row carries them). */
export interface EvaluatedReading extends Reading { deviceId: string, residentId: string }

export type AlertState = 'open' | 'acknowledged' | 'resolved'

export interface Alert {
  id: string
  residentId: string
  ruleSetId: string
  ruleSetVersion: string
  ruleId: string
  ruleKey: string
  severity: Severity
  state: AlertState
  openedAt: number
  acknowledgedAt: number | null
  acknowledgedBy: string | null
  resolvedAt: number | null
  /** in the resident's language; `messages` has every language */
  message: string
  messages: Record<Language, string>
  language: Language
  reading: { deviceId: string, seq: number, ts: number } | null
  detail: Detail
  escalatedAt: number | null
}

export interface ResidentInfo extends ResidentProfile { language: string, hospitalId: string | null }

export interface HospitalEndpoint { url: string, token: string | null }

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
  options: { escalateAfterS: number, renotifyS: Record<Severity, number>, tickMs: number }
}

/** Delivers to residents; `delivered` is called once the broker took the message. */
export interface AlertNotifier {
  alert(a: Alert, delivered: () => void): void
  status(residentId: string, body: unknown): void
}

const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 }
const k = (residentId: string, ruleKey: string): string => `${residentId}\u0000${ruleKey}`

interface Meta { s: RuleState, cooldownUntil?: number }
interface Tx { notify: Map<string, Alert>, dirty: Set<string>, seen: Map<string, number>, residents: Set<string> }

/**
 * The alert lifecycle: at most one active alert per resident and rule, open →
 * acknowledged → resolved, hold-down and hysteresis before clearing, cool-down
 * against flapping, re-notification, escalation of unacknowledged critical alerts to the
 * resident's hospital. It takes part in the spool's commit, so a reading, the engine
 * state it changed and the alert it opened are durable together.
 */
export class AlertBook {
  private open = new Map<string, Alert>()
  /** rule state per resident, then per rule key: two lookups by reference, no key string per rule and reading */
  private meta = new Map<string, Map<string, Meta>>()
  /** open alerts per resident: a reading of a resident with none skips the lookup of each rule's open alert */
  private openPer = new Map<string, number>()
  private lastSeen = new Map<string, number>()
  private profiles = new Map<string, ResidentInfo | null>()
  /** alert id -> since when its condition has been false (hold-down running) */
  private clearing = new Map<string, number>()
  /** alert id -> when it was last sent */
  private lastNotified = new Map<string, number>()
  private index: RuleIndex
  private readonly s
  private deliveredPending: string[] = []
  private deliveredTimer: NodeJS.Timeout | undefined
  private tickTimer: NodeJS.Timeout | undefined
  private notifier: AlertNotifier = { alert: () => {}, status: () => {} }
  readonly stats = { opened: 0, resolved: 0, acknowledged: 0, suppressed: 0, escalated: 0, renotified: 0 }
  private readonly log: Logger

  constructor (private readonly d: AlertingDeps) {
    const db = d.db
    this.log = d.logger
    db.exec(`
      CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, rule_set_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, opened_at INTEGER NOT NULL, resolved_at INTEGER,
        message TEXT NOT NULL, reading TEXT, delivered_at INTEGER);
      CREATE TABLE IF NOT EXISTS alert_events (alert_id TEXT NOT NULL, at INTEGER NOT NULL, state TEXT NOT NULL, actor TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events(alert_id);
      CREATE TABLE IF NOT EXISTS rule_state (resident_id TEXT NOT NULL, rule_key TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (resident_id, rule_key)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS resident_seen (resident_id TEXT PRIMARY KEY, last_ts INTEGER NOT NULL) WITHOUT ROWID;
    `)
    ensureColumns(db, 'alerts', {
      rule_set_version: "TEXT NOT NULL DEFAULT ''", rule_key: "TEXT NOT NULL DEFAULT ''", ack_at: 'INTEGER', ack_by: 'TEXT',
      clear_since: 'INTEGER', last_notified_at: 'INTEGER', escalated_at: 'INTEGER', messages: "TEXT NOT NULL DEFAULT '{}'",
      language: "TEXT NOT NULL DEFAULT 'en'", detail: "TEXT NOT NULL DEFAULT '{}'",
    })
    db.exec(`
      CREATE INDEX IF NOT EXISTS alerts_resident ON alerts(resident_id, opened_at);
      CREATE INDEX IF NOT EXISTS alerts_active ON alerts(state) WHERE state != 'resolved';
      CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(delivered_at) WHERE delivered_at IS NULL;
    `)
    this.s = {
      insert: db.prepare(`INSERT INTO alerts (id, resident_id, rule_set_id, rule_set_version, rule_id, rule_key, severity, state, opened_at, message, messages, language, reading, detail, last_notified_at)
        VALUES (@id, @residentId, @ruleSetId, @ruleSetVersion, @ruleId, @ruleKey, @severity, @state, @openedAt, @message, @messages, @language, @reading, @detail, @openedAt)`),
      update: db.prepare(`UPDATE alerts SET severity = @severity, state = @state, resolved_at = @resolvedAt, ack_at = @acknowledgedAt, ack_by = @acknowledgedBy,
        message = @message, messages = @messages, detail = @detail, clear_since = @clearSince, escalated_at = @escalatedAt, delivered_at = NULL WHERE id = @id`),
      clearSince: db.prepare('UPDATE alerts SET clear_since = ? WHERE id = ?'),
      notified: db.prepare('UPDATE alerts SET last_notified_at = ?, delivered_at = NULL WHERE id = ?'),
      event: db.prepare('INSERT INTO alert_events (alert_id, at, state, actor) VALUES (?, ?, ?, ?)'),
      events: db.prepare<[string], { at: number, state: string, actor: string }>('SELECT at, state, actor FROM alert_events WHERE alert_id = ? ORDER BY rowid'),
      eventsAfter: db.prepare<[number, number], AlertEvent>(
        'SELECT e.rowid AS position, e.at, e.state, e.alert_id AS alertId, a.severity, a.rule_id AS ruleId, a.resident_id AS residentId FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?'),
      delivered: db.prepare('UPDATE alerts SET delivered_at = ? WHERE id = ?'),
      active: db.prepare<[], AlertRow>("SELECT * FROM alerts WHERE state != 'resolved'"),
      byId: db.prepare<[string], AlertRow>('SELECT * FROM alerts WHERE id = ?'),
      undelivered: db.prepare<[], AlertRow>('SELECT * FROM alerts WHERE delivered_at IS NULL ORDER BY opened_at'),
      forResident: db.prepare<[string, number], AlertRow>('SELECT * FROM alerts WHERE resident_id = ? ORDER BY opened_at DESC, rowid DESC LIMIT ?'),
      states: db.prepare<[string], { rule_key: string, state: string }>('SELECT rule_key, state FROM rule_state WHERE resident_id = ?'),
      saveState: db.prepare('INSERT INTO rule_state (resident_id, rule_key, state) VALUES (?, ?, ?) ON CONFLICT(resident_id, rule_key) DO UPDATE SET state = excluded.state'),
      seen: db.prepare('INSERT INTO resident_seen (resident_id, last_ts) VALUES (?, ?) ON CONFLICT(resident_id) DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)'),
      allSeen: db.prepare<[], { resident_id: string, last_ts: number }>('SELECT resident_id, last_ts FROM resident_seen'),
      openedBetween: db.prepare<[string, number, number], { n: number }>('SELECT count(*) AS n FROM alerts WHERE resident_id = ? AND opened_at >= ? AND opened_at < ?'),
    }
    this.index = this.buildIndex()
    this.reload()
  }

  private buildIndex (): RuleIndex {
    return new RuleIndex(this.d.activeRuleSets(), (id) => this.d.overrides(id))
  }

  /** (Re)loads what the engine keeps in memory from the database. */
  private reload (): void {
    this.open = new Map()
    this.openPer = new Map()
    this.meta = new Map()
    this.clearing = new Map()
    this.lastNotified = new Map()
    for (const row of this.s.active.all()) {
      const a = fromRow(row)
      this.setOpen(a)
      if (row.clear_since !== null) this.clearing.set(a.id, row.clear_since)
      this.lastNotified.set(a.id, row.last_notified_at ?? row.opened_at)
    }
    this.lastSeen = new Map(this.s.allSeen.all().map((r) => [r.resident_id, r.last_ts]))
  }

  setNotifier (n: AlertNotifier): void { this.notifier = n }

  /** The active rule sets or a resident's overrides or profile changed. */
  rulesChanged (residentId?: string): void {
    if (residentId) { this.index.forget(residentId); this.profiles.delete(residentId) } else { this.index = this.buildIndex(); this.profiles.clear() }
  }

  get activeRuleSets (): readonly RuleSetDoc[] { return this.index.ruleSets }

  private profile (residentId: string): ResidentInfo | undefined {
    let p = this.profiles.get(residentId)
    if (p === undefined) { p = this.d.resident(residentId) ?? null; this.profiles.set(residentId, p) }
    return p ?? undefined
  }

  private setOpen (a: Alert): void {
    this.open.set(k(a.residentId, a.ruleKey), a)
    this.openPer.set(a.residentId, (this.openPer.get(a.residentId) ?? 0) + 1)
  }

  /** A resident's rule states, loaded from the database on first use. */
  private metasOf (residentId: string): Map<string, Meta> {
    let metas = this.meta.get(residentId)
    if (!metas) {
      metas = new Map()
      for (const row of this.s.states.all(residentId)) metas.set(row.rule_key, JSON.parse(row.state) as Meta)
      this.meta.set(residentId, metas)
    }
    return metas
  }

  private metaOf (residentId: string, ruleKey: string, metas = this.metasOf(residentId)): Meta {
    let m = metas.get(ruleKey)
    if (!m) { m = { s: {} }; metas.set(ruleKey, m) }
    return m
  }

  private newTx (): Tx { return { notify: new Map(), dirty: new Set(), seen: new Map(), residents: new Set() } }

  /** Evaluates the readings of one spool commit, inside its transaction. */
  prepare (rows: readonly EvaluatedReading[]): Tx {
    const tx = this.newTx()
    const now = this.d.clock.now()
    for (const r of rows) {
      const p = this.profile(r.residentId)
      if (!p) continue
      const metas = this.metasOf(r.residentId)
      for (const rule of this.index.rulesFor(p, now)) {
        const m = this.metaOf(r.residentId, rule.key, metas)
        const before = m.s.since
        const v = rule.evaluate(r, m.s)
        if (!v) continue
        const kind = rule.rule.kind
        if (kind === 'nOfM' || kind === 'rateOfChange' || kind === 'average' || (kind === 'sustained' && before !== m.s.since)) tx.dirty.add(k(r.residentId, rule.key))
        this.apply(v, rule, p, r.ts, { deviceId: r.deviceId, seq: r.seq, ts: r.ts }, tx)
      }
      if ((tx.seen.get(r.residentId) ?? 0) < r.ts) tx.seen.set(r.residentId, r.ts)
    }
    this.write(tx)
    return tx
  }

  private write (tx: Tx): void {
    for (const key of tx.dirty) {
      const [residentId, ruleKey] = key.split('\u0000') as [string, string]
      this.s.saveState.run(residentId, ruleKey, JSON.stringify(this.meta.get(residentId)!.get(ruleKey)))
    }
    for (const [res, ts] of tx.seen) {
      this.s.seen.run(res, ts)
      if ((this.lastSeen.get(res) ?? 0) < ts) this.lastSeen.set(res, ts)
    }
  }

  commit (tx: Tx): void {
    for (const a of tx.notify.values()) this.notify(a)
    for (const res of tx.residents) this.publishStatus(res)
  }

  /** The transaction failed: what was changed in memory is not in the database, so reload. */
  rollback (): void {
    this.log.warn('alert state rolled back with a failed commit; reloading it from the database')
    this.reload()
  }

  private messages (rule: CompiledRule, v: { severity: Severity, detail: Detail }, resolved: boolean): Record<Language, string> {
    const out = {} as Record<Language, string>
    const r = rule.rule
    const catTitle = (lang: Language): string | undefined => {
      if (r.kind !== 'classification' || !v.detail.category) return undefined
      return textIn(r.categories.find((c) => c.id === v.detail.category)?.title ?? v.detail.category, lang)
    }
    for (const lang of LANGUAGES) out[lang] = alertMessage(textIn(r.title, lang), describe(v.detail, lang, catTitle(lang)), v.severity, lang, resolved)
    return out
  }

  private apply (v: Verdict, rule: CompiledRule, p: ResidentInfo, at: number, reading: Alert['reading'], tx: Tx): void {
    if (!v.trigger && !this.openPer.has(p.id)) return // nothing to open, nothing open to resolve
    const key = k(p.id, rule.key)
    const cur = this.open.get(key)
    const now = this.d.clock.now()
    if (!cur) {
      if (!v.trigger) return
      const m = this.metaOf(p.id, rule.key)
      if (m.cooldownUntil !== undefined && at < m.cooldownUntil) { this.stats.suppressed++; return }
      const lang = languageOf(p.language)
      const messages = this.messages(rule, v, false)
      const a: Alert = {
        id: randomUUID(), residentId: p.id, ruleSetId: rule.ruleSetId, ruleSetVersion: rule.ruleSetVersion, ruleId: rule.rule.id, ruleKey: rule.key,
        severity: v.severity, state: 'open', openedAt: now, acknowledgedAt: null, acknowledgedBy: null, resolvedAt: null,
        message: messages[lang], messages, language: lang, reading, detail: v.detail, escalatedAt: null,
      }
      this.s.insert.run({ ...a, messages: JSON.stringify(messages), reading: JSON.stringify(reading), detail: JSON.stringify(v.detail) })
      this.s.event.run(a.id, now, 'open', 'engine')
      this.setOpen(a)
      this.lastNotified.set(a.id, now)
      this.stats.opened++
      tx.notify.set(a.id, a)
      tx.residents.add(p.id)
      return
    }
    const clearSince = this.clearing.get(cur.id) ?? null
    if (v.holds) {
      if (clearSince !== null) { this.clearing.delete(cur.id); this.s.clearSince.run(null, cur.id) }
      if (v.trigger && RANK[v.severity] > RANK[cur.severity]) {
        // worse than when it opened (e.g. stage 2 became crisis): tell the resident again, and ask for a new acknowledgement
        const messages = this.messages(rule, v, false)
        Object.assign(cur, { severity: v.severity, state: 'open', acknowledgedAt: null, acknowledgedBy: null, messages, message: messages[cur.language], detail: v.detail, reading })
        this.saveAlert(cur)
        this.s.event.run(cur.id, now, `severity:${v.severity}`, 'engine')
        tx.notify.set(cur.id, cur)
        tx.residents.add(p.id)
      }
      return
    }
    const since = clearSince ?? at
    if (clearSince === null) { this.clearing.set(cur.id, since); this.s.clearSince.run(since, cur.id) }
    if (at - since >= rule.rule.clear.holdDownS * 1000) this.resolve(cur, rule, p, at, tx)
  }

  private resolve (cur: Alert, rule: CompiledRule | undefined, p: { id: string }, at: number, tx: Tx): void {
    const now = this.d.clock.now()
    const messages = {} as Record<Language, string>
    for (const lang of LANGUAGES) messages[lang] = alertMessage(rule ? textIn(rule.rule.title, lang) : cur.ruleKey, '', cur.severity, lang, true)
    Object.assign(cur, { state: 'resolved', resolvedAt: now, messages, message: messages[cur.language] })
    this.saveAlert(cur)
    this.s.event.run(cur.id, now, 'resolved', 'engine')
    this.open.delete(k(p.id, cur.ruleKey))
    const n = (this.openPer.get(p.id) ?? 1) - 1
    if (n > 0) this.openPer.set(p.id, n); else this.openPer.delete(p.id)
    this.clearing.delete(cur.id)
    this.lastNotified.delete(cur.id)
    const m = this.metaOf(p.id, cur.ruleKey)
    const cooldown = rule?.rule.cooldownS ?? 0
    if (cooldown > 0) { m.cooldownUntil = at + cooldown * 1000; tx.dirty.add(k(p.id, cur.ruleKey)) }
    this.stats.resolved++
    tx.notify.set(cur.id, cur)
    tx.residents.add(p.id)
  }

  private saveAlert (a: Alert): void {
    this.s.update.run({
      id: a.id, severity: a.severity, state: a.state, resolvedAt: a.resolvedAt, acknowledgedAt: a.acknowledgedAt, acknowledgedBy: a.acknowledgedBy,
      message: a.message, messages: JSON.stringify(a.messages), detail: JSON.stringify(a.detail),
      clearSince: this.clearing.get(a.id) ?? null, escalatedAt: a.escalatedAt,
    })
  }

  /**
   * The engine's own timer: no-data rules, hold-downs that ran out without new readings,
   * re-notification of unacknowledged alerts and escalation of critical ones.
   */
  tick (): void {
    const now = this.d.clock.now()
    const tx = this.newTx()
    try {
      this.d.db.transaction(() => {
        if (this.index.hasNoData) for (const [res, last] of this.lastSeen) {
          const p = this.profile(res)
          if (!p) continue
          for (const rule of this.index.rulesFor(p, now)) {
            if (rule.rule.kind !== 'noData') continue
            const silentForS = Math.max(0, Math.round((now - last) / 1000))
            const silent = now - last >= rule.rule.forS * 1000
            this.apply({ key: rule.key, rule, trigger: silent, holds: silent, severity: rule.rule.severity, detail: { values: {}, silentForS } }, rule, p, now, null, tx)
          }
        }
        for (const a of [...this.open.values()]) {
          const p = this.profile(a.residentId)
          const rule = p ? this.index.rulesFor(p, now).find((c) => c.key === a.ruleKey) : undefined
          if (!rule) {
            // its rule set was deactivated or no longer applies to the resident: nothing would ever clear it
            this.resolve(a, undefined, { id: a.residentId }, now, tx)
            continue
          }
          const since = this.clearing.get(a.id)
          if (since !== undefined && now - since >= rule.rule.clear.holdDownS * 1000) {
            this.resolve(a, rule, { id: a.residentId }, now, tx)
            continue
          }
          if (a.state !== 'open') continue
          const every = this.d.options.renotifyS[a.severity] * 1000
          const last = this.lastNotified.get(a.id) ?? a.openedAt
          if (every > 0 && now - last >= every && !tx.notify.has(a.id)) {
            this.lastNotified.set(a.id, now)
            this.s.notified.run(now, a.id)
            this.stats.renotified++
            tx.notify.set(a.id, a)
          }
          if (a.severity === 'critical' && a.escalatedAt === null && now - a.openedAt >= this.d.options.escalateAfterS * 1000) this.escalate(a, now)
        }
        this.write(tx)
      })()
    } catch (err) {
      this.log.error({ err }, 'alert timer failed')
      this.reload()
      return
    }
    this.commit(tx)
  }

  private escalate (a: Alert, now: number): void {
    a.escalatedAt = now
    this.saveAlert(a)
    const p = this.profile(a.residentId)
    const endpoint = p?.hospitalId ? this.d.hospitalEndpoint(p.hospitalId) : undefined
    if (!endpoint) {
      this.s.event.run(a.id, now, 'escalation-skipped:no-hospital-endpoint', 'engine')
      this.log.warn({ alertId: a.id, residentId: a.residentId }, 'critical alert not acknowledged, but the resident has no hospital with a webhook')
      return
    }
    const body = JSON.stringify({
      type: 'vitalmesh.alert.escalated',
      reason: `critical alert not acknowledged within ${this.d.options.escalateAfterS} s`,
      hospitalId: p!.hospitalId,
      resident: { id: a.residentId },
      alert: { id: a.id, ruleKey: a.ruleKey, ruleSetVersion: a.ruleSetVersion, severity: a.severity, state: a.state, openedAt: new Date(a.openedAt).toISOString(), message: a.messages.en, detail: a.detail, reading: a.reading },
    })
    this.d.enqueueWebhook({ sink: 'hospital-escalation', url: endpoint.url, headers: endpoint.token ? { authorization: `Bearer ${endpoint.token}` } : {}, body, idempotencyKey: `escalation:${a.id}` })
    this.s.event.run(a.id, now, 'escalated', 'engine')
    this.stats.escalated++
  }

  /** A resident (or an operator) acknowledges an alert. Idempotent. */
  acknowledge (alertId: string, actor: string, residentId?: string): Alert {
    const row = this.s.byId.get(alertId)
    if (!row || (residentId !== undefined && row.resident_id !== residentId)) throw new VitalmeshError('VM_NOT_FOUND', `no alert ${alertId} for this resident`)
    const a = this.open.get(k(row.resident_id, row.rule_key))
    if (!a || a.id !== alertId || a.state !== 'open') return fromRow(row)
    const now = this.d.clock.now()
    const tx = this.newTx()
    this.d.db.transaction(() => {
      Object.assign(a, { state: 'acknowledged', acknowledgedAt: now, acknowledgedBy: actor })
      this.saveAlert(a)
      this.s.event.run(a.id, now, 'acknowledged', actor)
    })()
    this.stats.acknowledged++
    tx.notify.set(a.id, a)
    tx.residents.add(a.residentId)
    this.commit(tx)
    return a
  }

  private notify (a: Alert): void {
    this.notifier.alert(a, () => {
      this.deliveredPending.push(a.id)
      this.deliveredTimer ??= setTimeout(() => this.flushDelivered(), 50)
    })
  }

  private publishStatus (residentId: string): void {
    const active = [...this.open.values()].filter((a) => a.residentId === residentId)
      .map((a) => ({ id: a.id, ruleKey: a.ruleKey, severity: a.severity, state: a.state, openedAt: a.openedAt, message: a.message }))
    const worst = active.reduce<Severity | null>((w, a) => (w === null || RANK[a.severity] > RANK[w] ? a.severity : w), null)
    this.notifier.status(residentId, { residentId, worst, active, updatedAt: this.d.clock.now() })
  }

  flushDelivered (): void {
    if (this.deliveredTimer) clearTimeout(this.deliveredTimer)
    this.deliveredTimer = undefined
    const ids = this.deliveredPending
    if (ids.length === 0) return
    this.deliveredPending = []
    const now = this.d.clock.now()
    try {
      this.d.db.transaction(() => { for (const id of ids) this.s.delivered.run(now, id) })()
    } catch (err) {
      this.log.error({ err }, 'could not record alert delivery; the alerts will be re-sent after a restart')
    }
  }

  /** Re-sends the notifications a crash interrupted; an alert already delivered is not sent again. */
  resendUndelivered (): number {
    const rows = this.s.undelivered.all()
    for (const row of rows) this.notify(fromRow(row))
    if (rows.length) this.log.info({ count: rows.length }, 're-sending alerts whose delivery was interrupted')
    return rows.length
  }

  start (): void {
    const loop = (): void => { this.tick(); this.tickTimer = setTimeout(loop, this.d.options.tickMs) }
    this.tickTimer = setTimeout(loop, this.d.options.tickMs)
  }

  stop (): void {
    if (this.tickTimer) clearTimeout(this.tickTimer)
    this.tickTimer = undefined
    this.flushDelivered()
  }

  activeAlerts (residentId?: string): Alert[] {
    const all = [...this.open.values()]
    return residentId ? all.filter((a) => a.residentId === residentId) : all
  }

  forResident (residentId: string, limit = 100): Alert[] {
    return this.s.forResident.all(residentId, limit).map(fromRow)
  }

  /** How many alerts opened for a resident in [from, to) (window summaries report it). */
  openedBetween (residentId: string, from: number, to: number): number {
    return this.s.openedBetween.get(residentId, from, to)!.n
  }

  get (alertId: string): Alert | undefined {
    const row = this.s.byId.get(alertId)
    return row && fromRow(row)
  }

  history (alertId: string): { at: number, state: string, actor: string }[] {
    return this.s.events.all(alertId)
  }

  /**
   * The append-only log of alert state changes after position `after`, oldest first, for
   * consumers that copy it elsewhere with their own cursor (the InfluxDB export).
   */
  eventsAfter (after: number, limit: number): AlertEvent[] {
    return this.s.eventsAfter.all(after, limit)
  }
}

export interface AlertEvent { position: number, at: number, state: string, alertId: string, severity: Severity, ruleId: string, residentId: string }

interface AlertRow {
  id: string, resident_id: string, rule_set_id: string, rule_set_version: string, rule_id: string, rule_key: string, severity: Severity, state: AlertState,
  opened_at: number, resolved_at: number | null, ack_at: number | null, ack_by: string | null, message: string, messages: string, language: string,
  reading: string | null, detail: string, clear_since: number | null, last_notified_at: number | null, escalated_at: number | null
}

function fromRow (r: AlertRow): Alert {
  return {
    id: r.id, residentId: r.resident_id, ruleSetId: r.rule_set_id, ruleSetVersion: r.rule_set_version, ruleId: r.rule_id, ruleKey: r.rule_key || `${r.rule_set_id}/${r.rule_id}`,
    severity: r.severity, state: r.state, openedAt: r.opened_at, acknowledgedAt: r.ack_at, acknowledgedBy: r.ack_by, resolvedAt: r.resolved_at,
    message: r.message, messages: JSON.parse(r.messages) as Record<Language, string>, language: languageOf(r.language),
    reading: r.reading ? JSON.parse(r.reading) as Alert['reading'] : null, detail: JSON.parse(r.detail) as Detail, escalatedAt: r.escalated_at,
  }
}
