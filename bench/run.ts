import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { cpus } from 'node:os'
import { spawnSync } from 'node:child_process'
import { ingestThroughput, type IngestResult } from './ingest.ts'

/** `npm run bench`: speed goals live here, never in timed tests. */
const results: IngestResult[] = []
for (const o of [{ messages: 20_000, batch: 1, inflight: 20 }, { messages: 5_000, batch: 30, inflight: 20 }]) {
  const r = await ingestThroughput(o)
  console.log(`ingest, ${r.label}: ${Math.round(r.readingsPerS)} readings/s, server CPU ${r.serverCpuUsPerReading.toFixed(1)} µs/reading, load generator CPU ${r.clientCpuUsPerReading.toFixed(1)} µs/reading`)
  results.push(r)
}
const dir = join(import.meta.dirname, 'results')
mkdirSync(dir, { recursive: true })
const md = [
  `# Ingest throughput (one mqtt.js publisher, QoS 1, durable PUBACK)`,
  '',
  `Measured ${new Date().toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, with \`npm run bench\`.`,
  '',
  '| load | readings | seconds | readings/s | server CPU µs/reading | load generator CPU µs/reading |',
  '|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.label} | ${r.readings} | ${r.seconds.toFixed(2)} | ${Math.round(r.readingsPerS)} | ${r.serverCpuUsPerReading.toFixed(1)} | ${r.clientCpuUsPerReading.toFixed(1)} |`),
  '',
]
writeFileSync(join(dir, 'ingest.md'), md.join('\n'))
console.log(`written to ${join(dir, 'ingest.md')}`)

// a quick run of the connection benchmark (2000 devices); the full one is `npm run bench:connections`
const quick = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'connections.ts'), '2000'], { stdio: 'inherit' })
if (quick.status !== 0) process.exitCode = quick.status ?? 1
