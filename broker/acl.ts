import { topics, type ReadingError } from '../core/index.ts'

export type Identity = { kind: 'device', id: string } | { kind: 'resident', id: string } | { kind: 'follower', id: string }

/**
 * What an identity may publish: a device only its own vitals topic (and its status, for the
 * last will), a resident only acknowledgements of its own alerts, a follower only its
 * acknowledgements; nobody `$SYS/`.
 */
export function mayPublish (who: Identity, topic: string): boolean {
  if (topic.startsWith('$')) return false
  if (who.kind === 'device') return topic === topics.vitals(who.id) || topic === topics.deviceStatus(who.id)
  if (who.kind === 'follower') return topic === topics.followerAck(who.id)
  return topic === topics.alertAck(who.id)
}

function withinSubtree (filter: string, root: string): boolean {
  // `root` itself, or anything strictly below `root/`; a wildcard there cannot escape the subtree
  return filter === root || filter.startsWith(root + '/')
}

/**
 * What an identity may subscribe to: a device its own `devices/{id}/#` and
 * `standards/#`; a resident its own `alerts/{id}` and below; a follower its own
 * `followers/{id}` and below (never the resident's topics: it is told what it chose).
 * Anything else is refused.
 */
export function maySubscribe (who: Identity, filter: string): boolean {
  if (filter.startsWith('$')) return false
  if (who.kind === 'device') return withinSubtree(filter, `devices/${who.id}`) || withinSubtree(filter, 'standards')
  if (who.kind === 'follower') return withinSubtree(filter, `followers/${who.id}`)
  return withinSubtree(filter, `alerts/${who.id}`)
}

/** The clientId must be the authenticated identity, optionally `identity:suffix` for several sessions. */
export function clientIdMatches (clientId: string, username: string): boolean {
  return clientId === username || (clientId.startsWith(username + ':') && clientId.length > username.length + 1)
}

export function errorPayload (e: ReadingError): Buffer {
  // every error names the seq(s) it concerns when the payload let them be read: `seqs` always, `seq` too for exactly one
  const seqs = e.seqs ?? (e.seq === undefined ? [] : [e.seq])
  return Buffer.from(JSON.stringify(seqs.length === 0 ? { code: e.code, message: e.message } : seqs.length === 1 ? { code: e.code, message: e.message, seq: seqs[0], seqs } : { code: e.code, message: e.message, seqs }))
}
