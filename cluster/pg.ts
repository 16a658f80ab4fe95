import pg from 'pg'

/**
 * A pool to the cluster's PostgreSQL with limits, so that a stuck peer or a dead link ends in an
 * error (logged, retried, shown in /readyz) rather than in a wait without end: a connection
 * attempt 5 s, a lock wait 5 s (a node that froze holding a chain's lock), a statement 30 s, a
 * transaction left idle 60 s (the server ends a frozen node's session and frees its locks), and
 * TCP keepalive for a peer that vanished.
 */
export function pgPool (connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString, max, connectionTimeoutMillis: 5000, keepAlive: true,
    options: '-c lock_timeout=5000 -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000',
  })
  // an idle client's connection dropped by the server (a restart): the pool replaces it; without
  // a listener the error would end the process
  pool.on('error', () => {})
  return pool
}

/** One schema step of a component's PostgreSQL tables; never edit a shipped step: add one. */
export interface PgStep { version: number, why: string, sql: string }

/**
 * Applies a component's steps not applied yet, recorded in `schema_versions` (the PostgreSQL
 * counterpart of core/migrations.ts). One advisory lock for all components: several nodes start
 * at once, and the second must find the first's tables, not create them beside it.
 */
export async function pgMigrate (pool: pg.Pool, component: string, steps: readonly PgStep[]): Promise<void> {
  const c = await pool.connect()
  try {
    await c.query('BEGIN')
    await c.query("SELECT pg_advisory_xact_lock(hashtext('vitalmesh-migrations'))")
    await c.query('CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)')
    const have = (await c.query<{ version: number }>('SELECT version FROM schema_versions WHERE component = $1', [component])).rows[0]?.version ?? 0
    const newest = steps.at(-1)!.version
    if (have > newest) throw new Error(`the PostgreSQL tables of ${component} are at version ${have}, written by a newer vitalmesh than this one (${newest}): a downgrade`)
    for (const step of steps.filter((s) => s.version > have)) await c.query(step.sql)
    await c.query('INSERT INTO schema_versions (component, version) VALUES ($1, $2) ON CONFLICT (component) DO UPDATE SET version = excluded.version', [component, newest])
    await c.query('COMMIT')
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    c.release()
  }
}

/** Runs `f` in a transaction on a client of its own; rolls back when it throws. */
export async function pgTransaction<T> (pool: pg.Pool, f: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect()
  try {
    await c.query('BEGIN')
    const out = await f(c)
    await c.query('COMMIT')
    return out
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    c.release()
  }
}

/** A pool (pgPool) with the component's schema steps applied; closed again when they cannot be. */
export async function pgOpen (connectionString: string, max: number, component: string, steps: readonly PgStep[]): Promise<pg.Pool> {
  const pool = pgPool(connectionString, max)
  try {
    await pgMigrate(pool, component, steps)
  } catch (err) {
    await pool.end()
    throw err
  }
  return pool
}

/**
 * LISTEN on a channel of its own connection: `notified` is called for each NOTIFY, and once
 * after every (re)connection, since what was notified while the connection was down is lost.
 * A dropped connection is made again after a second, for as long as the listener is open.
 */
export function pgListen (connectionString: string, channel: string, notified: () => void): { ready: Promise<void>, close(): Promise<void> } {
  let client: pg.Client | undefined
  let closed = false
  let listening!: () => void
  const ready = new Promise<void>((resolve) => { listening = resolve })
  let retry: NodeJS.Timeout | undefined
  const again = (): void => { if (!closed) retry ??= setTimeout(() => { retry = undefined; void open() }, 1000) }
  const open = async (): Promise<void> => {
    const c = new pg.Client({ connectionString, connectionTimeoutMillis: 5000, keepAlive: true })
    client = c
    c.on('error', () => { again() })
    c.on('end', () => { again() })
    c.on('notification', () => { notified() })
    try {
      await c.connect()
      await c.query(`LISTEN ${channel}`)
      if (closed) { await c.end(); return }
      listening()
      notified()
    } catch {
      await c.end().catch(() => {})
      again()
    }
  }
  void open()
  return {
    ready,
    close: async () => {
      closed = true
      clearTimeout(retry)
      await client?.end().catch(() => {})
    },
  }
}
