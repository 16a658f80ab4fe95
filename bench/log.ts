import { spawnSync } from 'node:child_process'
import { AckPolicy, DeliverPolicy, connect, nanos, type ConsumerMessages } from 'nats'
import { startNatsCluster } from '../test/helpers/nats.ts'
import { JetStreamLog } from '../cluster/log.ts'
import { cpuMs } from './brokers.ts'

/**
 * `npm run bench -- log`: what the reading log costs nats-server by itself (3 servers, 3
 * replicas, file storage, 16 partitions, a consumer per partition as the cluster's owners have),
 * for readings appended with JetStreamLog.append at 3,000 readings/s in three shapes: one
 * reading per message, 3 per message (1,000 messages/s) and 30 per message (100 messages/s).
 * No vitalmesh process: the floor under what `npm run bench -- cluster` measures for nats-server.
 */
const SECONDS = 6
const RATE = 3000

export async function logBenchmark (): Promise<void> {
  const cluster = await startNatsCluster({ size: 3 })
  const pids = (spawnSync('pgrep', ['-f', cluster.dir], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean).map(Number)
  const cpu = (): number => pids.reduce((s, p) => s + cpuMs(p), 0)
  const nc = await connect({ servers: cluster.servers, noAsyncTraces: true })
  const consumers: ConsumerMessages[] = []
  try {
    const log = await JetStreamLog.open(nc, { partitions: 16, replicas: 3 })
    for (let p = 0; p < 16; p++) {
      await log.jsm.consumers.add(log.stream, { name: `owner-${p}`, filter_subject: log.subject(p), deliver_policy: DeliverPolicy.New, ack_policy: AckPolicy.None, mem_storage: true, num_replicas: 1, inactive_threshold: nanos(30_000) })
      const messages = await (await log.js.consumers.get(log.stream, `owner-${p}`)).consume({ max_messages: 100, expires: 5000 })
      consumers.push(messages)
      void (async () => { for await (const _ of messages) { /* delivered */ } })()
    }
    const c0 = cpu()
    await new Promise((r) => setTimeout(r, 5000))
    console.log(`the reading log alone on a 3-node nats-server cluster (replicas 3, file storage, 16 partitions, a consumer each), ${RATE} readings/s for ${SECONDS} s per shape:`)
    console.log(`  idle: nats-server ×3 ${((cpu() - c0) / 5).toFixed(0)} ms of CPU per second`)
    let seq = 0
    for (const perMessage of [1, 3, 30]) {
      const t0 = performance.now(); const cpu0 = cpu()
      let readings = 0
      const appends: Promise<unknown>[] = []
      // every 10 ms a hundredth of a second's messages, each of its own commit (id) and resident (60 residents)
      const timer = setInterval(() => {
        const recs = []
        for (let m = 0; m < RATE / perMessage / 100; m++) {
          const id = seq++
          for (let k = 0; k < perMessage; k++) recs.push({ id, deviceId: `d${id % 60}`, residentId: `r${id % 60}`, seq: id * 1000 + k, ts: Date.now(), hr: 70, sys: 120, dia: 80 })
        }
        appends.push(log.append(recs).then(() => { readings += recs.length }))
      }, 10)
      await new Promise((r) => setTimeout(r, SECONDS * 1000))
      clearInterval(timer)
      await Promise.all(appends)
      const ms = cpu() - cpu0; const s = (performance.now() - t0) / 1000
      console.log(`  ${perMessage} per message (${Math.round(RATE / perMessage)} messages/s): nats-server ×3 ${(ms / s).toFixed(0)} ms of CPU per second, ${((ms * 1000) / readings).toFixed(1)} µs per reading, ${((ms * 1000 * perMessage) / readings).toFixed(0)} µs per message`)
    }
  } finally {
    for (const m of consumers) m.stop()
    await nc.drain().catch(() => {})
    await cluster.stop()
  }
}
