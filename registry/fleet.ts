import { atomically, hashSecret, newSecret, isValidId, SCRYPT_COST, VitalmeshError, type Clock, type DB } from '../core/index.ts'
import { DEVICE_COLUMNS, deviceRecord, type CredentialChange, type DeviceQuery, type DeviceRecord, type DeviceRow, type NewDevice, type Registry } from './registry.ts'
import type { CredentialState } from './credential-sync.ts'

export interface ImportOptions {
  /** register a resident (without MQTT password) when a row names one that does not exist */
  createResidents?: boolean
  /** called after each committed chunk */
  onProgress?(p: { done: number, total: number, created: number, failed: number }): void
  /** scrypt hashes computed at once (libuv's pool runs 4 by default) */
  concurrency?: number
}

export interface ImportResult {
  created: number
  failed: { index: number, id: string, message: string }[]
  /** the generated secrets, shown once: the operator hands them to the manufacturer */
  credentials: { id: string, secret: string }[]
}

const CHUNK = 1000

/**
 * Fleet operations on the registry: bulk import, credential rotation and revocation,
 * listing, and the batched last-seen write. Every credential change stamps
 * `credentials_changed_at`, which each node polls to end the sessions of that device,
 * so a revocation by the CLI or by another node takes effect without a message bus.
 */
export class Fleet {
  private readonly db: DB
  private readonly q

  constructor (private readonly registry: Registry, private readonly clock: Clock) {
    this.db = registry.database
    const db = this.db
    this.q = {
      device: db.prepare<[string], DeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = ?`),
      resident: db.prepare<[string], { id: string, region: string | null }>('SELECT id, region FROM residents WHERE id = ?'),
      insertResident: db.prepare('INSERT INTO residents (id, region, created_at) VALUES (?, ?, ?)'),
      insertDevice: db.prepare('INSERT INTO devices (id, resident_id, secret_hash, model, region, firmware, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      rotate: db.prepare('UPDATE devices SET secret_hash = ?, credentials_changed_at = ? WHERE id = ? AND revoked_at IS NULL'),
      revoke: db.prepare('UPDATE devices SET revoked_at = ?, credentials_changed_at = ? WHERE id = ? AND revoked_at IS NULL'),
      changedSince: db.prepare<[number], { id: string, at: number, revoked_at: number | null }>('SELECT id, credentials_changed_at AS at, revoked_at FROM devices WHERE credentials_changed_at > ? ORDER BY credentials_changed_at'),
      lastSeen: db.prepare('UPDATE devices SET last_seen_at = max(coalesce(last_seen_at, 0), ?), online = ? WHERE id = ?'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM devices WHERE revoked_at IS NULL'),
      credentials: db.prepare<[string], { secret_hash: string, revoked_at: number | null }>('SELECT secret_hash, revoked_at FROM devices WHERE id = ?'),
    }
  }

  async add (d: NewDevice, recorded?: () => void): Promise<string> {
    return this.registry.addDevice(d, recorded)
  }

  /** Imports many devices: hashes in parallel, commits per chunk of 1000, reports progress per chunk. */
  async import (rows: NewDevice[], opts: ImportOptions = {}): Promise<ImportResult> {
    const result: ImportResult = { created: 0, failed: [], credentials: [] }
    const seen = new Set<string>()
    const concurrency = opts.concurrency ?? 8
    for (let start = 0; start < rows.length; start += CHUNK) {
      const chunk = rows.slice(start, start + CHUNK)
      const prepared: { index: number, row: NewDevice, secret: string, hash: string }[] = []
      const valid: { index: number, row: NewDevice }[] = []
      chunk.forEach((row, i) => {
        const index = start + i
        const problem = this.problemWith(row, seen, opts.createResidents === true)
        if (problem) result.failed.push({ index, id: String(row.id ?? ''), message: problem })
        else { seen.add(row.id); valid.push({ index, row }) }
      })
      for (let i = 0; i < valid.length; i += concurrency) {
        const batch = valid.slice(i, i + concurrency)
        const hashed = await Promise.all(batch.map(async ({ index, row }) => {
          const secret = newSecret()
          return { index, row, secret, hash: await hashSecret(secret, SCRYPT_COST.token) }
        }))
        prepared.push(...hashed)
      }
      const now = this.clock.now()
      this.db.transaction(() => {
        for (const p of prepared) {
          const resident = this.q.resident.get(p.row.residentId)
          if (!resident) this.q.insertResident.run(p.row.residentId, p.row.region ?? null, now)
          this.q.insertDevice.run(p.row.id, p.row.residentId, p.hash, p.row.model ?? null, p.row.region ?? resident?.region ?? null, p.row.firmware ?? null, now)
          result.credentials.push({ id: p.row.id, secret: p.secret })
        }
      })()
      result.created += prepared.length
      opts.onProgress?.({ done: Math.min(start + CHUNK, rows.length), total: rows.length, created: result.created, failed: result.failed.length })
    }
    return result
  }

  private problemWith (row: NewDevice, seen: Set<string>, createResidents: boolean): string | undefined {
    if (typeof row.id !== 'string' || !isValidId(row.id)) return `"${String(row.id)}" is not a valid device id: use 1-64 characters of A-Z a-z 0-9 . _ -`
    if (typeof row.residentId !== 'string' || !isValidId(row.residentId)) return `"${String(row.residentId)}" is not a valid resident id`
    if (row.residentId === row.id) return 'a device id may not equal its resident id (they share one namespace)'
    if (seen.has(row.id) || this.q.device.get(row.id) || this.registry.resident(row.id)) return `id "${row.id}" is already registered`
    if (this.q.device.get(row.residentId)) return `"${row.residentId}" is a device id, not a resident`
    if (!createResidents && !seen.has(row.residentId) && !this.q.resident.get(row.residentId)) return `resident "${row.residentId}" is not registered (register it first, or import with --create-residents)`
    return undefined
  }

  /** Replaces a device's secret; the old one stops working and the device's sessions end. */
  async rotate (id: string): Promise<string> {
    const d = this.mustGet(id)
    if (d.revoked_at !== null) throw new VitalmeshError('VM_BAD_REQUEST', `device "${id}" is revoked; register a new device instead`)
    const secret = newSecret()
    this.q.rotate.run(await hashSecret(secret, SCRYPT_COST.token), this.stamp(), id)
    return secret
  }

  /** Revokes a device for good; its sessions end (on every node, within the poll interval). */
  revoke (id: string): DeviceRecord {
    const d = this.mustGet(id)
    if (d.revoked_at === null) {
      const at = this.stamp()
      this.q.revoke.run(at, at, id)
    }
    return deviceRecord(this.q.device.get(id)!)
  }

  /** What every node must hold of a device's credentials (cluster mode: registry/credential-sync.ts). */
  credentials (id: string): CredentialState | undefined {
    const r = this.q.credentials.get(id)
    return r ? { id, revoked: r.revoked_at !== null, secretHash: r.secret_hash } : undefined
  }

  /**
   * Makes this registry hold `c` (a change made on another node); returns its stamp when that
   * changed anything, undefined when the device was revoked or had that secret already, or is
   * not registered here. A revocation is final: a later rotation does not undo it.
   */
  applyCredentials (c: CredentialState): number | undefined {
    const d = this.q.credentials.get(c.id)
    if (!d || d.revoked_at !== null) return undefined
    if (!c.revoked && d.secret_hash === c.secretHash) return undefined
    const at = this.stamp()
    if (c.revoked) this.q.revoke.run(at, at, c.id)
    else this.q.rotate.run(c.secretHash, at, c.id)
    return at
  }

  /**
   * Credential stamps must be strictly increasing so the poll cursor (`changedSince`)
   * never skips a change made within the same millisecond as the previous one.
   */
  private lastStamp = 0
  private stamp (): number {
    this.lastStamp = Math.max(this.clock.now(), this.latestChange() + 1, this.lastStamp + 1)
    return this.lastStamp
  }

  private mustGet (id: string): DeviceRow {
    const d = isValidId(id) ? this.q.device.get(id) : undefined
    if (!d) throw new VitalmeshError('VM_NOT_FOUND', `device "${id}" is not registered`)
    return d
  }

  get (id: string): DeviceRecord | undefined {
    const d = isValidId(id) ? this.q.device.get(id) : undefined
    return d && deviceRecord(d)
  }

  list (query: DeviceQuery): DeviceRecord[] {
    const where: string[] = []
    const args: (string | number)[] = []
    if (!query.includeRevoked) where.push('revoked_at IS NULL')
    if (query.residentId) { where.push('resident_id = ?'); args.push(query.residentId) }
    if (query.region) { where.push('region = ?'); args.push(query.region) }
    if (query.model) { where.push('model = ?'); args.push(query.model) }
    if (query.afterId) { where.push('id > ?'); args.push(query.afterId) }
    const sql = `SELECT ${DEVICE_COLUMNS} FROM devices ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ?`
    return this.db.prepare<(string | number)[], DeviceRow>(sql).all(...args, query.limit).map(deviceRecord)
  }

  activeCount (): number { return this.q.count.get()!.n }

  /** Active devices and the residents wearing them, per model (null: registered without one), for the register's fleet view. */
  modelCounts (): { model: string | null, devices: number, residents: number }[] {
    return this.db.prepare<[], { model: string | null, devices: number, residents: number }>('SELECT model, count(*) AS devices, count(DISTINCT resident_id) AS residents FROM devices WHERE revoked_at IS NULL GROUP BY model ORDER BY model').all()
  }

  /** The stamp of the latest credential change: a poll cursor that starts after everything already in effect. */
  latestChange (): number {
    return this.db.prepare<[], { m: number | null }>('SELECT max(credentials_changed_at) AS m FROM devices').get()?.m ?? 0
  }

  changedSince (t: number): CredentialChange[] {
    return this.q.changedSince.all(t).map((r) => ({ id: r.id, at: r.at, revoked: r.revoked_at !== null }))
  }

  /** One transaction for all devices seen since the last write (the CLI reads `online` from here). */
  recordLastSeen (seen: Iterable<[string, number, boolean]>): void {
    atomically(this.db, () => { for (const [id, at, online] of seen) this.q.lastSeen.run(at, online ? 1 : 0, id) })
  }

  /** At start-up nobody is connected yet (a crash left the flags of the last run). */
  resetOnline (): void {
    this.db.exec('UPDATE devices SET online = 0 WHERE online = 1')
  }
}
