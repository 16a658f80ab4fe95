import { request } from 'undici'
import { addColumns, migrate, type Clock, type DB, type Logger, type Migration } from '../core/index.ts'

export interface OutboxEntry { sink: string, url: string, headers: Record<string, string>, body: string, idempotencyKey: string }

interface Row { id: number, sink: string, url: string, headers: string, body: string, idempotency_key: string, attempts: number }

export interface OutboxOptions {
  pollMs: number
  timeoutMs: number
  maxBackoffMs: number
  /** consecutive failures that open an endpoint's circuit, and how long it stays open */
  breakerFailures?: number
  breakerOpenMs?: number
  /** a message not delivered this long after it was queued is set aside for an operator */
  deadLetterAfterMs?: number
}

/** The outbox's tables (component 'outbox'). Never edit a shipped step: add one. */
export const OUTBOX_MIGRATIONS: Migration[] = [
  {
    version: 1,
    why: 'the durable outbox: messages queued in the transaction of the change that caused them, due by next_at',
    up: `
      CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL, delivered_at INTEGER, last_error TEXT);
      CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE delivered_at IS NULL;`,
  },
  { version: 2, why: 'dead letters: a message not delivered in time is set aside for an operator (dead_at)', up: addColumns('outbox', { dead_at: 'INTEGER' }) },
]

export interface DeadLetterRow { id: number, sink: string, url: string, idempotencyKey: string, attempts: number, createdAt: number, deadAt: number, lastError: string | null }

/**
 * A durable outbox: messages are written in the same transaction as the change that
 * caused them and delivered at least once, with an Idempotency-Key the receiver can use
 * to drop repeats. Each endpoint has its own queue, so one slow or failing endpoint
 * never delays the others; failures back off exponentially with jitter.
 */
export class Outbox {
  private readonly s
  private timer: NodeJS.Timeout | undefined
  // deliveries under way, so that stop() can abort them and the app can wait for them before the database closes
  private readonly inflight = new Set<Promise<void>>()
  private abort = new AbortController()
  private stopped = false
  private readonly busy = new Set<string>()
  /** per endpoint: consecutive failures and, when its circuit is open, until when */
  private readonly breakers = new Map<string, { failures: number, openUntil: number }>()
  private readonly waiters: (() => void)[] = []
  readonly stats = { delivered: 0, failures: 0, deadLettered: 0, circuitOpened: 0 }

  constructor (private readonly db: DB, private readonly clock: Clock, private readonly logger: Logger, private readonly opts: OutboxOptions) {
    migrate(db, 'outbox', OUTBOX_MIGRATIONS)
    this.s = {
      insert: db.prepare('INSERT OR IGNORE INTO outbox (sink, url, headers, body, idempotency_key, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      due: db.prepare<[number], Row & { created_at: number }>('SELECT id, sink, url, headers, body, idempotency_key, attempts, created_at FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL AND next_at <= ? ORDER BY id LIMIT 500'),
      dead: db.prepare('UPDATE outbox SET dead_at = ? WHERE id = ?'),
      deadList: db.prepare<[], { id: number, sink: string, url: string, idempotency_key: string, attempts: number, created_at: number, dead_at: number, last_error: string | null }>('SELECT id, sink, url, idempotency_key, attempts, created_at, dead_at, last_error FROM outbox WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY id'),
      redrive: db.prepare('UPDATE outbox SET dead_at = NULL, attempts = 0, next_at = ?, created_at = ? WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND (? IS NULL OR sink = ?)'),
      delivered: db.prepare('UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?'),
      failed: db.prepare('UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?'),
      pending: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL'),
    }
  }

  /** Call inside the transaction that makes the message necessary. Repeats of a key are ignored. */
  enqueue (e: OutboxEntry): boolean {
    const now = this.clock.now()
    return this.s.insert.run(e.sink, e.url, JSON.stringify(e.headers), e.body, e.idempotencyKey, now, now).changes > 0
  }

  pending (): number { return this.s.pending.get()!.n }

  start (): void {
    this.stopped = false
    this.abort = new AbortController()
    const loop = (): void => {
      this.poll()
      this.timer = setTimeout(loop, this.opts.pollMs)
    }
    loop()
  }

  /**
   * No new deliveries; those under way are aborted and leave their message due (it is sent again,
   * with the same idempotency key, after the next start). Await settled() before closing the database.
   */
  stop (): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.stopped = true
    this.abort.abort()
    this.waiters.splice(0).forEach((f) => f())
  }

  /** Resolves when no delivery is under way (after stop(): when the aborted ones have returned). */
  async settled (): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight])
  }

  /** Messages set aside after `deadLetterAfterMs`, for operators. */
  deadLetters (): DeadLetterRow[] {
    return this.s.deadList.all().map((r) => ({ id: r.id, sink: r.sink, url: r.url, idempotencyKey: r.idempotency_key, attempts: r.attempts, createdAt: r.created_at, deadAt: r.dead_at, lastError: r.last_error }))
  }

  /** An operator sends the dead letters (of one sink, or all) again. */
  redrive (sink?: string): number {
    const now = this.clock.now()
    const n = this.s.redrive.run(now, now, sink ?? null, sink ?? null).changes
    this.breakers.clear()
    return n
  }

  /** Starts deliveries that are due: the oldest message of each idle endpoint whose circuit is closed. */
  poll (): void {
    const now = this.clock.now()
    const rows = this.s.due.all(now)
    const seen = new Set<string>()
    for (const row of rows) {
      const endpoint = new URL(row.url).origin
      if (this.opts.deadLetterAfterMs !== undefined && now - row.created_at > this.opts.deadLetterAfterMs) {
        this.s.dead.run(now, row.id)
        this.stats.deadLettered++
        this.logger.error({ sink: row.sink, url: endpoint, attempts: row.attempts, key: row.idempotency_key }, 'message not delivered in time; moved to the dead letters (re-drive: POST /v1/outbox/redrive)')
        continue
      }
      const breaker = this.breakers.get(endpoint)
      if (breaker && breaker.openUntil > now) continue
      if (seen.has(endpoint) || this.busy.has(endpoint)) continue
      seen.add(endpoint)
      this.busy.add(endpoint)
      const d: Promise<void> = this.deliver(row).finally(() => {
        this.inflight.delete(d)
        this.busy.delete(endpoint)
        if (!this.stopped && this.busy.size === 0 && this.pending() === 0) { const w = this.waiters.splice(0); w.forEach((f) => f()) }
      })
      this.inflight.add(d)
      d.catch((e: unknown) => this.logger.error({ err: (e as Error).message, sink: row.sink }, 'outbox delivery bookkeeping failed'))
    }
  }

  private async deliver (row: Row): Promise<void> {
    let error: string
    let refused = false
    let retryAfterMs: number | undefined
    try {
      const res = await request(row.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...JSON.parse(row.headers) as Record<string, string>, 'idempotency-key': row.idempotency_key },
        body: row.body,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal: this.abort.signal,
      })
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump()
        this.s.delivered.run(this.clock.now(), row.id)
        this.stats.delivered++
        this.breakers.delete(new URL(row.url).origin)
        return
      }
      // why the receiver refused it, in the row's last error and the log: a FHIR server says so in an
      // OperationOutcome ("Transaction requires strict isolation but has too many entries": Medplum's bound)
      const why = await refusalReason(res.body, res.headers['content-type'])
      error = why ? `HTTP ${res.statusCode}: ${why}` : `HTTP ${res.statusCode}`
      refused = isRefusal(res.statusCode)
      const ra = Number(res.headers['retry-after'])
      if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000
    } catch (e) {
      if (this.stopped) return // aborted by stop(): not a failure of the endpoint; the message stays due
      error = (e as Error).message
    }
    this.stats.failures++
    const endpoint = new URL(row.url).origin
    const b = this.breakers.get(endpoint) ?? { failures: 0, openUntil: 0 }
    // a receiver that answers and refuses this one message is up: its other messages go on (the breaker is for
    // endpoints that are down or failing, 5xx and timeouts), and this one is retried until it is dead-lettered
    if (!refused) b.failures++
    if (b.failures >= (this.opts.breakerFailures ?? 5)) {
      // stop hammering an endpoint that keeps failing; one trial after the pause (half-open)
      b.openUntil = this.clock.now() + (this.opts.breakerOpenMs ?? 30_000)
      b.failures = (this.opts.breakerFailures ?? 5) - 1
      this.stats.circuitOpened++
    }
    this.breakers.set(endpoint, b)
    const backoff = Math.min(this.opts.maxBackoffMs, 500 * 2 ** Math.min(row.attempts, 16)) * (0.5 + Math.random() / 2)
    const delay = Math.max(backoff, retryAfterMs ?? 0)
    this.s.failed.run(this.clock.now() + delay, error, row.id)
    this.logger.warn({ sink: row.sink, url: new URL(row.url).origin, attempts: row.attempts + 1, error, retryInMs: Math.round(delay) }, refused ? 'the receiver refused the message; will retry (it is dead-lettered if it keeps refusing)' : 'delivery failed; will retry')
  }

  /** Resolves when nothing is pending (tests, shutdown). */
  async idle (): Promise<void> {
    if (this.pending() === 0 && this.busy.size === 0) return
    await new Promise<void>((resolve) => this.waiters.push(resolve))
  }
}

/**
 * A 4xx that says the receiver refused this message, not that it is unavailable: 408 (timeout),
 * 425 and 429 (too early, too many) are about the endpoint's state and count as failures of it.
 */
export function isRefusal (status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 425 && status !== 429
}

/**
 * The reason a receiver gave with its error, at most 300 characters: an OperationOutcome's issues
 * (FHIR), else a JSON body's `message` or `error`, else the start of a text body.
 */
export async function refusalReason (body: { text(): Promise<string> }, contentType: string | string[] | undefined): Promise<string | undefined> {
  let text: string
  try { text = (await body.text()).slice(0, 20_000) } catch { return undefined }
  if (!text.trim()) return undefined
  const type = String(contentType ?? '')
  let reason: string | undefined
  if (/json/i.test(type) || /^\s*[{[]/.test(text)) {
    try {
      const j = JSON.parse(text) as { resourceType?: string, issue?: { diagnostics?: string, details?: { text?: string }, code?: string }[], message?: unknown, error?: unknown } | null
      if (j?.resourceType === 'OperationOutcome' && Array.isArray(j.issue)) reason = j.issue.map((i) => i.details?.text ?? i.diagnostics ?? i.code).filter(Boolean).join('; ')
      else if (typeof j?.message === 'string') reason = j.message
      else if (typeof j?.error === 'string') reason = j.error
      // JSON without a reason we know: itself, unless it says nothing ({} or [])
      else { const all = JSON.stringify(j); reason = all === '{}' || all === '[]' ? undefined : all }
      return reason ? reason.slice(0, 300) : undefined
    } catch { /* not JSON after all: the text below */ }
  }
  reason = text.replace(/\s+/g, ' ').trim()
  return reason ? reason.slice(0, 300) : undefined
}
