import { randomBytes, timingSafeEqual } from 'node:crypto'
import { type DB, hashSecret, verifySecret, newSecret, digestToken, SCRYPT_COST, isValidId, VitalmeshError } from '../core/index.ts'

export type Role = 'operator' | 'resident' | 'hospital' | 'research'

export interface DevicePrincipal { kind: 'device', id: string, deviceKey: number, residentId: string }
export interface ResidentPrincipal { kind: 'resident', id: string }
export type Principal = DevicePrincipal | ResidentPrincipal

export interface ApiKeyPrincipal { keyId: string, role: Role, scope: string | null }

export interface ResidentRecord { id: string, name: string | null, language: string, region: string | null }
export interface DeviceRecord { key: number, id: string, residentId: string, model: string | null, region: string | null, firmware: string | null, revoked: boolean, createdAt: number, lastSeenAt: number | null, online: boolean }

export interface NewDevice { id: string, residentId: string, model?: string, region?: string, firmware?: string }

export interface DeviceQuery { residentId?: string, region?: string, afterId?: string, limit: number, includeRevoked?: boolean }

/** A device whose credentials changed (rotated or revoked) at `at`: its live sessions must end. */
export interface CredentialChange { id: string, at: number, revoked: boolean }

/**
 * Who may connect and what they are bound to: residents, their devices, API keys.
 * Device ids and resident ids share one namespace, because either may be an MQTT
 * username.
 */
export class Registry {
  private readonly q

  constructor (private readonly db: DB) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS residents (
        id TEXT PRIMARY KEY, name TEXT, language TEXT NOT NULL DEFAULT 'en', region TEXT,
        secret_hash TEXT, created_at INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS devices (
        key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, resident_id TEXT NOT NULL REFERENCES residents(id),
        secret_hash TEXT NOT NULL, model TEXT, region TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);
      CREATE INDEX IF NOT EXISTS devices_resident ON devices(resident_id);
      CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, digest TEXT NOT NULL, role TEXT NOT NULL, scope TEXT,
        label TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);
    `)
    migrateDevices(db)
    this.q = {
      resident: db.prepare<[string], { id: string, name: string | null, language: string, region: string | null, secret_hash: string | null }>('SELECT id, name, language, region, secret_hash FROM residents WHERE id = ?'),
      device: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = ?`),
      insertResident: db.prepare('INSERT INTO residents (id, name, language, region, secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      insertDevice: db.prepare('INSERT INTO devices (id, resident_id, secret_hash, model, region, firmware, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      apiKey: db.prepare<[string], { id: string, digest: string, role: Role, scope: string | null, revoked_at: number | null }>('SELECT id, digest, role, scope, revoked_at FROM api_keys WHERE id = ?'),
      insertApiKey: db.prepare('INSERT INTO api_keys (id, digest, role, scope, label, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    }
  }

  private assertFreeId (id: string): void {
    if (!isValidId(id)) throw new VitalmeshError('VM_BAD_REQUEST', `"${id}" is not a valid id: use 1-64 characters of A-Z a-z 0-9 . _ -`)
    if (this.q.resident.get(id) || this.q.device.get(id)) throw new VitalmeshError('VM_BAD_REQUEST', `id "${id}" is already registered`)
  }

  /** Registers a resident; returns the MQTT password if one was requested. */
  async addResident (r: { id: string, name?: string, language?: string, region?: string }, withPassword = true): Promise<string | undefined> {
    this.assertFreeId(r.id)
    const secret = withPassword ? newSecret() : undefined
    const hash = secret ? await hashSecret(secret, SCRYPT_COST.password) : null
    this.q.insertResident.run(r.id, r.name ?? null, r.language ?? 'en', r.region ?? null, hash, Date.now())
    return secret
  }

  /** Registers a device bound to a resident; returns its secret (shown once, stored hashed). */
  async addDevice (d: NewDevice): Promise<string> {
    this.assertFreeId(d.id)
    const resident = this.q.resident.get(d.residentId)
    if (!resident) throw new VitalmeshError('VM_NOT_FOUND', `resident "${d.residentId}" is not registered`)
    const secret = newSecret()
    this.q.insertDevice.run(d.id, d.residentId, await hashSecret(secret, SCRYPT_COST.token), d.model ?? null, d.region ?? resident.region, d.firmware ?? null, Date.now())
    return secret
  }

  /** The fleet operations (bulk import, rotate, revoke, list, presence) live in devices.ts. */
  get database (): DB { return this.db }

  resident (id: string): ResidentRecord | undefined {
    const r = this.q.resident.get(id)
    return r && { id: r.id, name: r.name, language: r.language, region: r.region }
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

  /** Creates an API key `vm_<id>_<secret>`; only its digest is stored. */
  addApiKey (role: Role, scope: string | null, label?: string): string {
    const id = randomBytes(6).toString('hex')
    const token = `vm_${id}_${newSecret()}`
    this.q.insertApiKey.run(id, digestToken(token), role, scope, label ?? null, Date.now())
    return token
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

/** Adds the fleet columns to a devices table created by an earlier version. */
function migrateDevices (db: DB): void {
  const have = new Set((db.prepare('PRAGMA table_info(devices)').all() as { name: string }[]).map((c) => c.name))
  if (!have.has('firmware')) db.exec('ALTER TABLE devices ADD COLUMN firmware TEXT')
  if (!have.has('last_seen_at')) db.exec('ALTER TABLE devices ADD COLUMN last_seen_at INTEGER')
  // as of the node's last batched write (fleet.lastSeenFlushMs); the API answers from memory
  if (!have.has('online')) db.exec('ALTER TABLE devices ADD COLUMN online INTEGER NOT NULL DEFAULT 0')
  // rotation and revocation stamp this; every node polls it to end the sessions of changed devices
  if (!have.has('credentials_changed_at')) db.exec('ALTER TABLE devices ADD COLUMN credentials_changed_at INTEGER')
  db.exec('CREATE INDEX IF NOT EXISTS devices_credentials_changed ON devices(credentials_changed_at) WHERE credentials_changed_at IS NOT NULL')
  db.exec('CREATE INDEX IF NOT EXISTS devices_region ON devices(region)')
}
