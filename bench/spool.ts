// Spool commit cost alone (no broker): `npx tsx bench/spool.ts [messages per commit] [readings per message]`; ROUNDS=3000 for a steady state (300 by default is mostly warm-up); FSYNC=no for a spool that commits without (cluster mode's)
import { openDatabase, silentLogger } from '../core/index.ts'
import { Spool } from '../ingest/index.ts'
import { mkdtempSync } from 'node:fs'
const dir = mkdtempSync('/tmp/sp-')
const spool = new Spool(openDatabase(dir + '/s.db'), silentLogger(), { deadLetterMax: 10, fsync: process.env.FSYNC !== 'no' })
const seqs = new Array(20).fill(1)
const per = Number(process.argv[2] ?? 200); const n = Number(process.argv[3] ?? 1)
const t0 = performance.now(); const c0 = process.cpuUsage()
let msgs = 0; let last = 0; spool.onCommit((rows) => { last = rows.at(-1)!.id })
for (let round = 0; round < Number(process.env.ROUNDS ?? 300); round++) {
  const ps = []
  for (let i = 0; i < per; i++) {
    const readings = []
    for (let k = 0; k < n; k++) readings.push({ seq: seqs[i % 20]++, ts: Date.now(), hr: 70, sys: 120, dia: 80 })
    ps.push(spool.appendAsync({ deviceKey: i % 20, deviceId: 'device-000' + (i % 20), residentId: 'resident-00' + (i % 20), readings }))
  }
  await Promise.all(ps)
  msgs += per
  if (round % 10 === 9) spool.ack('store', last)
}
const c = process.cpuUsage(c0); const t = performance.now() - t0
console.log('msgs/commit', per, 'readings/msg', n, 'wall µs/msg', (t * 1000 / msgs).toFixed(2), 'cpu µs/msg', ((c.user + c.system) / msgs).toFixed(2), 'commits', spool.stats.commits)
