import { randomBytes } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { hostname } from 'node:os'
import { migrate, type DB, type Migration } from '../core/index.ts'

export const NODE_SOURCE_MIGRATIONS: Migration[] = [{
  version: 1,
  why: "cluster mode: the name under which this node's own records (its audit trail, its registry changes) are shipped to the cluster's shared logs, fixed at its first start",
  up: 'CREATE TABLE IF NOT EXISTS node_source (id INTEGER PRIMARY KEY CHECK (id = 1), source TEXT NOT NULL, path TEXT)',
}]

/**
 * This node's name in the cluster's shared logs (the audit chain, the registry log): the one
 * stored in its database, else `${node}` (or the host name) with a random suffix, stored now. Not
 * the node id itself, which defaults to host name and process id and changes at every start: a
 * restarted node must find its own entries to go on after them. Kept with the database's path:
 * a data directory copied to make another node gets a name of its own at its first start (its
 * audit trail is then shipped again under that name, in full: twice in the chain, never lost).
 */
export function nodeSource (db: DB, node: string): string {
  migrate(db, 'node-source', NODE_SOURCE_MIGRATIONS)
  const path = db.memory ? null : realpathSync(db.name)
  const row = db.prepare<[], { source: string, path: string | null }>('SELECT source, path FROM node_source WHERE id = 1').get()
  // the same database at another path is a copy (another node made from this one's data
  // directory): it takes a name of its own, or the logs would take its records for this one's
  if (row && (row.path === null || row.path === path)) return row.source
  const source = `${node || hostname()}~${randomBytes(4).toString('hex')}`
  db.prepare('INSERT INTO node_source (id, source, path) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET source = excluded.source, path = excluded.path').run(source, path)
  return source
}
