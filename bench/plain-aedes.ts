import { createServer } from 'node:net'
import { Aedes } from 'aedes'

/** Plain Aedes (no authentication, no ingest), the baseline vitalmesh is compared with. */
const port = Number(process.argv[2] ?? 0)
const aedes = await Aedes.createBroker()
const server = createServer((s) => aedes.handle(s))
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, port: (server.address() as { port: number }).port }))
})
process.on('SIGTERM', () => { server.close(); aedes.close(() => process.exit(0)) })
