import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { cpus, loadavg } from 'node:os'
import { ingestThroughput, type IngestResult } from './ingest.ts'
import { influxThroughput } from './influx.ts'

/** `npm run bench`: speed goals live here, never in timed tests. */
const only = process.argv[2] // `npm run bench -- influx` runs only the InfluxDB drain benchmark
const results: IngestResult[] = []
if (only !== 'influx') for (const o of [{ messages: 20_000, batch: 1, inflight: 20 }, { messages: 5_000, batch: 30, inflight: 20 }]) {
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
if (only !== 'influx') {
  writeFileSync(join(dir, 'ingest.md'), md.join('\n'))
  console.log(`written to ${join(dir, 'ingest.md')}`)
}

// InfluxDB 1.6: drain versus a direct line-protocol write of the same points
if (only === undefined || only === 'influx') {
  const influx = await influxThroughput([{ batch: 5000, concurrency: 1 }, { batch: 5000, concurrency: 2 }, { batch: 5000, concurrency: 4 }, { batch: 10_000, concurrency: 2 }])
  const direct = influx[0]!
  for (const r of influx) console.log(`influx, ${r.label}: ${Math.round(r.pointsPerS)} points/s (${Math.round((100 * r.pointsPerS) / direct.pointsPerS)}% of direct), CPU µs/point vitalmesh ${r.clientCpuUs.toFixed(2)}, influxd ${r.serverCpuUs.toFixed(2)}`)
  writeFileSync(join(dir, 'influx.md'), [
    '# Drain into InfluxDB 1.6.7 versus a direct line-protocol write (200,000 points, 1,000 devices)',
    '',
    `Measured ${new Date().toISOString()} on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, with \`npm run bench -- influx\`. Median of 3 alternating rounds, each into a fresh database. Load average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')} (the machine is shared: compare CPU per point when it is high).`,
    '',
    '| write | seconds | points/s | % of direct | vitalmesh CPU µs/point | influxd CPU µs/point |',
    '|---|---|---|---|---|---|',
    ...influx.map((r) => `| ${r.label} | ${r.seconds.toFixed(2)} | ${Math.round(r.pointsPerS)} | ${Math.round((100 * r.pointsPerS) / direct.pointsPerS)}% | ${r.clientCpuUs.toFixed(2)} | ${r.serverCpuUs.toFixed(2)} |`),
    '',
  ].join('\n'))
  console.log(`written to ${join(dir, 'influx.md')}`)
}
