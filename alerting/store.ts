import { addColumns, atomically, migrate, type DB, type Migration } from '../core/index.ts'
import type { Detail } from './engine.ts'
import type { RuleLife } from './lifecycle.ts'
import type { Concern, Severity } from './ruleset.ts'
import { languageOf, type Language } from './messages.ts'

/**
 * open → acknowledged → resolved is the lifecycle driven by readings; `withdrawn` and
 * `superseded` end an alert whose standard was taken back or replaced (never "resolved"),
 * `recorded` is a verdict on a reading too old to be anything but history.
 */
export type AlertState = 'open' | 'acknowledged' | 'resolved' | 'withdrawn' | 'superseded' | 'recorded'

export interface Alert {
  id: string
  residentId: string
  ruleSetId: string
  ruleSetVersion: string
  ruleId: string
  ruleKey: string
  concern: Concern
  severity: Severity
  state: AlertState
  /** wall-clock time it opened */
  openedAt: number
  acknowledgedAt: number | null
  acknowledgedBy: string | null
  resolvedAt: number | null
  /** in the resident's language when it was last sent; `messages` has every language */
  message: string
  messages: Record<Language, string>
  language: Language
  /** the reading it is about: the one that opened it, or the one that made it worse */
  reading: { deviceId: string, seq: number, ts: number } | null
  /** the first reading of its episode in reading time (a late reading may move it earlier) */
  firstReading: { deviceId: string, seq: number, ts: number } | null
  detail: Detail
  escalatedAt: number | null
  /** opened by a reading that arrived later than the live horizon, not yet confirmed by a newer one */
  historic: boolean
  /** held open as flapping: how often it came back */
  flapCount: number
  /** why it ended, when it ended otherwise than by readings (withdrawn, superseded by version X) */
  endedReason: string | null
  /** reading time of the first reading back in range, from which the hold-down ran (a resolved alert) */
  clearedFrom: number | null
  /** when, unacknowledged, it reached the coordination centre's duty desk (the step before the hospital) */
  deskAt: number | null
  /** when, unacknowledged, it reached the resident's followers (the step before the duty desk) */
  followersAt: number | null
  /** the coordination centre's staff member handling it (the worklist) */
  assignedTo: string | null
  /** a person closed it (withdrawn criticals stay in view until then) */
  closedAt: number | null
  closedBy: string | null
}

export interface AlertEvent { position: number, at: number, state: string, alertId: string, severity: Severity, ruleId: string, residentId: string }

export interface Preferences {
  timeZone: string | null
  quietHours: { start: string, end: string } | null
  /** concern -> until (wall clock) */
  snoozes: Record<string, number>
}

interface AlertRow {
  id: string, resident_id: string, rule_set_id: string, rule_set_version: string, rule_id: string, rule_key: string, severity: Severity, state: AlertState,
  opened_at: number, resolved_at: number | null, ack_at: number | null, ack_by: string | null, message: string, messages: string, language: string,
  reading: string | null, detail: string, escalated_at: number | null, concern: string, historic: number, flap_count: number,
  ended_reason: string | null, closed_at: number | null, closed_by: string | null, clear_since: number | null, first_reading: string | null, desk_at: number | null, followers_at: number | null, assigned_to: string | null
}

const ACTIVE = "('open', 'acknowledged')"

/** Alerting's tables (component 'alerts'). Never edit a shipped step: add one. */
export const ALERT_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'alerts and their events, rule lifecycles, timelines, when each resident was last seen, care preferences and digests (rule_state is gone: timelines replaced it)',
    up: `
      CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, rule_set_id TEXT NOT NULL, rule_id TEXT NOT NULL,
        severity TEXT NOT NULL, state TEXT NOT NULL, opened_at INTEGER NOT NULL, resolved_at INTEGER,
        message TEXT NOT NULL, reading TEXT, delivered_at INTEGER);
      CREATE TABLE IF NOT EXISTS alert_events (alert_id TEXT NOT NULL, at INTEGER NOT NULL, state TEXT NOT NULL, actor TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events(alert_id);
      CREATE TABLE IF NOT EXISTS rule_life (resident_id TEXT NOT NULL, rule_key TEXT NOT NULL, life TEXT NOT NULL, PRIMARY KEY (resident_id, rule_key)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS alert_timelines (resident_id TEXT PRIMARY KEY, readings TEXT NOT NULL, rule_state TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS resident_seen (resident_id TEXT PRIMARY KEY, last_ts INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS alert_preferences (resident_id TEXT PRIMARY KEY, time_zone TEXT, quiet_start TEXT, quiet_end TEXT, snoozes TEXT NOT NULL DEFAULT '{}') WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS alert_digest (resident_id TEXT NOT NULL, alert_id TEXT NOT NULL, at INTEGER NOT NULL, messages TEXT NOT NULL, PRIMARY KEY (resident_id, alert_id)) WITHOUT ROWID;
      DROP TABLE IF EXISTS rule_state;`,
  },
  {
    version: 2,
    why: 'the alert columns added since the first alerts table (rule-set versions, acknowledgement, escalation, messages per language, concern, flapping, withdrawal and closing); already there on databases whose older code added them',
    up: addColumns('alerts', {
      rule_set_version: "TEXT NOT NULL DEFAULT ''", rule_key: "TEXT NOT NULL DEFAULT ''", ack_at: 'INTEGER', ack_by: 'TEXT',
      clear_since: 'INTEGER', last_notified_at: 'INTEGER', escalated_at: 'INTEGER', messages: "TEXT NOT NULL DEFAULT '{}'",
      language: "TEXT NOT NULL DEFAULT 'en'", detail: "TEXT NOT NULL DEFAULT '{}'", concern: "TEXT NOT NULL DEFAULT 'other'",
      historic: 'INTEGER NOT NULL DEFAULT 0', flap_count: 'INTEGER NOT NULL DEFAULT 0', ended_reason: 'TEXT', closed_at: 'INTEGER', closed_by: 'TEXT',
      escalate_from: 'INTEGER', announce_at: 'INTEGER', first_reading: 'TEXT',
    }),
  },
  {
    version: 3,
    why: 'indexes for a resident\'s alerts, the active ones (alerts_active2 replaces alerts_active), the attention list and undelivered alerts',
    up: `
      CREATE INDEX IF NOT EXISTS alerts_resident ON alerts(resident_id, opened_at);
      DROP INDEX IF EXISTS alerts_active;
      CREATE INDEX IF NOT EXISTS alerts_active2 ON alerts(state) WHERE state IN ${ACTIVE};
      CREATE INDEX IF NOT EXISTS alerts_attention ON alerts(closed_at) WHERE state IN ('withdrawn', 'superseded') AND severity = 'critical' AND closed_at IS NULL;
      CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(delivered_at) WHERE delivered_at IS NULL;`,
  },
  {
    version: 4,
    why: 'the escalation chain: when an unacknowledged alert reached the coordination centre\'s duty desk',
    up: addColumns('alerts', { desk_at: 'INTEGER' }),
  },
  {
    version: 5,
    why: 'followers: when an unacknowledged alert reached them, and their notices (kept until the broker took them, so a crash re-sends instead of losing one)',
    up: (db) => {
      addColumns('alerts', { followers_at: 'INTEGER' })(db)
      db.exec(`
        CREATE TABLE IF NOT EXISTS follower_notices (
          id INTEGER PRIMARY KEY, follower_id TEXT NOT NULL, alert_id TEXT NOT NULL, kind TEXT NOT NULL,
          at INTEGER NOT NULL, body TEXT NOT NULL, delivered_at INTEGER);
        CREATE INDEX IF NOT EXISTS follower_notices_undelivered ON follower_notices(id) WHERE delivered_at IS NULL;
        CREATE INDEX IF NOT EXISTS follower_notices_alert ON follower_notices(alert_id);`)
    },
  },
  {
    version: 6,
    why: 'the coordination centre\'s worklist: who handles an alert, and their notes',
    up: (db) => {
      addColumns('alerts', { assigned_to: 'TEXT' })(db)
      db.exec('CREATE TABLE IF NOT EXISTS alert_notes (alert_id TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL, text TEXT NOT NULL); CREATE INDEX IF NOT EXISTS alert_notes_alert ON alert_notes(alert_id);')
    },
  },
  {
    version: 7,
    why: 'timelines are checkpointed a few residents at a time (a checkpoint of every resident at once stalled the event loop for tens of ms): each row says up to which spool record its timeline holds',
    up: addColumns('alert_timelines', { pos: 'INTEGER NOT NULL DEFAULT 0' }),
  },
]

/**
 * What a node needs besides the alert itself to go on with it where another node left it
 * (cluster mode: the resident's partition moved): when it was last sent, from when its
 * escalation chain counts, when a quiet opening is announced, whether the broker took it.
 */
export interface AlertHandover { lastNotifiedAt: number | null, escalateFrom: number | null, announceAt: number | null, deliveredAt: number | null }

/**
 * Cluster mode: a resident's care preferences (time zone, quiet hours, snoozes) are set through
 * any node and read by the node judging the resident, so they are replicated with the registry
 * (registry/replica.ts), keyed by resident.
 */
export const ALERT_PREFERENCES_REPLICA = { table: 'alert_preferences', key: ['resident_id'] } as const

/** A note a staff member added to an alert (the worklist). */
export interface AlertNote { at: number, actor: string, text: string }

/** A message to a follower about one of the resident's alerts: a copy as it happens, or the escalation step. */
export interface FollowerNotice { id: number, followerId: string, alertId: string, kind: 'alert' | 'escalation', at: number, body: unknown }

/** Alerting's tables, and nothing but SQL. */
export class AlertStore {
  private readonly s
  constructor (private readonly db: DB) {
    migrate(db, 'alerts', ALERT_MIGRATIONS)
    this.s = {
      insert: db.prepare(`INSERT INTO alerts (id, resident_id, rule_set_id, rule_set_version, rule_id, rule_key, concern, severity, state, opened_at, message, messages, language, reading, first_reading, detail, historic, flap_count, last_notified_at, escalate_from, delivered_at)
        VALUES (@id, @residentId, @ruleSetId, @ruleSetVersion, @ruleId, @ruleKey, @concern, @severity, @state, @openedAt, @message, @messages, @language, @reading, @firstReading, @detail, @historic, @flapCount, @openedAt, @escalateFrom, @openedAt)`),
      update: db.prepare(`UPDATE alerts SET rule_set_id = @ruleSetId, rule_set_version = @ruleSetVersion, rule_id = @ruleId, rule_key = @ruleKey, severity = @severity, state = @state, resolved_at = @resolvedAt,
        ack_at = @acknowledgedAt, ack_by = @acknowledgedBy, message = @message, messages = @messages, language = @language, detail = @detail, reading = @reading, first_reading = @firstReading, escalated_at = @escalatedAt,
        historic = @historic, flap_count = @flapCount, ended_reason = @endedReason, clear_since = @clearedFrom, desk_at = @deskAt, followers_at = @followersAt, assigned_to = @assignedTo, closed_at = @closedAt, closed_by = @closedBy, escalate_from = @escalateFrom WHERE id = @id`),
      pending: db.prepare('UPDATE alerts SET delivered_at = NULL, last_notified_at = ? WHERE id = ?'),
      announceAt: db.prepare('UPDATE alerts SET announce_at = ? WHERE id = ?'),
      event: db.prepare('INSERT INTO alert_events (alert_id, at, state, actor) VALUES (?, ?, ?, ?)'),
      events: db.prepare<[string], { at: number, state: string, actor: string }>('SELECT at, state, actor FROM alert_events WHERE alert_id = ? ORDER BY rowid'),
      eventsAfter: db.prepare<[number, number], AlertEvent>(
        'SELECT e.rowid AS position, e.at, e.state, e.alert_id AS alertId, a.severity, a.rule_id AS ruleId, a.resident_id AS residentId FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.rowid > ? ORDER BY e.rowid LIMIT ?'),
      delivered: db.prepare('UPDATE alerts SET delivered_at = ? WHERE id = ?'),
      active: db.prepare<[], AlertRow & { last_notified_at: number | null, escalate_from: number | null, announce_at: number | null }>(`SELECT * FROM alerts WHERE state IN ${ACTIVE}`),
      attention: db.prepare<[], AlertRow>("SELECT * FROM alerts WHERE state IN ('withdrawn', 'superseded') AND severity = 'critical' AND closed_at IS NULL"),
      byId: db.prepare<[string], AlertRow>('SELECT * FROM alerts WHERE id = ?'),
      undelivered: db.prepare<[], AlertRow>('SELECT * FROM alerts WHERE delivered_at IS NULL ORDER BY opened_at'),
      forResident: db.prepare<[string, number], AlertRow>('SELECT * FROM alerts WHERE resident_id = ? ORDER BY opened_at DESC, rowid DESC LIMIT ?'),
      lives: db.prepare<[string], { rule_key: string, life: string }>('SELECT rule_key, life FROM rule_life WHERE resident_id = ?'),
      saveLife: db.prepare('INSERT INTO rule_life (resident_id, rule_key, life) VALUES (?, ?, ?) ON CONFLICT(resident_id, rule_key) DO UPDATE SET life = excluded.life'),
      deleteLife: db.prepare('DELETE FROM rule_life WHERE resident_id = ? AND rule_key = ?'),
      timeline: db.prepare<[string], { readings: string, rule_state: string, pos: number }>('SELECT readings, rule_state, pos FROM alert_timelines WHERE resident_id = ?'),
      saveTimeline: db.prepare('INSERT INTO alert_timelines (resident_id, readings, rule_state, pos) VALUES (?, ?, ?, ?) ON CONFLICT(resident_id) DO UPDATE SET readings = excluded.readings, rule_state = excluded.rule_state, pos = excluded.pos'),
      seen: db.prepare('INSERT INTO resident_seen (resident_id, last_ts) VALUES (?, ?) ON CONFLICT(resident_id) DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)'),
      allSeen: db.prepare<[], { resident_id: string, last_ts: number }>('SELECT resident_id, last_ts FROM resident_seen'),
      openedBetween: db.prepare<[string, number, number], { n: number }>("SELECT count(*) AS n FROM alerts WHERE resident_id = ? AND opened_at >= ? AND opened_at < ? AND state != 'recorded'"),
      prefs: db.prepare<[string], { time_zone: string | null, quiet_start: string | null, quiet_end: string | null, snoozes: string }>('SELECT time_zone, quiet_start, quiet_end, snoozes FROM alert_preferences WHERE resident_id = ?'),
      savePrefs: db.prepare('INSERT INTO alert_preferences (resident_id, time_zone, quiet_start, quiet_end, snoozes) VALUES (?, ?, ?, ?, ?) ON CONFLICT(resident_id) DO UPDATE SET time_zone = excluded.time_zone, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, snoozes = excluded.snoozes'),
      addDigest: db.prepare('INSERT OR IGNORE INTO alert_digest (resident_id, alert_id, at, messages) VALUES (?, ?, ?, ?)'),
      dropDigest: db.prepare('DELETE FROM alert_digest WHERE resident_id = ? AND alert_id = ?'),
      digestResidents: db.prepare<[], { resident_id: string }>('SELECT DISTINCT resident_id FROM alert_digest'),
      digestOf: db.prepare<[string], { alert_id: string, at: number, messages: string }>('SELECT alert_id, at, messages FROM alert_digest WHERE resident_id = ? ORDER BY at'),
      clearDigest: db.prepare('DELETE FROM alert_digest WHERE resident_id = ?'),
      addNote: db.prepare('INSERT INTO alert_notes (alert_id, at, actor, text) VALUES (?, ?, ?, ?)'),
      notes: db.prepare<[string], AlertNote>('SELECT at, actor, text FROM alert_notes WHERE alert_id = ? ORDER BY rowid'),
      addNotice: db.prepare('INSERT INTO follower_notices (follower_id, alert_id, kind, at, body) VALUES (?, ?, ?, ?, ?)'),
      noticeDelivered: db.prepare('UPDATE follower_notices SET delivered_at = ? WHERE id = ?'),
      undeliveredNotices: db.prepare<[], { id: number, follower_id: string, alert_id: string, kind: 'alert' | 'escalation', at: number, body: string }>('SELECT * FROM follower_notices WHERE delivered_at IS NULL ORDER BY id'),
      handover: db.prepare<[string], { last_notified_at: number | null, escalate_from: number | null, announce_at: number | null, delivered_at: number | null }>('SELECT last_notified_at, escalate_from, announce_at, delivered_at FROM alerts WHERE id = ?'),
      setHandover: db.prepare('UPDATE alerts SET last_notified_at = ?, escalate_from = ?, announce_at = ?, delivered_at = ? WHERE id = ?'),
      withState: db.prepare<[], { resident_id: string }>('SELECT resident_id FROM rule_life UNION SELECT resident_id FROM alert_timelines'),
      forgetLives: db.prepare('DELETE FROM rule_life WHERE resident_id = ?'),
      forgetTimeline: db.prepare('DELETE FROM alert_timelines WHERE resident_id = ?'),
      noticesOf: db.prepare<[string], { id: number, follower_id: string, alert_id: string, kind: 'alert' | 'escalation', at: number, body: string, delivered_at: number | null }>('SELECT * FROM follower_notices WHERE alert_id = ? ORDER BY id'),
    }
  }

  insert (a: Alert, escalateFrom: number | null): void {
    this.s.insert.run({
      ...a, messages: JSON.stringify(a.messages), reading: JSON.stringify(a.reading), firstReading: JSON.stringify(a.firstReading), detail: JSON.stringify(a.detail), historic: a.historic ? 1 : 0, escalateFrom,
    })
  }

  save (a: Alert, escalateFrom: number | null): void {
    this.s.update.run({
      id: a.id, ruleSetId: a.ruleSetId, ruleSetVersion: a.ruleSetVersion, ruleId: a.ruleId, ruleKey: a.ruleKey, severity: a.severity, state: a.state, resolvedAt: a.resolvedAt,
      acknowledgedAt: a.acknowledgedAt, acknowledgedBy: a.acknowledgedBy, message: a.message, messages: JSON.stringify(a.messages), language: a.language,
      detail: JSON.stringify(a.detail), reading: JSON.stringify(a.reading), firstReading: JSON.stringify(a.firstReading), escalatedAt: a.escalatedAt, historic: a.historic ? 1 : 0, flapCount: a.flapCount,
      endedReason: a.endedReason, closedAt: a.closedAt, closedBy: a.closedBy, escalateFrom, clearedFrom: a.clearedFrom, deskAt: a.deskAt, followersAt: a.followersAt, assignedTo: a.assignedTo,
    })
  }

  handover (id: string): AlertHandover | undefined {
    const r = this.s.handover.get(id)
    return r && { lastNotifiedAt: r.last_notified_at, escalateFrom: r.escalate_from, announceAt: r.announce_at, deliveredAt: r.delivered_at }
  }

  /** Writes an alert as another node left it (inserted, or over what this node had of it). */
  adopt (a: Alert, h: AlertHandover): void {
    if (this.s.byId.get(a.id)) this.save(a, h.escalateFrom)
    else this.insert(a, h.escalateFrom)
    this.s.setHandover.run(h.lastNotifiedAt, h.escalateFrom, h.announceAt, h.deliveredAt, a.id)
  }

  /** Residents with a saved timeline or rule lifecycle. */
  residentsWithState (): string[] { return this.s.withState.all().map((r) => r.resident_id) }

  /** Drops a resident's saved timeline and rule lifecycles (another node judged it since). */
  forget (residentId: string): void { this.s.forgetLives.run(residentId); this.s.forgetTimeline.run(residentId) }

  /** the alert is to be sent: until the broker took it, a restart sends it again */
  pending (id: string, at: number): void { this.s.pending.run(at, id) }
  announceAt (id: string, at: number | null): void { this.s.announceAt.run(at, id) }
  delivered (ids: readonly string[], at: number): void { for (const id of ids) this.s.delivered.run(at, id) }
  event (id: string, at: number, state: string, actor: string): void { this.s.event.run(id, at, state, actor) }
  history (id: string): { at: number, state: string, actor: string }[] { return this.s.events.all(id) }
  eventsAfter (after: number, limit: number): AlertEvent[] { return this.s.eventsAfter.all(after, limit) }
  active (): { alert: Alert, lastNotifiedAt: number, escalateFrom: number | null, announceAt: number | null }[] {
    return this.s.active.all().map((r) => ({ alert: fromRow(r), lastNotifiedAt: r.last_notified_at ?? r.opened_at, escalateFrom: r.escalate_from ?? (r.historic ? null : r.opened_at), announceAt: r.announce_at ?? null }))
  }

  attention (): Alert[] { return this.s.attention.all().map(fromRow) }
  get (id: string): Alert | undefined { const r = this.s.byId.get(id); return r && fromRow(r) }
  undelivered (): Alert[] { return this.s.undelivered.all().map(fromRow) }
  forResident (id: string, limit: number): Alert[] { return this.s.forResident.all(id, limit).map(fromRow) }
  openedBetween (id: string, from: number, to: number): number { return this.s.openedBetween.get(id, from, to)!.n }

  lives (residentId: string): Map<string, RuleLife> {
    return new Map(this.s.lives.all(residentId).map((r) => [r.rule_key, JSON.parse(r.life) as RuleLife]))
  }

  saveLife (residentId: string, ruleKey: string, life: RuleLife | undefined): void {
    if (!life || (!life.open && !life.cooldown && !(life.opens?.length))) this.s.deleteLife.run(residentId, ruleKey)
    else this.s.saveLife.run(residentId, ruleKey, JSON.stringify(life))
  }

  /** `pos`: the spool record up to which the timeline holds every reading (0 without a spool) */
  timeline (residentId: string): { readings: unknown[], ruleState: Record<string, unknown>, pos: number } | undefined {
    const r = this.s.timeline.get(residentId)
    return r && { readings: JSON.parse(r.readings) as unknown[], ruleState: JSON.parse(r.rule_state) as Record<string, unknown>, pos: r.pos }
  }

  /** Writes a timeline; returns the bytes written (what a checkpoint slice is measured in). */
  saveTimeline (residentId: string, readings: unknown[], ruleState: unknown, pos = 0): number {
    const tl = JSON.stringify(readings)
    const st = JSON.stringify(ruleState)
    this.s.saveTimeline.run(residentId, tl, st, pos)
    return tl.length + st.length
  }

  seen (residentId: string, ts: number): void { this.s.seen.run(residentId, ts) }
  allSeen (): Map<string, number> { return new Map(this.s.allSeen.all().map((r) => [r.resident_id, r.last_ts])) }

  preferences (residentId: string): Preferences {
    const r = this.s.prefs.get(residentId)
    if (!r) return { timeZone: null, quietHours: null, snoozes: {} }
    return { timeZone: r.time_zone, quietHours: r.quiet_start && r.quiet_end ? { start: r.quiet_start, end: r.quiet_end } : null, snoozes: JSON.parse(r.snoozes) as Record<string, number> }
  }

  savePreferences (residentId: string, p: Preferences): void {
    this.s.savePrefs.run(residentId, p.timeZone, p.quietHours?.start ?? null, p.quietHours?.end ?? null, JSON.stringify(p.snoozes))
  }

  /** a warning held in quiet hours, with its words at that moment, for the digest when they end */
  addDigest (residentId: string, alertId: string, at: number, messages: Record<Language, string>): void { this.s.addDigest.run(residentId, alertId, at, JSON.stringify(messages)) }
  dropDigest (residentId: string, alertId: string): void { this.s.dropDigest.run(residentId, alertId) }
  digestResidents (): string[] { return this.s.digestResidents.all().map((r) => r.resident_id) }
  takeDigest (residentId: string): { alertId: string, at: number, messages: Record<Language, string> }[] {
    const rows = this.s.digestOf.all(residentId).map((r) => ({ alertId: r.alert_id, at: r.at, messages: JSON.parse(r.messages) as Record<Language, string> }))
    this.s.clearDigest.run(residentId)
    return rows
  }

  addNote (alertId: string, n: AlertNote): void { this.s.addNote.run(alertId, n.at, n.actor, n.text) }
  notes (alertId: string): AlertNote[] { return this.s.notes.all(alertId) }

  /** a follower notice to send; until the broker took it, a restart sends it again */
  addNotice (n: Omit<FollowerNotice, 'id'>): FollowerNotice {
    const id = Number(this.s.addNotice.run(n.followerId, n.alertId, n.kind, n.at, JSON.stringify(n.body)).lastInsertRowid)
    return { id, ...n }
  }

  noticesDelivered (ids: readonly number[], at: number): void { for (const id of ids) this.s.noticeDelivered.run(at, id) }
  undeliveredNotices (): FollowerNotice[] { return this.s.undeliveredNotices.all().map((r) => ({ id: r.id, followerId: r.follower_id, alertId: r.alert_id, kind: r.kind, at: r.at, body: JSON.parse(r.body) as unknown })) }
  /** who of the followers was told what of an alert, and whether the broker took it */
  noticesOf (alertId: string): (FollowerNotice & { deliveredAt: number | null })[] { return this.s.noticesOf.all(alertId).map((r) => ({ id: r.id, followerId: r.follower_id, alertId: r.alert_id, kind: r.kind, at: r.at, body: JSON.parse(r.body) as unknown, deliveredAt: r.delivered_at })) }

  transaction<T> (fn: () => T): T { return atomically(this.db, fn) }
}

function fromRow (r: AlertRow): Alert {
  return {
    id: r.id, residentId: r.resident_id, ruleSetId: r.rule_set_id, ruleSetVersion: r.rule_set_version, ruleId: r.rule_id, ruleKey: r.rule_key || `${r.rule_set_id}/${r.rule_id}`,
    concern: (r.concern ?? 'other') as Concern, severity: r.severity, state: r.state, openedAt: r.opened_at, acknowledgedAt: r.ack_at, acknowledgedBy: r.ack_by, resolvedAt: r.resolved_at,
    message: r.message, messages: JSON.parse(r.messages) as Record<Language, string>, language: languageOf(r.language),
    reading: r.reading ? JSON.parse(r.reading) as Alert['reading'] : null,
    firstReading: r.first_reading ? JSON.parse(r.first_reading) as Alert['reading'] : r.reading ? JSON.parse(r.reading) as Alert['reading'] : null, detail: JSON.parse(r.detail) as Detail, escalatedAt: r.escalated_at,
    historic: r.historic === 1, flapCount: r.flap_count ?? 0, endedReason: r.ended_reason ?? null, clearedFrom: r.clear_since ?? null, deskAt: r.desk_at ?? null, followersAt: r.followers_at ?? null, assignedTo: r.assigned_to ?? null, closedAt: r.closed_at ?? null, closedBy: r.closed_by ?? null,
  }
}
