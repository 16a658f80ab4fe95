import { parentPort, workerData } from 'node:worker_threads'
import { ReplayReader } from '../ingest/embedded-store.ts'
import { BacktestPass, cutPage, replayFields, type BacktestChunk, type BacktestWorkerData, type WorkerReply } from './backtest.ts'
import type { Override } from './engine.ts'

/**
 * A worker thread of backtestInWorkers (alerting/backtest.ts): residents come in chunks, are
 * read from the embedded store's file on a read-only connection of this thread's own, and go
 * through both rule sets' replays; at the end (a null chunk) the counts go back to be merged.
 */
const d = workerData as BacktestWorkerData
const port = parentPort!
const reader = new ReplayReader(d.file)
const fields = replayFields([d.draft, d.active])
let overrides = new Map<string, Map<string, Override>>()
const pass = new BacktestPass(d.draft, d.active, { ...d.o, overrides: (id) => overrides.get(id) })
const reply = (m: WorkerReply): void => port.postMessage(m)

port.on('message', (c: BacktestChunk | null) => {
  if (c === null) {
    reader.close()
    reply({ kind: 'part', part: pass.part() })
    port.close()
    return
  }
  overrides = new Map(c.residents.filter((r) => r.overrides).map((r) => [r.profile.id, new Map(r.overrides)]))
  for (const { profile } of c.residents) {
    pass.begin(profile)
    let page = reader.replayRange(profile.id, d.o.from, d.o.to, d.pageSize, fields)
    for (;;) {
      const { rows, next } = cutPage(page, d.pageSize)
      pass.page(rows)
      if (next === null) break
      page = reader.replayRange(profile.id, next, d.o.to, d.pageSize, fields)
    }
    reply({ kind: 'resident', readings: pass.end() })
  }
  reply({ kind: 'chunk' })
})
