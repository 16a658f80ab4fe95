import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes } from 'aedes'

/** Plain Aedes 1.2 with default options and no authentication: the baseline vitalmesh is compared with. */
const port = Number(process.argv[2] ?? 0)
const aedes = await Aedes.createBroker()
const server = createServer(aedes.handle)
server.listen(port, '0.0.0.0', () => {
  const p = (server.address() as AddressInfo).port
  process.stdout.write(JSON.stringify({ ready: true, mqttPort: p, port: p }) + '\n')
})
process.on('SIGTERM', () => { server.close(); aedes.close(() => process.exit(0)) })
