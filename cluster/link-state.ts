import { VitalmeshError, type DB, type Logger } from '../core/index.ts'

/**
 * What a background loop that talks to a shared server (the audit chain's shipper, the
 * registry's sync) tells operators: a warning when it starts failing (once per distinct error,
 * not once per retry), a line when it works again, and its state for /readyz.
 */
export class LinkState {
  private problem: string | undefined

  constructor (private readonly logger: Logger, private readonly words: { failing: string, back: string, notOk: string }) {}

  ok (): void {
    if (this.problem !== undefined) this.logger.info(this.words.back)
    this.problem = undefined
  }

  failed (err: unknown): void {
    const msg = (err as Error).message
    if (this.problem !== msg) this.logger.warn({ err: msg }, this.words.failing)
    this.problem = msg
  }

  /** Awaits one attempt and notes how it went; its error is thrown on. */
  async watch<T> (attempt: Promise<T>): Promise<T> {
    try {
      const out = await attempt
      this.ok()
      return out
    } catch (err) {
      this.failed(err)
      throw err
    }
  }

  /** 'ok', or why not */
  status (): string { return this.problem === undefined ? 'ok' : `${this.words.notOk}: ${this.problem}` }

  get current (): string | null { return this.problem ?? null }
}

/**
 * A node's shipping of what it noted locally to a shared store in PostgreSQL (the audit trail,
 * the alerts', windows' and outbox's copies): `flush` ships what was noted before the call
 * (calls during a shipping share the next), a timer ships the rest every `intervalMs` (and then does the
 * round's `afterShip`, such as the emitter's or rescuer's work), and the link's state goes to
 * /readyz. A subclass writes `ship`.
 */
export abstract class Shipper {
  protected readonly link: LinkState
  private running: Promise<void> | undefined
  private next: Promise<void> | undefined
  private timer: { stop(): void } | undefined

  constructor (logger: Logger, words: ConstructorParameters<typeof LinkState>[1], private readonly intervalMs = 250) {
    this.link = new LinkState(logger, words)
  }

  protected abstract ship (): Promise<void>

  /** after each timed round's shipping */
  protected async afterShip (): Promise<void> {}

  /**
   * Ships every change noted before the call. A call while a shipping is under way waits for
   * the next one, which every call meanwhile joins: the partitions a node commits at the same
   * moment (cluster/partitions.ts, lingerMs) each flush before their position commits, and
   * they share one shipping instead of taking turns.
   */
  async flush (): Promise<void> {
    if (this.running) {
      this.next ??= this.running.catch(() => {}).then(async () => { this.next = undefined; await this.flush() })
      return await this.next
    }
    this.running = this.ship()
    try { await this.link.watch(this.running) } finally { this.running = undefined }
  }

  start (): void { this.timer = every(this.intervalMs, async () => { await this.flush(); await this.afterShip() }) }

  /** Stops the timer after one last pass (what is left is shipped at the next start). */
  async stop (): Promise<void> {
    this.timer?.stop()
    await this.flush().catch(() => {})
  }

  /** 'ok', or why not (/readyz) */
  status (): string { return this.link.status() }
}

/**
 * A shipper's notes of what changed on this node since it last shipped: a table its triggers
 * fill (`id` and the columns naming what changed). `ship` hands them over in order, 500 at a
 * time, and drops each batch once `send` resolved, so a failed batch is sent again next round.
 */
export class Notes<T extends { id: number }> {
  private readonly next
  private readonly drop

  constructor (db: DB, table: string, columns: string) {
    this.next = db.prepare<[number], T>(`SELECT id, ${columns} FROM ${table} ORDER BY id LIMIT ?`)
    this.drop = db.prepare(`DELETE FROM ${table} WHERE id <= ?`)
  }

  /** Sends every note there is, a batch at a time; resolves with the sum of what `send` says it shipped. */
  async ship (send: (notes: T[]) => Promise<number>): Promise<number> {
    let shipped = 0
    for (let notes = this.next.all(500); notes.length > 0; notes = this.next.all(500)) {
      shipped += await send(notes)
      this.drop.run(notes[notes.length - 1]!.id)
    }
    return shipped
  }
}

/** Drops a node's capturing triggers and creates them again (`sql`: name -> CREATE TRIGGER statement), so their text follows the code. */
export function installTriggers (db: { exec(sql: string): unknown }, triggers: Record<string, string>): void {
  for (const name of Object.keys(triggers)) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
  for (const sql of Object.values(triggers)) db.exec(sql)
}

/** Drops them (a node not in a cluster notes nothing). */
export function dropTriggers (db: { exec(sql: string): unknown }, names: readonly string[]): void {
  for (const name of names) db.exec(`DROP TRIGGER IF EXISTS ${name}`)
}

/**
 * A read of a shared copy in PostgreSQL after this node shipped what it holds (a node reads its
 * own writes); a failure of either is the API's 503 VM_STORE_UNAVAILABLE, saying what.
 */
export async function readShipped<T> (what: string, ship: () => Promise<void>, read: () => Promise<T>): Promise<T> {
  try {
    await ship()
    return await read()
  } catch (err) {
    throw new VitalmeshError('VM_STORE_UNAVAILABLE', `${what} in PostgreSQL cannot be read now: ${(err as Error).message}`, { cause: err })
  }
}

/** Runs `pass` now and then `ms` after each pass has ended (a failed pass included: it has said why), until stopped. */
export function every (ms: number, pass: () => Promise<unknown>): { stop(): void } {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const loop = (): void => { pass().catch(() => {}).finally(() => { if (!stopped) timer = setTimeout(loop, ms) }) }
  timer = setTimeout(loop, 0)
  return { stop: () => { stopped = true; clearTimeout(timer) } }
}
