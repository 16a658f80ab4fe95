import { randomBytes, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'
import { type DB, type Migration, migrate, hashSecret, verifySecret, newSecret, digestToken, SCRYPT_COST, VitalmeshError } from '../core/index.ts'

/**
 * Followers: a family member or a community doctor a resident invited to receive its alerts.
 * A follower is an identity of its own (an API key for the console and live stream, an MQTT
 * username and password for an app), bound to one resident, and sees that resident's alerts
 * only, never its readings. The resident sees and removes its followers at any time.
 */
export const FOLLOWER_RELATIONS = ['family', 'community-doctor', 'carer', 'friend'] as const
/** where a follower is told: its MQTT topic (`followers/{id}/alerts`) and/or the live stream */
export const FOLLOWER_CHANNELS = ['mqtt', 'live'] as const
/**
 * Which of the resident's alerts a follower is told of as they happen: every one, warnings
 * and worse, criticals only, or only when the escalation chain reaches the followers (an
 * unacknowledged critical or lost contact). The escalation step reaches every follower.
 */
export const FOLLOWER_NOTIFY = ['all', 'warning', 'critical', 'escalations'] as const

/** Does a follower who chose `notify` want a copy of an alert of this severity as it happens? (The escalation step reaches every follower.) */
export function followerWantsCopy (notify: string, severity: string): boolean {
  if (notify === 'all') return true
  if (notify === 'warning') return severity === 'warning' || severity === 'critical'
  if (notify === 'critical') return severity === 'critical'
  return false
}

export const FollowerRelationSchema = z.enum(FOLLOWER_RELATIONS)
export const FollowerChannelsSchema = z.array(z.enum(FOLLOWER_CHANNELS)).max(FOLLOWER_CHANNELS.length)
export const FollowerNotifySchema = z.enum(FOLLOWER_NOTIFY)

export type FollowerRelation = typeof FOLLOWER_RELATIONS[number]
export type FollowerChannel = typeof FOLLOWER_CHANNELS[number]
export type FollowerNotify = typeof FOLLOWER_NOTIFY[number]

export interface FollowerRecord {
  id: string
  residentId: string
  /** as the resident named them ("my daughter") */
  name: string
  relation: FollowerRelation
  language: string
  channels: FollowerChannel[]
  notify: FollowerNotify
  status: 'invited' | 'active' | 'removed'
  invitedAt: number
  invitationExpiresAt: number | null
  acceptedAt: number | null
  removedAt: number | null
  removedBy: string | null
  /** the follower's API key (role `follower`, scope the follower's id) */
  apiKeyId: string | null
}

export interface FollowerPrincipal { kind: 'follower', id: string, residentId: string }

/** An invitation is valid this long (7 days): long enough to reach a relative, short enough not to linger. Project heuristic. */
export const INVITATION_TTL_MS = 7 * 86400_000

interface Row {
  id: string, resident_id: string, name: string, relation: FollowerRelation, language: string, channels: string, notify: FollowerNotify,
  invited_at: number, invite_digest: string | null, invite_expires_at: number | null, accepted_at: number | null,
  removed_at: number | null, removed_by: string | null, secret_hash: string | null, api_key_id: string | null
}

function record (r: Row): FollowerRecord {
  return {
    id: r.id, residentId: r.resident_id, name: r.name, relation: r.relation, language: r.language,
    channels: JSON.parse(r.channels) as FollowerChannel[], notify: r.notify,
    status: r.removed_at !== null ? 'removed' : r.accepted_at !== null ? 'active' : 'invited',
    invitedAt: r.invited_at, invitationExpiresAt: r.accepted_at === null ? r.invite_expires_at : null, acceptedAt: r.accepted_at,
    removedAt: r.removed_at, removedBy: r.removed_by, apiKeyId: r.api_key_id,
  }
}

/** What the registry lends this component: API keys, and whether an id is free in the shared MQTT username namespace. */
export interface FollowerKeys {
  addApiKey(role: 'follower', scope: string, label: string): string
  revokeApiKey(id: string): boolean
  idTaken(id: string): boolean
}

/**
 * The followers' table and their identities. Invitation codes and MQTT passwords are stored
 * as digests and hashes only, like every other secret.
 */
export class Followers {
  private readonly q
  constructor (private readonly db: DB, private readonly keys: FollowerKeys, private readonly now: () => number = Date.now) {
    migrate(db, 'followers', FOLLOWER_MIGRATIONS)
    this.q = {
      insert: db.prepare('INSERT INTO followers (id, resident_id, name, relation, language, channels, notify, invited_at, invite_digest, invite_expires_at, invited_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      get: db.prepare<[string], Row>('SELECT * FROM followers WHERE id = ?'),
      ofResident: db.prepare<[string], Row>('SELECT * FROM followers WHERE resident_id = ? ORDER BY invited_at, id'),
      active: db.prepare<[string], Row>('SELECT * FROM followers WHERE resident_id = ? AND accepted_at IS NOT NULL AND removed_at IS NULL ORDER BY accepted_at, id'),
      accept: db.prepare('UPDATE followers SET accepted_at = ?, invite_digest = NULL, invite_expires_at = NULL, secret_hash = ?, api_key_id = ?, language = coalesce(?, language), channels = coalesce(?, channels), notify = coalesce(?, notify) WHERE id = ? AND accepted_at IS NULL AND removed_at IS NULL'),
      prefs: db.prepare('UPDATE followers SET language = coalesce(?, language), channels = coalesce(?, channels), notify = coalesce(?, notify) WHERE id = ?'),
      remove: db.prepare('UPDATE followers SET removed_at = ?, removed_by = ?, invite_digest = NULL, secret_hash = NULL WHERE id = ? AND removed_at IS NULL'),
    }
  }

  /**
   * The resident invites someone: returns the follower (status `invited`) and the one-time
   * invitation code to pass on (shown once). The follower accepts it with `accept`.
   */
  invite (residentId: string, f: { name: string, relation: FollowerRelation, language?: string }, invitedBy: string): { follower: FollowerRecord, code: string } {
    let id: string
    do id = `fol-${randomBytes(5).toString('hex')}`
    while (this.keys.idTaken(id))
    const code = `vmi_${id}_${newSecret()}`
    const now = this.now()
    this.q.insert.run(id, residentId, f.name, f.relation, f.language ?? 'zh-CN', JSON.stringify(['mqtt', 'live']), 'critical', now, digestToken(code), now + INVITATION_TTL_MS, invitedBy)
    return { follower: this.get(id)!, code }
  }

  /**
   * The follower accepts: the code is used up, and the follower gets its API key and MQTT
   * password (shown once). An unknown, used, expired or withdrawn code gets VM_INVITATION_INVALID.
   */
  async accept (code: string, prefs: { language?: string, channels?: FollowerChannel[], notify?: FollowerNotify } = {}, recorded?: (f: FollowerRecord, keyId: string) => void): Promise<{ follower: FollowerRecord, apiKey: string, keyId: string, password: string }> {
    const m = /^vmi_(fol-[0-9a-f]{10})_[A-Za-z0-9_-]{32}$/.exec(code)
    const row = m ? this.q.get.get(m[1]!) : undefined
    const invalid = (): VitalmeshError => new VitalmeshError('VM_INVITATION_INVALID', 'this invitation code is unknown, already used, expired or withdrawn: ask the resident for a new one')
    const valid = (r: Row | undefined): r is Row & { invite_digest: string } => {
      if (!r || r.invite_digest === null || r.removed_at !== null || r.accepted_at !== null || (r.invite_expires_at ?? 0) <= this.now()) return false
      const a = Buffer.from(r.invite_digest, 'hex')
      const b = Buffer.from(digestToken(code), 'hex')
      return a.length === b.length && timingSafeEqual(a, b)
    }
    if (!valid(row)) throw invalid()
    const password = newSecret()
    const hash = await hashSecret(password, SCRYPT_COST.password)
    return this.db.transaction(() => {
      const now = this.q.get.get(row.id)
      if (!valid(now)) throw invalid() // accepted twice at once, or withdrawn while the password was hashed
      const apiKey = this.keys.addApiKey('follower', row.id, `follower of ${row.resident_id}`)
      const keyId = apiKey.split('_')[1]!
      this.q.accept.run(this.now(), hash, keyId, prefs.language ?? null, prefs.channels ? JSON.stringify(prefs.channels) : null, prefs.notify ?? null, row.id)
      const follower = this.get(row.id)!
      recorded?.(follower, keyId) // the audit entry, in the same transaction
      return { follower, apiKey, keyId, password }
    })()
  }

  get (id: string): FollowerRecord | undefined {
    const r = this.q.get.get(id)
    return r && record(r)
  }

  /** Every follower the resident invited, including removed ones (the resident's record of who could see its alerts). */
  ofResident (residentId: string): FollowerRecord[] { return this.q.ofResident.all(residentId).map(record) }

  /** Those who currently receive the resident's alerts. */
  active (residentId: string): FollowerRecord[] { return this.q.active.all(residentId).map(record) }

  /** The resident an active follower follows (a `follower` key's scope is the follower's id); undefined once removed. */
  residentOf (followerId: string): string | undefined {
    const r = this.q.get.get(followerId)
    return r && r.removed_at === null && r.accepted_at !== null ? r.resident_id : undefined
  }

  setPreferences (id: string, p: { language?: string, channels?: FollowerChannel[], notify?: FollowerNotify }): FollowerRecord {
    this.q.prefs.run(p.language ?? null, p.channels ? JSON.stringify(p.channels) : null, p.notify ?? null, id)
    return this.get(id)!
  }

  /**
   * Ends a follower (the resident removed it, or it left): its invitation, API key and MQTT
   * password stop working now. Returns whether anything changed; the caller ends its MQTT sessions.
   */
  remove (id: string, by: string): boolean {
    const r = this.q.get.get(id)
    if (!r || r.removed_at !== null) return false
    this.q.remove.run(this.now(), by, id)
    if (r.api_key_id) this.keys.revokeApiKey(r.api_key_id)
    return true
  }

  /** MQTT: a follower's username is its id. Undefined for any failure. */
  async authenticate (username: string, password: string): Promise<FollowerPrincipal | undefined> {
    const r = this.q.get.get(username)
    const ok = await verifySecret(password, r?.secret_hash ?? undefined)
    return ok && r && r.removed_at === null && r.secret_hash !== null ? { kind: 'follower', id: r.id, residentId: r.resident_id } : undefined
  }

  /** Still a follower (MQTT sessions of removed followers are ended by this check too). */
  isActive (id: string): boolean {
    const r = this.q.get.get(id)
    return r !== undefined && r.removed_at === null && r.accepted_at !== null
  }
}

/** The followers' table (component 'followers'). Never edit a shipped step: add one. */
export const FOLLOWER_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'followers of a resident: who, how they are told, their invitation (digest) and identity (MQTT password hash, API key id)',
    up: `
      CREATE TABLE IF NOT EXISTS followers (
        id TEXT PRIMARY KEY, resident_id TEXT NOT NULL, name TEXT NOT NULL, relation TEXT NOT NULL,
        language TEXT NOT NULL, channels TEXT NOT NULL, notify TEXT NOT NULL,
        invited_at INTEGER NOT NULL, invited_by TEXT NOT NULL, invite_digest TEXT, invite_expires_at INTEGER,
        accepted_at INTEGER, removed_at INTEGER, removed_by TEXT, secret_hash TEXT, api_key_id TEXT);
      CREATE INDEX IF NOT EXISTS followers_resident ON followers(resident_id);
      CREATE INDEX IF NOT EXISTS followers_api_key ON followers(api_key_id) WHERE api_key_id IS NOT NULL;`,
  },
]
