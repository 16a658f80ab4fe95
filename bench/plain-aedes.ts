import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes } from 'aedes'

/** Plain Aedes 1.2 with default options and no authentication: the baseline of bench/connections.ts. */
const aedes = await Aedes.createBroker()
const server = createServer(aedes.handle)
server.listen(0, '0.0.0.0', () => {
  process.stdout.write(JSON.stringify({ mqttPort: (server.address() as AddressInfo).port }) + '\n')
})
