import { Agent, request, type Dispatcher } from 'undici'
import { StoreUnavailableError, type RejectedReading, type WriteOutcome } from '../store.ts'
import type { StoredReading } from '../../core/index.ts'

export type InfluxAuth = { kind: 'none' } | { kind: 'basic', user: string, password: string } | { kind: 'token', token: string }

/** The server refused the request itself (HTTP 400: e.g. a line it cannot parse or a field type conflict). */
export class BadLinesError extends Error {
  constructor (message: string) { super(message); this.name = 'BadLinesError' }
}

export interface Series { name: string, tags?: Record<string, string>, columns: string[], values: unknown[][] }

/** `Retry-After` is seconds (or an HTTP date); undefined when absent or unreadable. */
export function retryAfterMs (header: string | string[] | undefined, now = Date.now()): number | undefined {
  const h = Array.isArray(header) ? header[0] : header
  if (!h) return undefined
  if (/^\d+(\.\d+)?$/.test(h.trim())) return Math.round(Number(h) * 1000)
  const t = Date.parse(h)
  return Number.isNaN(t) ? undefined : Math.max(0, t - now)
}

/**
 * InfluxDB's HTTP endpoints that every version answers: `/ping`, `/query` (InfluxQL; 2.x
 * through its v1 compatibility API and a DBRP mapping) and the v1 `/write`. Outgoing HTTP
 * through undici with explicit timeouts.
 */
export class InfluxHttp {
  private readonly agent: Agent
  private readonly authHeader: string | undefined

  constructor (readonly url: string, auth: InfluxAuth, private readonly timeoutMs: number) {
    this.agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 10_000 })
    this.authHeader = auth.kind === 'basic' ? 'Basic ' + Buffer.from(`${auth.user}:${auth.password}`).toString('base64')
      : auth.kind === 'token' ? `Token ${auth.token}` : undefined
  }

  private async call (method: 'GET' | 'POST', path: string, params: Record<string, string | undefined>, body?: string | Buffer, contentType?: string): Promise<{ status: number, headers: Dispatcher.ResponseData['headers'], text: string }> {
    const u = new URL(path, this.url)
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') u.searchParams.set(k, v)
    const headers: Record<string, string> = {}
    if (this.authHeader) headers.authorization = this.authHeader
    if (contentType) headers['content-type'] = contentType
    let res: Dispatcher.ResponseData
    try {
      res = await request(u, { method, headers, body, dispatcher: this.agent, signal: AbortSignal.timeout(this.timeoutMs * 2) })
    } catch (e) {
      throw new StoreUnavailableError(`InfluxDB at ${this.url} is not reachable: ${(e as Error).message}`, undefined, { cause: e })
    }
    const text = await res.body.text().catch(() => '')
    return { status: res.statusCode, headers: res.headers, text }
  }

  /** GET /ping; resolves with the server's `X-Influxdb-Version` (undefined when it sends none). */
  async ping (): Promise<string | undefined> {
    const r = await this.call('GET', '/ping', {})
    if (r.status !== 204 && r.status !== 200) throw new StoreUnavailableError(`InfluxDB /ping answered ${r.status}`)
    const v = r.headers['x-influxdb-version']
    return Array.isArray(v) ? v[0] : v
  }

  /** POST /write (v1 API). Throws BadLinesError on 400, StoreUnavailableError otherwise. */
  async write (params: Record<string, string | undefined>, body: string | Buffer): Promise<void> {
    const r = await this.call('POST', '/write', params, body, 'text/plain; charset=utf-8')
    if (r.status === 204 || r.status === 200) return
    throw httpError(r.status, r.text, r.headers['retry-after'])
  }

  /** Runs InfluxQL statements; returns the series of the first statement. */
  async query (q: string, params: { db?: string, rp?: string, epoch?: string } = {}, method: 'GET' | 'POST' = 'GET'): Promise<Series[]> {
    const r = method === 'GET'
      ? await this.call('GET', '/query', { ...params, q })
      : await this.call('POST', '/query', params, new URLSearchParams({ q }).toString(), 'application/x-www-form-urlencoded')
    if (r.status !== 200) throw httpError(r.status, r.text, r.headers['retry-after'])
    const json = JSON.parse(r.text) as { results?: { error?: string, series?: Series[] }[], error?: string }
    const first = json.results?.[0]
    const err = json.error ?? first?.error ?? json.results?.find((x) => x.error)?.error
    if (err) throw new BadLinesError(`InfluxQL error: ${err}`)
    return first?.series ?? []
  }

  async close (): Promise<void> {
    await this.agent.close()
  }
}

function httpError (status: number, text: string, retryAfter: string | string[] | undefined): Error {
  const msg = text.slice(0, 500)
  if (status === 400) return new BadLinesError(`InfluxDB refused the request (400): ${msg}`)
  return new StoreUnavailableError(`InfluxDB answered ${status}: ${msg}`, status === 429 || status === 503 ? retryAfterMs(retryAfter) : undefined)
}

/**
 * Writes lines; on a 400 (one bad line must not block a batch forever) splits the batch
 * in halves until the offending lines are alone, and reports them as rejected. Any other
 * failure rejects, and the drain retries the whole batch: re-writes are idempotent.
 */
export async function writeSplitting<B> (rows: readonly StoredReading[], body: (lo: number, hi: number) => B, send: (body: B) => Promise<void>, isBadRequest: (e: unknown) => string | undefined): Promise<WriteOutcome> {
  const rejected: RejectedReading[] = []
  const go = async (lo: number, hi: number): Promise<void> => {
    try {
      await send(body(lo, hi))
    } catch (e) {
      const reason = isBadRequest(e)
      if (reason === undefined) throw e
      if (hi - lo === 1) { rejected.push({ row: rows[lo]!, reason }); return }
      const mid = (lo + hi) >>> 1
      await go(lo, mid)
      await go(mid, hi)
    }
  }
  if (rows.length) await go(0, rows.length)
  return { rejected }
}
