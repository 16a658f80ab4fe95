import type { JetStreamManager, NatsConnection, StreamConfig, Subscription } from 'nats'
import type { ClusterCredentialChange, CredentialEntry, CredentialLog } from '../registry/index.ts'
import { whileClusterForms } from './log.ts'

/** Entries kept: far more than the changes a county makes between two restarts of a node. */
const KEEP = 100_000
const STREAM = 'VITALMESH_CREDENTIALS'
const SUBJECT = 'vm.credentials'

const utf8 = new TextEncoder()
const utf8d = new TextDecoder()

/**
 * The cluster's credential log (registry/credential-sync.ts) on JetStream, so that a cluster
 * over NATS needs no Redis to carry rotations and revocations: a stream of one subject, each
 * entry a JSON change, the position its stream sequence. A read takes what is there after the
 * position with direct gets (the stream leader answers, no consumer to place); when there is
 * nothing it waits for a core subscription on the subject, which JetStream's publishes reach
 * too, or for `blockMs`, as XREAD BLOCK does for the Redis log.
 */
export async function natsCredentialLog (nc: NatsConnection, opts: { replicas: number }): Promise<CredentialLog> {
  const jsm: JetStreamManager = await nc.jetstreamManager()
  const js = nc.jetstream()
  const config: Partial<StreamConfig> = {
    name: STREAM, subjects: [SUBJECT], storage: 'file' as StreamConfig['storage'], num_replicas: opts.replicas,
    max_msgs: KEEP, discard: 'old' as StreamConfig['discard'],
  }
  try {
    await jsm.streams.info(STREAM)
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err
    await whileClusterForms(async () => { await jsm.streams.add(config) }).catch((e: unknown) => { if (!/already in use/i.test((e as Error).message)) throw e })
  }
  let wake: (() => void) | undefined
  const sub: Subscription = nc.subscribe(SUBJECT, { callback: () => { wake?.() } })

  const readNow = async (after: number): Promise<CredentialEntry[]> => {
    const out: CredentialEntry[] = []
    for (let seq = after + 1; out.length < 500;) {
      let m
      try {
        // next_by_subj: the next entry at or after seq (entries beyond KEEP were discarded)
        m = await jsm.streams.getMessage(STREAM, { seq, next_by_subj: SUBJECT } as unknown as { seq: number })
      } catch (err) {
        if (/no message found/i.test((err as Error).message)) break
        throw err
      }
      let c: Partial<ClusterCredentialChange & { node: string }> = {}
      try { c = JSON.parse(utf8d.decode(m.data)) as typeof c } catch { /* not vitalmesh's: applying it changes nothing */ }
      const position = String(m.seq)
      if (c.kind === 'apiKey') out.push({ position, node: c.node ?? '', kind: 'apiKey', id: c.id ?? '', revoked: true, secretHash: '' })
      else out.push({ position, node: c.node ?? '', kind: 'device', id: c.id ?? '', revoked: c.revoked === true, secretHash: c.secretHash ?? '' })
      seq = m.seq + 1
    }
    return out
  }

  return {
    async append (c) {
      await js.publish(SUBJECT, utf8.encode(JSON.stringify({ node: c.node, kind: c.kind, id: c.id, revoked: c.revoked, secretHash: c.secretHash })), { timeout: 5000 })
    },
    async read (position, blockMs) {
      const after = Number(position) || 0
      // armed before the first look, so an entry published in between ends the wait at once
      let timer: NodeJS.Timeout | undefined
      const woken = new Promise<void>((resolve) => { wake = resolve; timer = setTimeout(resolve, blockMs) })
      try {
        const now = await readNow(after)
        if (now.length) return now
        await woken
        return await readNow(after)
      } finally {
        clearTimeout(timer)
        wake = undefined
      }
    },
    async close () {
      wake?.()
      sub.unsubscribe()
    },
  }
}
