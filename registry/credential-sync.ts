import { migrate, type DB, type Logger, type Migration } from '../core/index.ts'
import type { Fleet } from './fleet.ts'

/** A device's credentials as every node must hold them: revoked, or accepted with this secret's hash. */
export interface CredentialState { id: string, revoked: boolean, secretHash: string }

/**
 * What the log carries: a device's credentials, or the revocation of an API key (`id` the key's
 * id; revoked, no hash). A revoked key stays revoked: there is nothing to order.
 */
export type ClusterCredentialChange = (CredentialState & { kind: 'device' }) | { kind: 'apiKey', id: string, revoked: true, secretHash: '' }

/** The registry's API keys as the sync needs them (Registry) */
export interface ApiKeyRevocations {
  apiKeysRevokedSince(t: number): { id: string, at: number }[]
  revokeApiKey(id: string): boolean
}

/** One change in the cluster's order of credential changes. */
export type CredentialEntry = ClusterCredentialChange & { position: string, node: string }

/**
 * The cluster's log of credential changes (Redis stream in cluster mode, broker/cluster.ts):
 * one order that every node reads, from a position it keeps.
 */
export interface CredentialLog {
  append(change: ClusterCredentialChange & { node: string }): Promise<void>
  /** entries after `position` ('0': from the first one kept); waits up to `blockMs` for one */
  read(position: string, blockMs: number): Promise<CredentialEntry[]>
  close(): Promise<void>
}

export const CREDENTIAL_SYNC_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: "cluster mode: how far this node has applied the cluster's credential changes (device rotations and revocations, API key revocations), so a restarted node applies what it missed",
    // position: the last log entry applied here; published_at / keys_published_at: the stamp of the
    // last device change / API key revocation of this registry appended to the log
    up: 'CREATE TABLE IF NOT EXISTS credential_sync (id INTEGER PRIMARY KEY CHECK (id = 1), position TEXT NOT NULL, published_at INTEGER NOT NULL, keys_published_at INTEGER NOT NULL DEFAULT 0)',
  },
  {
    version: 2,
    why: "cluster mode on PostgreSQL: a device's credential change that arrived before the device itself (its registration travels on the registry's log), kept until the registration is applied",
    up: 'CREATE TABLE IF NOT EXISTS credential_parked (id TEXT PRIMARY KEY, entry TEXT NOT NULL)',
  },
]

/**
 * Carries rotations and revocations from the node (or CLI) where they were made to every node
 * of a cluster over Redis, whose registries are separate SQLite files: without it, a device
 * revoked through node A kept its sessions on node C and could connect there again.
 *
 * Every node appends the changes its credential poll finds in its own registry, and applies
 * every entry of the log in the log's order, its own included: two nodes rotating one device
 * at once end with the same secret (the later entry in the log) instead of each keeping its
 * own. Applying an entry that changes nothing (a node's own entry, a revocation already
 * applied) does nothing, so it ends no session of a device that already reconnected with its
 * new secret. An applied change ends the device's sessions on this node at once.
 *
 * API key revocations travel the same way (a key used on node B after its revocation on node A
 * would still open node B's API).
 *
 * This replicates the registry's security-relevant columns, not the registry: devices and keys are still
 * provisioned on every node (cluster mode on PostgreSQL, issue 17, shares the registry itself).
 */
export class CredentialSync {
  private position: string
  private publishedAt: number
  private keysPublishedAt: number
  /** stamps of device changes this sync made, and ids of keys it revoked: not appended again */
  private readonly appliedHere = new Set<number>()
  private readonly keysAppliedHere = new Set<string>()
  /** revoked keys already handled (appended, or revoked by this sync), with their stamps, since keysPublishedAt */
  private readonly keysHandled = new Map<string, number>()
  /** changes of this registry not yet in the log, oldest first */
  private readonly pending: { kind: 'device' | 'apiKey', id: string, at: number }[] = []
  private appending: Promise<void> | undefined
  private retry: NodeJS.Timeout | undefined
  private running = false
  private loop: Promise<void> | undefined
  private readonly q

  constructor (
    private readonly db: DB,
    private readonly fleet: Fleet,
    private readonly keys: ApiKeyRevocations,
    private readonly log: CredentialLog,
    private readonly node: string,
    private readonly disconnect: (id: string, before: number) => void,
    private readonly logger: Logger,
  ) {
    migrate(db, 'credential-sync', CREDENTIAL_SYNC_MIGRATIONS)
    this.q = {
      get: db.prepare<[], { position: string, published_at: number, keys_published_at: number }>('SELECT position, published_at, keys_published_at FROM credential_sync WHERE id = 1'),
      setPosition: db.prepare("INSERT INTO credential_sync (id, position, published_at) VALUES (1, ?, 0) ON CONFLICT(id) DO UPDATE SET position = excluded.position"),
      setPublished: db.prepare("INSERT INTO credential_sync (id, position, published_at) VALUES (1, '0', ?) ON CONFLICT(id) DO UPDATE SET published_at = max(published_at, excluded.published_at)"),
      park: db.prepare('INSERT INTO credential_parked (id, entry) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET entry = excluded.entry'),
      parked: db.prepare<[string], { entry: string }>('SELECT entry FROM credential_parked WHERE id = ?'),
      unpark: db.prepare('DELETE FROM credential_parked WHERE id = ?'),
      setKeysPublished: db.prepare("INSERT INTO credential_sync (id, position, published_at, keys_published_at) VALUES (1, '0', 0, ?) ON CONFLICT(id) DO UPDATE SET keys_published_at = max(keys_published_at, excluded.keys_published_at)"),
    }
    const row = this.q.get.get()
    // a node that never applied the log applies all of it that Redis keeps: its registry may be a copy older than some of it
    this.position = row?.position ?? '0'
    // changes made here while the log could not be written (or before a crash) are appended
    // again: appending a state every node already holds changes nothing anywhere
    this.publishedAt = row?.published_at ?? 0
    this.keysPublishedAt = row?.keys_published_at ?? 0
    for (const c of fleet.changedSince(this.publishedAt)) this.pending.push({ kind: 'device', id: c.id, at: c.at })
    this.pollKeys()
  }

  /**
   * A change the credential poll found in this node's registry (stamped `at`): appended to the
   * log unless it was this sync that made it, retried until Redis takes it.
   */
  changed (id: string, at: number): void {
    if (at <= this.publishedAt) return
    if (this.appliedHere.delete(at)) { this.published('device', at); return }
    this.pending.push({ kind: 'device', id, at })
    this.appendPending()
  }

  /**
   * API keys revoked in this registry (the API, the CLI) since the last look: appended unless
   * this sync revoked them. Called with the credential poll; `>=` and `keysHandled`, because a
   * key's revocation stamp is a plain millisecond that two revocations may share.
   */
  pollKeys (): void {
    for (const k of this.keys.apiKeysRevokedSince(this.keysPublishedAt)) {
      if (this.keysHandled.has(k.id)) continue
      this.keysHandled.set(k.id, k.at)
      if (this.keysAppliedHere.delete(k.id)) { this.published('apiKey', k.at); continue }
      this.pending.push({ kind: 'apiKey', id: k.id, at: k.at })
    }
    this.appendPending()
  }

  private published (kind: 'device' | 'apiKey', at: number): void {
    // an older change still waiting to be appended keeps the mark where it is: a crash now must not skip it
    if (this.pending.some((p) => p.kind === kind && p.at < at)) return
    if (kind === 'device') {
      this.publishedAt = Math.max(this.publishedAt, at)
      this.q.setPublished.run(this.publishedAt)
    } else if (at > this.keysPublishedAt) {
      this.keysPublishedAt = at
      // the next look reads from `at` on: what was handled before it cannot come back, what was handled at it can
      for (const [id, t] of this.keysHandled) if (t < at) this.keysHandled.delete(id)
      this.q.setKeysPublished.run(at)
    }
  }

  private appendPending (): void {
    if (this.appending || this.retry || !this.running) return
    this.appending = (async () => {
      while (this.pending.length) {
        const c = this.pending[0]!
        if (c.kind === 'apiKey') await this.log.append({ kind: 'apiKey', id: c.id, revoked: true, secretHash: '', node: this.node })
        else {
          // the device's state now, not at the change: a later change is then appended as it is
          const state = this.fleet.credentials(c.id)
          if (state) await this.log.append({ kind: 'device', ...state, node: this.node })
        }
        this.pending.shift()
        this.published(c.kind, c.at)
      }
    })().catch((err: unknown) => {
      this.logger.warn({ err, code: 'VM_CLUSTER_LINK', pending: this.pending.length }, 'could not append credential changes to the cluster\'s log; retrying in 1 s')
      this.retry = setTimeout(() => { this.retry = undefined; this.appendPending() }, 1000)
      this.retry.unref()
    }).finally(() => {
      this.appending = undefined
      // a change that came after the loop's last look at `pending`, before this: append it too
      if (this.pending.length) this.appendPending()
    })
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.loop = this.run()
    this.appendPending()
  }

  /** Stops reading and closes the log (which ends a read waiting for entries). */
  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.retry)
    await this.log.close() // ends an append or a read under way; what is pending is appended at the next start
    await this.appending
    await this.loop
  }

  /** Reads the log and applies it until stopped; a failed read (Redis down) is retried. */
  private async run (): Promise<void> {
    while (this.running) {
      let entries: CredentialEntry[]
      try {
        entries = await this.log.read(this.position, 1000)
      } catch (err) {
        if (!this.running) break
        this.logger.warn({ err, code: 'VM_CLUSTER_LINK' }, 'could not read the cluster\'s credential changes; retrying')
        await new Promise((r) => setTimeout(r, 500))
        continue
      }
      if (entries.length === 0) continue
      try {
        this.apply(entries)
      } catch (err) {
        // the registry could not take them now (busy, disk): the position did not move, so they are read again
        this.logger.error({ err, entries: entries.length }, 'could not apply credential changes from the cluster\'s log; retrying')
        await new Promise((r) => setTimeout(r, 500))
      }
    }
  }

  /**
   * A device this registry did not have was registered by the registry's log (cluster mode on
   * PostgreSQL): a credential change that came for it before is applied now, so a rotation made
   * right after the registration is not lost on the nodes that heard of the rotation first.
   */
  deviceAppeared (id: string): void {
    const row = this.q.parked.get(id)
    if (!row) return
    this.q.unpark.run(id)
    const e = JSON.parse(row.entry) as CredentialEntry
    const at = this.fleet.applyCredentials(e)
    if (at === undefined) return
    this.appliedHere.add(at)
    this.disconnect(id, at)
    this.logger.info({ id, from: e.node }, 'credential change that came before the device\'s registration applied')
  }

  /** Applies entries in order and moves the position past them, in one transaction. */
  apply (entries: readonly CredentialEntry[]): void {
    const ended: { id: string, at: number }[] = []
    const keys: string[] = []
    this.db.transaction(() => {
      for (const e of entries) {
        if (e.kind === 'apiKey') {
          if (this.keys.revokeApiKey(e.id)) keys.push(e.id)
          continue
        }
        // not registered here (yet): with a shared registry its registration may still be on the
        // way (the registry's log is read apart from this one); kept until it arrives, the later
        // change of the same device replacing it
        if (this.fleet.credentials(e.id) === undefined) { this.q.park.run(e.id, JSON.stringify(e)); continue }
        const at = this.fleet.applyCredentials(e)
        if (at !== undefined) { this.appliedHere.add(at); ended.push({ id: e.id, at }) }
      }
      this.q.setPosition.run(entries[entries.length - 1]!.position)
    })()
    this.position = entries[entries.length - 1]!.position
    for (const id of keys) {
      this.keysAppliedHere.add(id)
      this.logger.info({ keyId: id, from: entries.find((e) => e.id === id)?.node }, 'API key revoked on another node; revoked here')
    }
    for (const { id, at } of ended) {
      this.disconnect(id, at)
      this.logger.info({ id, from: entries.find((e) => e.id === id)?.node }, 'credentials changed on another node applied here; sessions ended')
    }
  }
}
