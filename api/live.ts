import type { WebSocket, RawData } from 'ws'
import { z } from 'zod'
import { IdSchema, type ErrorCode, type Logger } from '../core/index.ts'
import { followerWantsCopy, type ApiKeyPrincipal } from '../registry/index.ts'
import { mayAccessResident } from './access.ts'

/** Client messages are a few dozen bytes; anything larger is closed by ws with 1009 before it is buffered. */
export const LIVE_MAX_FRAME_BYTES = 4096
/** watches per socket: an operator's console watches a handful */
export const LIVE_MAX_WATCHES = 1000

/** What a client may send: one JSON object per text frame. */
export const LiveClientMessage = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('auth'), key: z.string().max(256) }),
  z.strictObject({ type: z.literal('watch'), residentId: IdSchema }),
  z.strictObject({ type: z.literal('unwatch'), residentId: IdSchema }),
])

/** Close codes of the live stream (4000-4999 are the application's). */
export const LiveClose = { unauthorized: 4401, revoked: 4403, flood: 4429 } as const

interface Client {
  ws: WebSocket
  ip: string
  p?: ApiKeyPrincipal
  watch: Set<string>
  /** the registry revision the principal and watches were last checked at */
  checked: string
  /** frame budget: a token bucket of framesPerS, bursts up to twice that */
  tokens: number
  at: number
  closing: boolean
}

export interface LiveReading { residentId: string, deviceId: string, seq: number, ts: number, hr?: number, sys?: number, dia?: number }
export interface LiveAlert { id: string, residentId: string }

export interface LiveHubDeps {
  verifyApiKey(token: string): ApiKeyPrincipal | undefined
  /** a key's current role and scope by id; undefined once it is revoked */
  apiKey(keyId: string): ApiKeyPrincipal | undefined
  hospitalOf(residentId: string): string | null | undefined
  /** a resident's active followers, and which of its alerts each chose to get on the live stream */
  followersOf?(residentId: string): readonly { id: string, channels: readonly string[], notify: string }[]
  /** the resident a follower follows (its key's scope is the follower's id): what its live stream is about, for the audit */
  followedBy?(followerId: string): string | undefined
  /** changes whenever a key or a resident's hospital may have changed: compared before each send, so checks are cached in between */
  revision(): string
  audited?(actor: string, action: string, subject: string, detail: unknown): void
  logger?: Logger
  /** frames a second a client may send (default 20) */
  framesPerS?: number
  /** how often the revision is polled to close revoked keys' sockets (default 250 ms) */
  sweepMs?: number
  now?(): number
}

const actorOf = (p: ApiKeyPrincipal): string => `${p.role}:${p.scope ?? ''}:${p.keyId}`

/**
 * The live stream (`/v1/live`, WebSocket): after `{"type":"auth","key":"vm_..."}` a client
 * gets readings and alerts within its scope only — a resident its own, a hospital its
 * patients', an operator every alert and the readings of residents it asks to watch
 * (`{"type":"watch","residentId":"..."}`) — and, for operators, node statistics every second.
 *
 * Nothing a client sends can end the process: every handler is guarded, every frame that is
 * not one of the messages above gets `{type:"error", code}`, a flood closes the socket (4429).
 * Every message is checked against the key's current validity and scope when it is sent
 * (cached per registry revision): a revoked key's sockets close (4403) within `sweepMs`, a
 * resident who moved to another hospital drops out of the old hospital's watches.
 */
export class LiveHub {
  private readonly clients = new Set<Client>()
  /** watchers per resident, so a commit costs its residents' watchers, not every socket */
  private readonly byResident = new Map<string, Set<Client>>()
  /** authenticated sockets per `role:scope`, for alerts */
  private readonly byScope = new Map<string, Set<Client>>()
  /** sockets of follower keys, so an alert asks the registry for followers only while one is connected */
  private followerSockets = 0
  private readonly operators = new Set<Client>()
  private readonly timer: NodeJS.Timeout
  private swept: string
  private readonly framesPerS: number
  private readonly now: () => number

  constructor (private readonly d: LiveHubDeps) {
    this.framesPerS = d.framesPerS ?? 20
    this.now = d.now ?? Date.now
    this.swept = d.revision()
    this.timer = setInterval(() => this.guard('sweep', () => this.sweep()), d.sweepMs ?? 250)
    this.timer.unref()
  }

  get size (): number { return this.clients.size }

  attach (ws: WebSocket, ip = ''): void {
    const c: Client = { ws, ip, watch: new Set(), checked: '', tokens: this.framesPerS * 2, at: this.now(), closing: false }
    this.clients.add(c)
    const timer = setTimeout(() => this.guard('auth timeout', () => { if (!c.p) this.end(c, LiveClose.unauthorized, 'send {"type":"auth","key":"..."} first') }), 10_000)
    timer.unref()
    ws.on('message', (data, isBinary) => this.guard('message', () => this.onFrame(c, data, isBinary)))
    ws.on('close', () => this.guard('close', () => { clearTimeout(timer); this.forget(c) }))
    ws.on('error', () => this.guard('error', () => { clearTimeout(timer); this.forget(c); ws.terminate() }))
  }

  /** Runs a handler so that no exception escapes into ws's event emitter (it would end the process). */
  private guard (what: string, f: () => void): void {
    try { f() } catch (err) { this.d.logger?.error({ err, handler: what }, 'live stream handler failed') }
  }

  private onFrame (c: Client, data: RawData, isBinary: boolean): void {
    if (c.closing) return
    const now = this.now()
    c.tokens = Math.min(this.framesPerS * 2, c.tokens + ((now - c.at) / 1000) * this.framesPerS)
    c.at = now
    if (c.tokens < 1) {
      this.error(c, 'VM_RATE_LIMITED', `more than ${this.framesPerS} frames a second`)
      return this.end(c, LiveClose.flood, 'too many frames')
    }
    c.tokens -= 1
    if (isBinary) return this.error(c, 'VM_BAD_REQUEST', 'frames are JSON text, not binary')
    let raw: unknown
    try { raw = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8')) } catch { return this.error(c, 'VM_BAD_REQUEST', 'messages are JSON') }
    const m = LiveClientMessage.safeParse(raw)
    if (!m.success) return this.error(c, 'VM_BAD_REQUEST', 'send {"type":"auth","key":"..."}, {"type":"watch","residentId":"..."} or {"type":"unwatch","residentId":"..."}')
    const msg = m.data
    if (msg.type === 'auth') {
      if (c.p) return this.error(c, 'VM_BAD_REQUEST', 'already authenticated')
      const p = this.d.verifyApiKey(msg.key)
      if (!p) { this.error(c, 'VM_UNAUTHORIZED', 'invalid API key'); return this.end(c, LiveClose.unauthorized, 'unauthorized') }
      c.p = p
      c.checked = this.d.revision()
      this.index(c)
      if (p.role !== 'resident') this.d.audited?.(actorOf(p), 'live.open', (p.role === 'follower' && p.scope ? this.d.followedBy?.(p.scope) : undefined) ?? p.scope ?? 'all', {})
      if (p.role === 'resident' && p.scope) this.addWatch(c, p.scope)
      return this.send(c, { type: 'ready', role: p.role, scope: p.scope })
    }
    if (!c.p) return this.error(c, 'VM_UNAUTHORIZED', 'authenticate first')
    if (!this.valid(c, this.d.revision())) return
    if (msg.type === 'unwatch') {
      this.removeWatch(c, msg.residentId)
      return this.send(c, { type: 'unwatched', residentId: msg.residentId })
    }
    if (!mayAccessResident(c.p, msg.residentId, this.d.hospitalOf)) return this.error(c, 'VM_FORBIDDEN', `this key may not watch resident ${msg.residentId}`)
    if (!c.watch.has(msg.residentId) && c.watch.size >= LIVE_MAX_WATCHES) return this.error(c, 'VM_BAD_REQUEST', `at most ${LIVE_MAX_WATCHES} watches per connection`)
    this.addWatch(c, msg.residentId)
    if (c.p.role !== 'resident') this.d.audited?.(actorOf(c.p), 'live.watch', msg.residentId, {})
    this.send(c, { type: 'watching', residentId: msg.residentId })
  }

  private addWatch (c: Client, residentId: string): void {
    c.watch.add(residentId)
    let set = this.byResident.get(residentId)
    if (!set) {
      this.byResident.set(residentId, set = new Set())
      if (this.byResident.size === 1) this.watchingChanged?.(true)
    }
    set.add(c)
  }

  private removeWatch (c: Client, residentId: string): void {
    c.watch.delete(residentId)
    const set = this.byResident.get(residentId)
    if (set) {
      set.delete(c)
      if (set.size === 0 && this.byResident.delete(residentId) && this.byResident.size === 0) this.watchingChanged?.(false)
    }
  }

  private index (c: Client): void {
    if (c.p!.role === 'operator') { this.operators.add(c); return }
    const k = `${c.p!.role}:${c.p!.scope ?? ''}`
    let set = this.byScope.get(k)
    if (!set) this.byScope.set(k, set = new Set())
    if (!set.has(c) && c.p!.role === 'follower') this.followerSockets++
    set.add(c)
  }

  private forget (c: Client): void {
    if (!this.clients.delete(c)) return
    for (const r of [...c.watch]) this.removeWatch(c, r)
    this.operators.delete(c)
    if (c.p) {
      const k = `${c.p.role}:${c.p.scope ?? ''}`
      const set = this.byScope.get(k)
      if (set?.delete(c) && c.p.role === 'follower') this.followerSockets--
      if (set && set.size === 0) this.byScope.delete(k)
    }
  }

  private end (c: Client, code: number, reason: string): void {
    c.closing = true
    this.forget(c)
    try { c.ws.close(code, reason) } catch { c.ws.terminate() }
  }

  /**
   * Is the client's key still valid, and each of its watches still in its scope? Checked
   * again only when the registry's revision moved since the last check.
   */
  private valid (c: Client, rev: string): boolean {
    if (!c.p || c.closing) return false
    if (c.checked === rev) return true
    const p = this.d.apiKey(c.p.keyId)
    if (!p) {
      this.error(c, 'VM_UNAUTHORIZED', 'the API key was revoked')
      this.end(c, LiveClose.revoked, 'API key revoked')
      return false
    }
    c.p = p
    c.checked = rev
    for (const r of [...c.watch]) {
      if (mayAccessResident(p, r, this.d.hospitalOf)) continue
      this.removeWatch(c, r)
      this.send(c, { type: 'unwatched', residentId: r, code: 'VM_FORBIDDEN', message: `this key may no longer watch resident ${r}` })
    }
    return true
  }

  /** When the registry changed: every socket is checked again (revoked keys closed now, not at their next message). */
  private sweep (): void {
    const rev = this.d.revision()
    if (rev === this.swept) return
    this.swept = rev
    for (const c of [...this.clients]) if (c.p) this.valid(c, rev)
  }

  private error (c: Client, code: ErrorCode, message: string): void { this.send(c, { type: 'error', code, message }) }

  private send (c: Client, msg: unknown): void {
    // a client that stops reading loses messages rather than growing the server's memory
    if (c.ws.readyState === c.ws.OPEN && c.ws.bufferedAmount < 1024 * 1024) c.ws.send(JSON.stringify(msg))
  }

  private watchingChanged: ((watching: boolean) => void) | undefined

  /**
   * Tells `listener` whenever the hub starts or stops having a client that watches a resident's
   * readings (now, and at each change). Cluster mode listens to the other nodes' readings only
   * meanwhile: every node getting every feed commit of the cluster, to drop it, cost a delivery
   * per reading and node (npm run bench -- cluster).
   */
  onWatching (listener: (watching: boolean) => void): void {
    this.watchingChanged = listener
    listener(this.byResident.size > 0)
  }

  readings (rows: readonly LiveReading[]): void {
    if (this.byResident.size === 0) return
    let per: Map<Client, LiveReading[]> | undefined
    for (const r of rows) {
      const set = this.byResident.get(r.residentId)
      if (!set) continue
      per ??= new Map()
      for (const c of set) {
        let list = per.get(c)
        if (!list) per.set(c, list = [])
        list.push(r)
      }
    }
    if (!per) return
    const rev = this.d.revision()
    for (const [c, list] of per) {
      if (!this.valid(c, rev)) continue
      const mine = list.filter((r) => c.watch.has(r.residentId))
      if (mine.length) this.send(c, { type: 'readings', readings: mine.map((r) => ({ residentId: r.residentId, deviceId: r.deviceId, seq: r.seq, ts: r.ts, hr: r.hr, sys: r.sys, dia: r.dia })) })
    }
  }

  alert (a: LiveAlert): void {
    const rev = this.d.revision()
    const hospital = this.d.hospitalOf(a.residentId)
    const targets = [...this.operators, ...(this.byScope.get(`resident:${a.residentId}`) ?? []), ...(hospital ? this.byScope.get(`hospital:${hospital}`) ?? [] : [])]
    for (const c of targets) {
      if (this.valid(c, rev) && mayAccessResident(c.p!, a.residentId, this.d.hospitalOf)) this.send(c, { type: 'alert', alert: a })
    }
    // followers (key scope: the follower's id) who chose the live stream, for the alerts they chose;
    // the registry is asked only while a follower is connected
    if (this.followerSockets === 0 || !this.d.followersOf) return
    for (const f of this.d.followersOf(a.residentId)) {
      const set = this.byScope.get(`follower:${f.id}`)
      if (!set || !f.channels.includes('live') || !followerWants(f.notify, a)) continue
      for (const c of set) if (this.valid(c, rev)) this.send(c, { type: 'alert', alert: followerView(a) })
    }
  }

  stats (s: unknown): void {
    if (this.operators.size === 0) return
    const rev = this.d.revision()
    for (const c of [...this.operators]) if (this.valid(c, rev)) this.send(c, { type: 'stats', stats: s })
  }

  close (): void {
    clearInterval(this.timer)
    for (const c of this.clients) c.ws.terminate()
  }
}

/** A follower gets an alert on the live stream when it chose its severity, or the chain reached the followers. */
function followerWants (notify: string, a: LiveAlert & { severity?: string, followersAt?: number | null, historic?: boolean }): boolean {
  if (a.followersAt) return true
  if (a.historic) return false // an old reading: the resident is asked to measure again; nobody else needs to act
  return followerWantsCopy(notify, a.severity ?? '')
}

/**
 * What a follower sees of an alert: what it is about and its state, not who on the staff
 * handled it (acknowledgedBy, assignedTo, notes and reasons stay with the staff).
 */
export function followerView<T extends LiveAlert> (a: T): Partial<T> {
  const x = a as unknown as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const k of FOLLOWER_ALERT_FIELDS) if (k in x) out[k] = x[k]
  return out as Partial<T>
}
const FOLLOWER_ALERT_FIELDS = ['id', 'residentId', 'concern', 'severity', 'state', 'openedAt', 'acknowledgedAt', 'resolvedAt', 'message', 'messages', 'language', 'reading', 'historic', 'followersAt'] as const
