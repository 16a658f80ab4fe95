import { VitalmeshError, type Logger } from '../core/index.ts'

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
