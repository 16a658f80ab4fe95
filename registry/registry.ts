import { randomBytes, timingSafeEqual } from 'node:crypto'
import { type DB, type Migration, migrate, addColumns, atomically, hashSecret, verifySecret, newSecret, digestToken, SCRYPT_COST, isValidId, VitalmeshError } from '../core/index.ts'
import { Followers, type FollowerPrincipal } from './followers.ts'

export type Role = 'operator' | 'resident' | 'hospital' | 'research' | 'region' | 'follower'

export interface DevicePrincipal { kind: 'device', id: string, deviceKey: number, residentId: string }
export interface ResidentPrincipal { kind: 'resident', id: string }
export type Principal = DevicePrincipal | ResidentPrincipal | FollowerPrincipal

export interface ApiKeyPrincipal { keyId: string, role: Role, scope: string | null }

export interface NewResident {
  id: string, name?: string, language?: string, region?: string
  birthYear?: number, conditions?: string[], hospitalId?: string
}

export interface ResidentRecord {
  id: string, name: string | null, language: string, region: string | null
  birthYear: number | null, conditions: string[], hospitalId: string | null, researchConsent: boolean
}
/**
 * What a hospital's FHIR endpoint receives: finished protocol reports, critical alerts (as Flags),
 * window statistics, every reading. The default is a few resources per patient per day.
 */
export const HOSPITAL_FEEDS = ['reports', 'alerts', 'summaries', 'measurements'] as const
export type HospitalFeed = typeof HOSPITAL_FEEDS[number]
export const DEFAULT_HOSPITAL_FEEDS: readonly HospitalFeed[] = ['reports', 'alerts']

export interface HospitalRecord {
  id: string, name: string, webhookUrl: string | null, webhookToken: string | null
  /** FHIR server base URL receiving summaries, and how vitalmesh authenticates to it */
  fhirUrl: string | null, fhirAuth: 'bearer' | 'hmac', fhirSecret: string | null
  /** what goes to fhirUrl */
  feeds: HospitalFeed[]
  /**
   * entries per transaction Bundle its FHIR server takes (null: the node's VITALMESH_FHIR_MAX_ENTRIES):
   * Medplum refuses a transaction with conditional entries beyond 8
   */
  fhirMaxEntries: number | null
}
export interface InstitutionRecord { id: string, name: string, pushUrl: string | null, token: string | null, pseudonymKey: string }
export interface OverrideRecord { residentId: string, ruleKey: string, params: { value?: number, min?: number, max?: number, forS?: number }, setBy: string, setAt: number }
export interface DeviceRecord { key: number, id: string, residentId: string, model: string | null, region: string | null, firmware: string | null, revoked: boolean, createdAt: number, lastSeenAt: number | null, online: boolean }

export interface NewDevice { id: string, residentId: string, model?: string, region?: string, firmware?: string }

export interface DeviceQuery { residentId?: string, region?: string, model?: string, afterId?: string, limit: number, includeRevoked?: boolean }

/** A device whose credentials changed (rotated or revoked) at `at`: its live sessions must end. */
export interface CredentialChange { id: string, at: number, revoked: boolean }

/**
 * Who may connect and what they are bound to: residents, their devices, API keys.
 * Device ids and resident ids share one namespace, because either may be an MQTT
 * username.
 */
export class Registry {
  private readonly q
  /** bumped by every change of a key or a resident's profile on this connection (other connections: SQLite's data_version) */
  private changes = 0
  private readonly dataVersion
  /** a resident's followers: identities of their own, bound to the resident (followers.ts) */
  readonly followers: Followers

  constructor (private readonly db: DB) {
    migrate(db, 'registry', REGISTRY_MIGRATIONS)
    this.followers = new Followers(db, {
      addApiKey: (role, scope, label) => this.addApiKey(role, scope, label),
      revokeApiKey: (id) => this.revokeApiKey(id),
      idTaken: (id) => this.q.resident.get(id) !== undefined || this.q.device.get(id) !== undefined,
    })
    this.dataVersion = db.prepare<[], { data_version: number }>('PRAGMA data_version')
    this.q = {
      resident: db.prepare<[string], { id: string, name: string | null, language: string, region: string | null, secret_hash: string | null, birth_year: number | null, conditions: string, hospital_id: string | null, research_consent: number }>('SELECT id, name, language, region, secret_hash, birth_year, conditions, hospital_id, research_consent FROM residents WHERE id = ?'),
      updateResident: db.prepare('UPDATE residents SET birth_year = coalesce(?, birth_year), conditions = coalesce(?, conditions), hospital_id = coalesce(?, hospital_id), language = coalesce(?, language), research_consent = coalesce(?, research_consent) WHERE id = ?'),
      hospital: db.prepare<[string], { id: string, name: string, webhook_url: string | null, webhook_token: string | null, fhir_url: string | null, fhir_auth: 'bearer' | 'hmac', fhir_secret: string | null, feeds: string, fhir_max_entries: number | null }>('SELECT id, name, webhook_url, webhook_token, fhir_url, fhir_auth, fhir_secret, feeds, fhir_max_entries FROM hospitals WHERE id = ?'),
      setFeeds: db.prepare('UPDATE hospitals SET feeds = ? WHERE id = ?'),
      setFhirMaxEntries: db.prepare('UPDATE hospitals SET fhir_max_entries = ? WHERE id = ?'),
      hospitals: db.prepare<[], { id: string }>('SELECT id FROM hospitals ORDER BY id'),
      patients: db.prepare<[string], { id: string }>('SELECT id FROM residents WHERE hospital_id = ? ORDER BY id'),
      insertHospital: db.prepare('INSERT INTO hospitals (id, name, webhook_url, webhook_token, fhir_url, fhir_auth, fhir_secret, feeds, fhir_max_entries, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      institution: db.prepare<[string], { id: string, name: string, push_url: string | null, token: string | null, pseudonym_key: string }>('SELECT * FROM research_institutions WHERE id = ?'),
      institutions: db.prepare<[], { id: string }>('SELECT id FROM research_institutions ORDER BY id'),
      insertInstitution: db.prepare('INSERT INTO research_institutions (id, name, push_url, token, pseudonym_key, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      overrides: db.prepare<[string], { resident_id: string, rule_key: string, params: string, set_by: string, set_at: number }>('SELECT * FROM overrides WHERE resident_id = ?'),
      setOverride: db.prepare('INSERT INTO overrides (resident_id, rule_key, params, set_by, set_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(resident_id, rule_key) DO UPDATE SET params = excluded.params, set_by = excluded.set_by, set_at = excluded.set_at'),
      deleteOverride: db.prepare('DELETE FROM overrides WHERE resident_id = ? AND rule_key = ?'),
      device: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = ?`),
      insertResident: db.prepare('INSERT INTO residents (id, name, language, region, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      insertDevice: db.prepare('INSERT INTO devices (id, resident_id, secret_hash, model, region, firmware, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      apiKey: db.prepare<[string], { id: string, digest: string, role: Role, scope: string | null, revoked_at: number | null }>('SELECT id, digest, role, scope, revoked_at FROM api_keys WHERE id = ?'),
      revokeApiKey: db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      apiKeys: db.prepare<[], { id: string, role: Role, scope: string | null, label: string | null, created_at: number, revoked_at: number | null }>('SELECT id, role, scope, label, created_at, revoked_at FROM api_keys ORDER BY created_at'),
      insertApiKey: db.prepare('INSERT INTO api_keys (id, digest, role, scope, label, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      keysRevokedSince: db.prepare<[number], { id: string, at: number }>('SELECT id, revoked_at AS at FROM api_keys WHERE revoked_at >= ? ORDER BY revoked_at, id'),
    }
  }

  private assertFreeId (id: string): void {
    if (!isValidId(id)) throw new VitalmeshError('VM_BAD_REQUEST', `"${id}" is not a valid id: use 1-64 characters of A-Z a-z 0-9 . _ -`)
    if (this.q.resident.get(id) || this.q.device.get(id) || this.followers.get(id)) throw new VitalmeshError('VM_BAD_REQUEST', `id "${id}" is already registered`)
  }

  /**
   * Registers a resident with its profile; returns the MQTT password if one was requested.
   * All or nothing: references are checked before anything is written, and the row, the
   * profile and `recorded` (the audit entry) are written in one transaction.
   */
  async addResident (r: NewResident, withPassword = true, recorded?: () => void): Promise<string | undefined> {
    const check = (): void => {
      this.assertFreeId(r.id)
      if (r.hospitalId !== undefined && r.hospitalId !== null && !this.q.hospital.get(r.hospitalId)) throw new VitalmeshError('VM_NOT_FOUND', `hospital "${r.hospitalId}" is not registered`)
    }
    check()
    const secret = withPassword ? newSecret() : undefined
    const hash = secret ? await hashSecret(secret, SCRYPT_COST.password) : null
    this.db.transaction(() => {
      check() // again: another request may have taken the id while the password was hashed
      this.q.insertResident.run(r.id, r.name ?? null, r.language ?? 'en', r.region ?? null, hash, Date.now())
      if (r.birthYear !== undefined || r.conditions || r.hospitalId) this.updateResident(r.id, { ...(r.birthYear !== undefined ? { birthYear: r.birthYear } : {}), ...(r.conditions ? { conditions: r.conditions } : {}), ...(r.hospitalId ? { hospitalId: r.hospitalId } : {}) })
      recorded?.()
    })()
    return secret
  }

  /** Registers a device bound to a resident; returns its secret (shown once, stored hashed). All or nothing, like addResident. */
  async addDevice (d: NewDevice, recorded?: () => void): Promise<string> {
    const check = (): { region: string | null } => {
      this.assertFreeId(d.id)
      const resident = this.q.resident.get(d.residentId)
      if (!resident) throw new VitalmeshError('VM_NOT_FOUND', `resident "${d.residentId}" is not registered`)
      return resident
    }
    check()
    const secret = newSecret()
    const hash = await hashSecret(secret, SCRYPT_COST.token)
    this.db.transaction(() => {
      const resident = check()
      this.q.insertDevice.run(d.id, d.residentId, hash, d.model ?? null, d.region ?? resident.region, d.firmware ?? null, Date.now())
      recorded?.()
    })()
    return secret
  }

  /** Runs `f` in one transaction (a registration and its audit entry). */
  atomically<T> (f: () => T): T { return atomically(this.db, f) }

  /** The fleet operations (bulk import, rotate, revoke, list, presence) live in devices.ts. */
  get database (): DB { return this.db }

  resident (id: string): ResidentRecord | undefined {
    const r = this.q.resident.get(id)
    return r && {
      id: r.id, name: r.name, language: r.language, region: r.region,
      birthYear: r.birth_year, conditions: JSON.parse(r.conditions) as string[], hospitalId: r.hospital_id, researchConsent: r.research_consent === 1,
    }
  }

  /** The residents who consented to research use, by id (a rule-set backtest replays only theirs). */
  researchConsenting (): ResidentRecord[] {
    return (this.db.prepare('SELECT id FROM residents WHERE research_consent = 1 ORDER BY id').all() as { id: string }[]).map((r) => this.resident(r.id)!)
  }

  /** Sets a resident's profile fields (those given); the rule engine picks rule sets by them. */
  updateResident (id: string, p: { birthYear?: number, conditions?: string[], hospitalId?: string, language?: string, researchConsent?: boolean }): void {
    if (p.hospitalId !== undefined && !this.q.hospital.get(p.hospitalId)) throw new VitalmeshError('VM_NOT_FOUND', `hospital "${p.hospitalId}" is not registered`)
    const consent = p.researchConsent === undefined ? null : p.researchConsent ? 1 : 0
    const changes = this.q.updateResident.run(p.birthYear ?? null, p.conditions ? JSON.stringify(p.conditions) : null, p.hospitalId ?? null, p.language ?? null, consent, id).changes
    this.changes++
    if (!changes) throw new VitalmeshError('VM_NOT_FOUND', `resident "${id}" is not registered`)
  }

  addHospital (h: { id: string, name: string, webhookUrl?: string, webhookToken?: string, fhirUrl?: string, fhirAuth?: 'bearer' | 'hmac', fhirSecret?: string, feeds?: readonly HospitalFeed[], fhirMaxEntries?: number }): void {
    if (!isValidId(h.id)) throw new VitalmeshError('VM_BAD_REQUEST', `"${h.id}" is not a valid id`)
    if (this.q.hospital.get(h.id)) throw new VitalmeshError('VM_CONFLICT', `hospital "${h.id}" is already registered`)
    this.q.insertHospital.run(h.id, h.name, h.webhookUrl ?? null, h.webhookToken ?? null, h.fhirUrl ?? null, h.fhirAuth ?? 'bearer', h.fhirSecret ?? null, JSON.stringify(feedList(h.feeds ?? DEFAULT_HOSPITAL_FEEDS)), h.fhirMaxEntries ?? null, Date.now())
  }

  hospital (id: string): HospitalRecord | undefined {
    const h = this.q.hospital.get(id)
    return h && { id: h.id, name: h.name, webhookUrl: h.webhook_url, webhookToken: h.webhook_token, fhirUrl: h.fhir_url, fhirAuth: h.fhir_auth, fhirSecret: h.fhir_secret, feeds: feedList(JSON.parse(h.feeds) as HospitalFeed[]), fhirMaxEntries: h.fhir_max_entries }
  }

  /** Chooses what a hospital's FHIR endpoint receives from now on. */
  setHospitalFeeds (id: string, feeds: readonly HospitalFeed[]): void {
    if (!this.q.setFeeds.run(JSON.stringify(feedList(feeds)), id).changes) throw new VitalmeshError('VM_NOT_FOUND', `hospital "${id}" is not registered`)
  }

  /** How many entries a transaction Bundle to the hospital's FHIR server holds at most (null: the node's setting). */
  setHospitalFhirMaxEntries (id: string, n: number | null): void {
    if (!this.q.setFhirMaxEntries.run(n, id).changes) throw new VitalmeshError('VM_NOT_FOUND', `hospital "${id}" is not registered`)
  }

  /** The residents a hospital cares for. */
  patients (hospitalId: string): string[] { return this.q.patients.all(hospitalId).map((r) => r.id) }

  hospitals (): HospitalRecord[] { return this.q.hospitals.all().map((h) => this.hospital(h.id)!) }

  /** Registers a research institution with its own pseudonym key (so institutions cannot link their data). */
  addInstitution (i: { id: string, name: string, pushUrl?: string, token?: string }): void {
    if (!isValidId(i.id)) throw new VitalmeshError('VM_BAD_REQUEST', `"${i.id}" is not a valid id`)
    if (this.q.institution.get(i.id)) throw new VitalmeshError('VM_CONFLICT', `institution "${i.id}" is already registered`)
    this.q.insertInstitution.run(i.id, i.name, i.pushUrl ?? null, i.token ?? null, randomBytes(32).toString('base64url'), Date.now())
  }

  institution (id: string): InstitutionRecord | undefined {
    const r = this.q.institution.get(id)
    return r && { id: r.id, name: r.name, pushUrl: r.push_url, token: r.token, pseudonymKey: r.pseudonym_key }
  }

  institutions (): InstitutionRecord[] { return this.q.institutions.all().map((r) => this.institution(r.id)!) }

  overrides (residentId: string): OverrideRecord[] {
    return this.q.overrides.all(residentId).map((o) => ({ residentId: o.resident_id, ruleKey: o.rule_key, params: JSON.parse(o.params) as OverrideRecord['params'], setBy: o.set_by, setAt: o.set_at }))
  }

  setOverride (residentId: string, ruleKey: string, params: OverrideRecord['params'], setBy: string): void {
    this.q.setOverride.run(residentId, ruleKey, JSON.stringify(params), setBy, Date.now())
  }

  deleteOverride (residentId: string, ruleKey: string): boolean {
    return this.q.deleteOverride.run(residentId, ruleKey).changes > 0
  }

  device (id: string): DeviceRecord | undefined {
    const d = this.q.device.get(id)
    return d && deviceRecord(d)
  }

  /** Checks an MQTT username and password. Returns undefined for any failure, after constant work. */
  async authenticate (username: string, password: string): Promise<Principal | undefined> {
    const d = isValidId(username) ? this.q.device.get(username) : undefined
    if (d) {
      const ok = await verifySecret(password, d.secret_hash)
      return ok && d.revoked_at === null ? { kind: 'device', id: d.id, deviceKey: d.key, residentId: d.resident_id } : undefined
    }
    if (isValidId(username) && this.followers.get(username)) return this.followers.authenticate(username, password)
    const r = isValidId(username) ? this.q.resident.get(username) : undefined
    const ok = await verifySecret(password, r?.secret_hash ?? undefined)
    return ok && r ? { kind: 'resident', id: r.id } : undefined
  }

  /**
   * A device that presented a client certificate the CA signed, with this id as its CN:
   * no password needed. Revoked devices are refused like with a password.
   */
  authenticateCertificate (deviceId: string): DevicePrincipal | undefined {
    const d = isValidId(deviceId) ? this.q.device.get(deviceId) : undefined
    return d && d.revoked_at === null ? { kind: 'device', id: d.id, deviceKey: d.key, residentId: d.resident_id } : undefined
  }

  /**
   * What is wrong with a key's scope, if anything: it must name a registered resident,
   * hospital or institution (a region key names a child region; an operator key nothing).
   */
  scopeProblem (role: Role, scope: string | null): VitalmeshError | undefined {
    if (role === 'operator') return scope === null ? undefined : new VitalmeshError('VM_BAD_REQUEST', 'an operator key has no scope (it sees every resident): send "scope": null')
    if (scope === null) return new VitalmeshError('VM_BAD_REQUEST', `a ${role} key needs a scope (which resident, hospital, institution or region)`)
    if (!isValidId(scope)) return new VitalmeshError('VM_BAD_REQUEST', `scope "${scope}" is not a valid id: use 1-64 characters of A-Z a-z 0-9 . _ -`)
    if (role === 'follower') return new VitalmeshError('VM_BAD_REQUEST', 'follower keys are made when a follower accepts a resident\'s invitation (POST /v1/followers/accept), not by hand')
    const known = role === 'resident' ? this.q.resident.get(scope) : role === 'hospital' ? this.q.hospital.get(scope) : role === 'research' ? this.q.institution.get(scope) : true
    return known ? undefined : new VitalmeshError('VM_NOT_FOUND', `no ${role === 'research' ? 'institution' : role} "${scope}" is registered; register it first`)
  }

  /** Creates an API key `vm_<id>_<secret>`; only its digest is stored. */
  addApiKey (role: Role, scope: string | null, label?: string): string {
    const id = randomBytes(6).toString('hex')
    const token = `vm_${id}_${newSecret()}`
    this.q.insertApiKey.run(id, digestToken(token), role, scope, label ?? null, Date.now())
    return token
  }

  /** API keys revoked at or after `t`, oldest first (cluster mode: registry/credential-sync.ts) */
  apiKeysRevokedSince (t: number): { id: string, at: number }[] {
    return this.q.keysRevokedSince.all(t)
  }

  revokeApiKey (id: string): boolean {
    const revoked = this.q.revokeApiKey.run(Date.now(), id).changes > 0
    this.changes++
    return revoked
  }

  /**
   * Changes whenever an API key or a resident (its hospital, consent) may have changed, here
   * or through another connection to the database (the CLI): cheap enough to compare before
   * every live message, so what was checked at a revision is cached until the next.
   */
  /** Another writer changed keys or residents on this connection (the cluster's registry being applied, registry/replica.ts). */
  changedElsewhere (): void { this.changes++ }

  revision (): string {
    return `${this.changes}:${this.dataVersion.get()!.data_version}`
  }

  /** A key's current role and scope by its id; undefined when it is unknown or revoked. */
  apiKeyById (id: string): ApiKeyPrincipal | undefined {
    const row = this.q.apiKey.get(id)
    return row && row.revoked_at === null ? { keyId: row.id, role: row.role, scope: row.scope } : undefined
  }

  /** Keys without their secrets (only digests are stored anyway). */
  apiKeys (): { id: string, role: Role, scope: string | null, label: string | null, createdAt: number, revokedAt: number | null }[] {
    return this.q.apiKeys.all().map((k) => ({ id: k.id, role: k.role, scope: k.scope, label: k.label, createdAt: k.created_at, revokedAt: k.revoked_at }))
  }

  verifyApiKey (token: string): ApiKeyPrincipal | undefined {
    const m = /^vm_([0-9a-f]{12})_[A-Za-z0-9_-]{32}$/.exec(token)
    if (!m) return undefined
    const row = this.q.apiKey.get(m[1]!)
    if (!row || row.revoked_at !== null) return undefined
    const a = Buffer.from(row.digest, 'hex')
    const b = Buffer.from(digestToken(token), 'hex')
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined
    return { keyId: row.id, role: row.role, scope: row.scope }
  }
}

export interface DeviceRow {
  key: number, id: string, resident_id: string, secret_hash: string, model: string | null, region: string | null,
  firmware: string | null, created_at: number, revoked_at: number | null, last_seen_at: number | null, online: number
}

export const DEVICE_COLUMNS = 'key, id, resident_id, secret_hash, model, region, firmware, created_at, revoked_at, last_seen_at, online'

export function deviceRecord (d: DeviceRow): DeviceRecord {
  return {
    key: d.key, id: d.id, residentId: d.resident_id, model: d.model, region: d.region, firmware: d.firmware,
    revoked: d.revoked_at !== null, createdAt: d.created_at, lastSeenAt: d.last_seen_at, online: d.online === 1,
  }
}

/** known feeds, each once, in HOSPITAL_FEEDS order */
function feedList (feeds: readonly string[]): HospitalFeed[] {
  return HOSPITAL_FEEDS.filter((f) => feeds.includes(f))
}

/** The registry's tables (component 'registry'). Never edit a shipped step: add one. */
export const REGISTRY_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'residents, their devices, hospitals, per-resident rule overrides and API keys',
    up: `
      CREATE TABLE IF NOT EXISTS residents (
        id TEXT PRIMARY KEY, name TEXT, language TEXT NOT NULL DEFAULT 'en', region TEXT,
        secret_hash TEXT, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS devices (
        key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, resident_id TEXT NOT NULL REFERENCES residents(id),
        secret_hash TEXT NOT NULL, model TEXT, region TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);
      CREATE INDEX IF NOT EXISTS devices_resident ON devices(resident_id);
      CREATE TABLE IF NOT EXISTS hospitals (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, webhook_url TEXT, webhook_token TEXT, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS overrides (
        resident_id TEXT NOT NULL, rule_key TEXT NOT NULL, params TEXT NOT NULL, set_by TEXT NOT NULL, set_at INTEGER NOT NULL,
        PRIMARY KEY (resident_id, rule_key));
      CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, digest TEXT NOT NULL, role TEXT NOT NULL, scope TEXT,
        label TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);`,
  },
  {
    version: 2,
    why: 'fleet management: firmware, last seen and online (as of the last batched write, fleet.lastSeenFlushMs), credentials_changed_at (rotation and revocation stamp it; every node polls it to end the sessions of changed devices), and the indexes for those polls and regions',
    up: (db) => {
      addColumns('devices', { firmware: 'TEXT', last_seen_at: 'INTEGER', online: 'INTEGER NOT NULL DEFAULT 0', credentials_changed_at: 'INTEGER' })(db)
      db.exec(`
        CREATE INDEX IF NOT EXISTS devices_credentials_changed ON devices(credentials_changed_at) WHERE credentials_changed_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS devices_region ON devices(region);`)
    },
  },
  { version: 3, why: 'resident profiles: birth year, conditions, hospital and research consent', up: addColumns('residents', { birth_year: 'INTEGER', conditions: "TEXT NOT NULL DEFAULT '[]'", hospital_id: 'TEXT', research_consent: 'INTEGER NOT NULL DEFAULT 0' }) },
  { version: 4, why: 'hospitals receive FHIR: endpoint, authentication (bearer or hmac) and secret', up: addColumns('hospitals', { fhir_url: 'TEXT', fhir_auth: "TEXT NOT NULL DEFAULT 'bearer'", fhir_secret: 'TEXT' }) },
  {
    version: 5,
    why: 'research institutions: where pseudonymised cells are pushed, with the key of their pseudonyms',
    up: `CREATE TABLE IF NOT EXISTS research_institutions (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, push_url TEXT, token TEXT, pseudonym_key TEXT NOT NULL, created_at INTEGER NOT NULL)`,
  },
  {
    version: 6,
    why: 'hospitals choose their FHIR feeds (reports, alerts, summaries, measurements); existing hospitals get the default, finished reports and critical alerts: window summaries were hundreds of resources per patient per day that clinicians did not ask for',
    up: addColumns('hospitals', { feeds: `TEXT NOT NULL DEFAULT '["reports","alerts"]'` }),
  },
  {
    version: 7,
    why: "a hospital's FHIR server may take smaller transaction Bundles than the node's setting (Medplum: 8 entries with conditional ones); null keeps the node's",
    up: addColumns('hospitals', { fhir_max_entries: 'INTEGER' }),
  },
]
