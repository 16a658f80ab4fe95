import { InfluxDB, HttpError, setLogger, type WriteApi } from '@influxdata/influxdb-client'
import { RULE_FIELDS, type Activity, type Logger, type RuleField, type RuleReading, type StoredReading } from '../../core/index.ts'
import { StoreUnavailableError, type TelemetryStore, type WindowAggregate, type WriteOutcome } from '../store.ts'
import { BadLinesError, InfluxHttp, retryAfterMs, writeSplitting, type Series } from './http.ts'
import { MEASUREMENT, PRECISION, fieldsAndTime, ql, qid, tagSet, type TagLookup } from './schema.ts'

export interface InfluxSettings {
  api: 'auto' | 'v1' | 'v2'
  url: string
  /** v1: database and retention policy; also the names `/query` uses on every version */
  db: string
  rp?: string | undefined
  user?: string | undefined
  password?: string | undefined
  /** v2 (2.x, 3.x, 1.8+) */
  token?: string | undefined
  org?: string | undefined
  bucket?: string | undefined
  timeoutMs: number
  /** v1 only: CREATE DATABASE on first use (development and tests) */
  createDatabase: boolean
}

/**
 * Readings of the same time (from several devices) in the embedded store's order, by device
 * then seq: InfluxDB returns them in an order that depends on the query. Rows come in time
 * order; they are sorted (stably) only when two share a time.
 */
function sameTimeInOrder<T> (rows: T[], ts: (x: T) => number, device: (x: T) => string, seq: (x: T) => number): T[] {
  for (let i = 1; i < rows.length; i++) {
    if (ts(rows[i]!) === ts(rows[i - 1]!)) {
      return rows.sort((a, b) => ts(a) - ts(b) || (device(a) < device(b) ? -1 : device(a) > device(b) ? 1 : 0) || seq(a) - seq(b))
    }
  }
  return rows
}

/** Reads back through InfluxQL on `/query`, which 1.x, 2.x (DBRP mapping) and 3.x answer. */
abstract class InfluxQLStore {
  private readonly seriesCache = new Map<string, { residentId: string, prefix: string, bytes: Buffer }>()
  constructor (protected readonly http: InfluxHttp, protected readonly s: InfluxSettings, private readonly tags: TagLookup | undefined) {}

  /** the series key (measurement and escaped tags) of a reading's device, built once per device, not per reading */
  private series (r: StoredReading): { residentId: string, prefix: string, bytes: Buffer } {
    let key = this.seriesCache.get(r.deviceId)
    if (key === undefined || key.residentId !== r.residentId) {
      const prefix = `${MEASUREMENT},${tagSet(r, this.tags?.(r.deviceId))} `
      key = { residentId: r.residentId, prefix, bytes: Buffer.from(prefix) }
      if (this.seriesCache.size > 100_000) this.seriesCache.clear()
      this.seriesCache.set(r.deviceId, key)
    }
    return key
  }

  protected lines (rows: readonly StoredReading[]): string[] {
    const out: string[] = []
    for (const r of rows) out.push(this.series(r).prefix + fieldsAndTime(r))
    return out
  }

  /**
   * The request body as bytes, written in place (no string per line, no join), and where each
   * line starts: a 400 splits the batch by these offsets to find the line InfluxDB refused.
   */
  protected body (rows: readonly StoredReading[]): { buf: Buffer, starts: Int32Array } {
    let buf = Buffer.allocUnsafe(rows.length * 256)
    const starts = new Int32Array(rows.length + 1)
    let off = 0
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!
      const key = this.series(r).bytes
      const fields = fieldsAndTime(r)
      const need = off + key.length + fields.length * 3 + 1
      if (need > buf.length) { const bigger = Buffer.allocUnsafe(Math.max(need, buf.length * 2)); buf.copy(bigger, 0, 0, off); buf = bigger }
      starts[i] = off
      off += key.copy(buf, off)
      off += buf.write(fields, off)
      buf[off++] = 10 // \n
    }
    starts[rows.length] = off
    return { buf, starts }
  }

  protected get from (): string {
    return qid(MEASUREMENT)
  }

  protected get queryDb (): string { return this.s.db }

  async queryRange (residentId: string, from: number, to: number, limit: number): Promise<StoredReading[]> {
    const series = await this.http.query(
      `SELECT * FROM ${this.from} WHERE resident = ${ql(residentId)} AND time >= ${from}ms AND time < ${to}ms ORDER BY time ASC LIMIT ${Math.max(1, Math.floor(limit))}`,
      { db: this.queryDb, rp: this.s.rp, epoch: 'ms' })
    const out: StoredReading[] = []
    for (const s of series) {
      const col = (name: string): number => s.columns.indexOf(name)
      const [it, idev, ires, iseq, ihr, isys, idia, iact, imot, iconf] = ['time', 'device', 'resident', 'seq', 'hr', 'sys', 'dia', 'activity', 'motion', 'confidence'].map(col) as number[]
      for (const v of s.values) {
        const r: StoredReading = { deviceId: String(v[idev!]), residentId: String(v[ires!]), seq: Number(v[iseq!]), ts: Number(v[it!]) }
        if (v[ihr!] != null) r.hr = Number(v[ihr!])
        if (v[isys!] != null) r.sys = Number(v[isys!])
        if (v[idia!] != null) r.dia = Number(v[idia!])
        if (iact! >= 0 && v[iact!] != null) r.activity = v[iact!] as StoredReading['activity']
        if (imot! >= 0 && v[imot!] != null) r.motion = v[imot!] === true
        if (iconf! >= 0 && v[iconf!] != null) r.confidence = Number(v[iconf!])
        out.push(r)
      }
    }
    return sameTimeInOrder(out, (r) => r.ts, (r) => r.deviceId, (r) => r.seq)
  }

  /**
   * queryRange's readings for a rule-set backtest: time and the `fields` the rule sets look at
   * (the others undefined). influxd reads and encodes only those columns: about half the time
   * of SELECT * (bench/results/backtest.md). seq is asked for too, so that no reading drops out
   * where every field asked for is empty (InfluxQL leaves out rows with no value), and the
   * device, for readings of the same time: InfluxDB's order of those depends on the fields
   * asked for, so both this and queryRange put them in the embedded store's order (device, seq).
   */
  async replayRange (residentId: string, from: number, to: number, limit: number, fields: readonly RuleField[] = RULE_FIELDS): Promise<RuleReading[]> {
    const series = await this.http.query(
      `SELECT ${['seq', 'device', ...fields].map(qid).join(', ')} FROM ${this.from} WHERE resident = ${ql(residentId)} AND time >= ${from}ms AND time < ${to}ms ORDER BY time ASC LIMIT ${Math.max(1, Math.floor(limit))}`,
      { db: this.queryDb, rp: this.s.rp, epoch: 'ms' })
    const rows: { r: RuleReading, device: string, seq: number }[] = []
    for (const s of series) {
      const [it, iseq, idev, ihr, isys, idia, iact] = ['time', 'seq', 'device', 'hr', 'sys', 'dia', 'activity'].map((c) => s.columns.indexOf(c)) as [number, number, number, number, number, number, number]
      const num = (v: unknown): number | undefined => v == null ? undefined : Number(v)
      for (const v of s.values) {
        const r: RuleReading = { ts: Number(v[it]), hr: ihr >= 0 ? num(v[ihr]) : undefined, sys: isys >= 0 ? num(v[isys]) : undefined, dia: idia >= 0 ? num(v[idia]) : undefined, activity: iact >= 0 && v[iact] != null ? v[iact] as Activity : undefined }
        rows.push({ r, device: String(v[idev]), seq: Number(v[iseq]) })
      }
    }
    return sameTimeInOrder(rows, (x) => x.r.ts, (x) => x.device, (x) => x.seq).map((x) => x.r)
  }

  async aggregate (residentId: string, from: number, to: number, windowMs: number): Promise<WindowAggregate[]> {
    const series = await this.http.query(
      `SELECT count(seq) AS count, mean(hr) AS hrMean, min(hr) AS hrMin, max(hr) AS hrMax, mean(sys) AS sysMean, max(sys) AS sysMax, mean(dia) AS diaMean, max(dia) AS diaMax FROM ${this.from} WHERE resident = ${ql(residentId)} AND time >= ${from}ms AND time < ${to}ms GROUP BY time(${Math.floor(windowMs)}ms) fill(none)`,
      { db: this.queryDb, rp: this.s.rp, epoch: 'ms' })
    return toAggregates(series)
  }

  /** Raw InfluxQL (dashboards' queries in tests, roll-ups). */
  query (q: string): Promise<Series[]> {
    return this.http.query(q, { db: this.queryDb, rp: this.s.rp, epoch: 'ms' })
  }

  async ping (): Promise<void> {
    await this.http.ping()
  }
}

export function toAggregates (series: Series[]): WindowAggregate[] {
  const out: WindowAggregate[] = []
  for (const s of series) {
    for (const v of s.values) {
      const o: WindowAggregate = { start: Number(v[0]), count: 0 }
      s.columns.forEach((c, i) => {
        if (i === 0 || v[i] == null) return
        ;(o as unknown as Record<string, number>)[c] = Number(v[i])
      })
      if (o.count > 0) out.push(o)
    }
  }
  return out.sort((a, b) => a.start - b.start)
}

const badRequest = (e: unknown): string | undefined => e instanceof BadLinesError ? e.message : undefined

/** InfluxDB 1.x before 1.8: the v1 `/write` API (database, retention policy, user, password). */
export class InfluxV1Store extends InfluxQLStore implements TelemetryStore {
  readonly kind = 'influx-v1'
  private ensured = false

  constructor (s: InfluxSettings, tags?: TagLookup) {
    super(new InfluxHttp(s.url, s.user ? { kind: 'basic', user: s.user, password: s.password ?? '' } : { kind: 'none' }, s.timeoutMs), s, tags)
  }

  async write (rows: readonly StoredReading[]): Promise<WriteOutcome> {
    if (this.s.createDatabase && !this.ensured) {
      await this.http.query(`CREATE DATABASE ${qid(this.s.db)}`, {}, 'POST')
      this.ensured = true
    }
    const { buf, starts } = this.body(rows)
    // lines lo..hi-1, without the last newline
    return writeSplitting(rows, (lo, hi) => buf.subarray(starts[lo]!, starts[hi]! - 1), (body) => this.http.write({ db: this.s.db, rp: this.s.rp, precision: PRECISION }, body), badRequest)
  }

  /** Line protocol as it is, for roll-ups. */
  writeLines (lines: string[]): Promise<void> {
    return this.http.write({ db: this.s.db, rp: this.s.rp, precision: PRECISION }, lines.join('\n'))
  }

  async close (): Promise<void> { await this.http.close() }
}

/**
 * InfluxDB 2.x, 3.x and 1.8+: the v2 write API through `@influxdata/influxdb-client`
 * (url, token, org, bucket). The client's own buffer and retries are switched off: a
 * failed flush rejects at once and the rows stay in the spool, which is the durability
 * layer (the client drops lines when its retry buffer is full).
 */
export class InfluxV2Store extends InfluxQLStore implements TelemetryStore {
  readonly kind = 'influx-v2'
  private readonly client: InfluxDB

  constructor (s: InfluxSettings, tags?: TagLookup, private readonly logger?: Logger) {
    super(new InfluxHttp(s.url, s.token ? { kind: 'token', token: s.token } : { kind: 'none' }, s.timeoutMs), s, tags)
    this.client = new InfluxDB({ url: s.url, token: s.token ?? '', timeout: s.timeoutMs })
    // The client logs failed writes to the console by default. The drain already logs them
    // (with the retry plan), so the client's messages go to our logger at debug level.
    // setLogger is process-wide in the library: the last store created wins, which is fine
    // for one store per process.
    const log = logger ?? undefined
    setLogger({
      error: (message: string, err?: unknown) => log?.debug({ err }, `influxdb-client: ${message}`),
      warn: (message: string, err?: unknown) => log?.debug({ err }, `influxdb-client: ${message}`),
    })
  }

  protected override get queryDb (): string { return this.s.db || this.s.bucket || '' }

  private api (n: number): WriteApi {
    return this.client.getWriteApi(this.s.org ?? '', this.s.bucket ?? '', PRECISION, {
      batchSize: n + 1,
      flushInterval: 0,
      maxRetries: 0,
      maxBufferLines: n + 1,
      maxBatchBytes: 1 << 30,
      // reject the flush instead of retrying inside the client: the drain owns retries
      writeFailed: (error: Error) => Promise.reject(error),
    })
  }

  private async send (lines: string[]): Promise<void> {
    const api = this.api(lines.length)
    try {
      api.writeRecords(lines)
      await api.flush()
    } catch (e) {
      if (e instanceof HttpError) {
        if (e.statusCode === 400) throw new BadLinesError(`InfluxDB refused the request (400): ${e.body ?? e.message}`)
        throw new StoreUnavailableError(`InfluxDB answered ${e.statusCode}: ${(e.body ?? e.message).slice(0, 500)}`,
          e.statusCode === 429 || e.statusCode === 503 ? v2RetryAfterMs(e) : undefined, { cause: e })
      }
      throw new StoreUnavailableError(`InfluxDB at ${this.s.url} is not reachable: ${(e as Error).message}`, undefined, { cause: e })
    } finally {
      await api.dispose()
    }
  }

  async write (rows: readonly StoredReading[]): Promise<WriteOutcome> {
    const lines = this.lines(rows)
    return writeSplitting(rows, (lo, hi) => lines.slice(lo, hi), (body) => this.send(body), badRequest)
  }

  writeLines (lines: string[]): Promise<void> { return this.send(lines) }

  async close (): Promise<void> {
    this.logger?.debug('influx v2 store closed')
    await this.http.close()
  }
}

/**
 * `Retry-After` is in seconds; the client's `HttpError.retryAfter()` returns the header's
 * integer as it is, so read the header ourselves.
 */
function v2RetryAfterMs (e: HttpError): number | undefined {
  const fromHeader = retryAfterMs(e.headers?.['retry-after'])
  if (fromHeader !== undefined) return fromHeader
  return e.retryAfter() > 0 ? e.retryAfter() * 1000 : undefined
}

/** Which write API a server speaks, from `/ping`'s `X-Influxdb-Version`: 1.8+ has the v2 API. */
export function apiForVersion (version: string | undefined): 'v1' | 'v2' {
  const m = /(\d+)\.(\d+)/.exec(version ?? '')
  if (!m) return 'v1' // no header: the v1 /write API is the one most servers answer
  const major = Number(m[1]); const minor = Number(m[2])
  return major > 1 || (major === 1 && minor >= 8) ? 'v2' : 'v1'
}

/**
 * The configured InfluxDB store. With `api: auto` the API is detected from `/ping` on
 * first use, not at start: vitalmesh must start (and spool) while InfluxDB is down.
 */
export class InfluxStore implements TelemetryStore {
  readonly kind = 'influx'
  private inner: InfluxV1Store | InfluxV2Store | undefined
  private readonly probe: InfluxHttp

  constructor (private readonly s: InfluxSettings, private readonly tags?: TagLookup, private readonly logger?: Logger) {
    this.probe = new InfluxHttp(s.url, { kind: 'none' }, s.timeoutMs)
  }

  async resolve (): Promise<InfluxV1Store | InfluxV2Store> {
    if (this.inner) return this.inner
    let api = this.s.api
    if (api === 'auto') {
      const version = await this.probe.ping()
      api = apiForVersion(version)
      this.logger?.info({ version, api }, 'InfluxDB write API detected from /ping')
    }
    this.inner ??= api === 'v1' ? new InfluxV1Store(this.s, this.tags) : new InfluxV2Store(this.s, this.tags, this.logger)
    return this.inner
  }

  get api (): string | undefined { return this.inner?.kind }

  async write (rows: readonly StoredReading[]): Promise<WriteOutcome> { return (await this.resolve()).write(rows) }
  async queryRange (r: string, f: number, t: number, l: number): Promise<StoredReading[]> { return (await this.resolve()).queryRange(r, f, t, l) }
  async replayRange (r: string, f: number, t: number, l: number, fields?: readonly RuleField[]): Promise<RuleReading[]> { return (await this.resolve()).replayRange(r, f, t, l, fields) }
  async aggregate (r: string, f: number, t: number, w: number): Promise<WindowAggregate[]> { return (await this.resolve()).aggregate(r, f, t, w) }
  async query (q: string): Promise<Series[]> { return (await this.resolve()).query(q) }
  async writeLines (lines: string[]): Promise<void> { return (await this.resolve()).writeLines(lines) }
  async ping (): Promise<void> { await this.probe.ping() }
  async close (): Promise<void> {
    await this.probe.close()
    await this.inner?.close()
  }
}
