// Memory of one metric's histogram in a resident's window (forwarder/stats.ts): `node --expose-gc --import tsx bench/hist-mem.ts`
import { addValue, emptyStats } from '../forwarder/stats.ts'
const N = 100_000
const gc = (globalThis as { gc?: () => void }).gc
if (!gc) { console.error('run with node --expose-gc'); process.exit(2) }
gc()
const h0 = process.memoryUsage()
const keep = []
for (let i = 0; i < N; i++) {
  const s = emptyStats()
  // an hour of a wearable's heart rate: 300 readings between 60 and 120 bpm
  for (let k = 0; k < 300; k++) addValue(s, 60 + Math.random() * 60)
  keep.push(s)
}
gc()
const h1 = process.memoryUsage()
console.log(`${(((h1.heapUsed - h0.heapUsed) + (h1.arrayBuffers - h0.arrayBuffers)) / N).toFixed(0)} bytes per histogram (${keep.length})`)
