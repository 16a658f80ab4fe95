import { connect as netConnect, type Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import mqttPacket from 'mqtt-packet'

/**
 * One client process of bench/connections.ts: connects devices [from, to) as bare MQTT
 * clients (no library state per connection), from source addresses spread over
 * 127.1.x.y (200 per address), prints "held N" and keeps the sockets open until killed.
 */
const [credsFile, portArg, fromArg, toArg] = process.argv.slice(2) as [string, string, string, string]
const creds = JSON.parse(readFileSync(credsFile, 'utf8')) as { id: string, secret: string }[]
const port = Number(portArg)
const from = Number(fromArg)
const to = Number(toArg)
const PER_ADDRESS = 200
const IN_FLIGHT = 128

function sourceAddress (i: number): string {
  const a = Math.floor(i / PER_ADDRESS)
  return `127.1.${a >> 8}.${(a & 255) + 1}`
}

function connectOne (i: number): Promise<Socket> {
  const c = creds[i]!
  const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: c.id, keepalive: 600, username: c.id, password: Buffer.from(c.secret) })
  return new Promise((res, rej) => {
    const s = netConnect({ port, host: '127.0.0.1', localAddress: sourceAddress(i) })
    s.once('error', rej)
    s.once('connect', () => s.write(packet))
    s.once('data', (d) => {
      // CONNACK: 0x20 0x02 <flags> <return code>
      if (d[0] === 0x20 && d[3] === 0) { s.removeListener('error', rej); s.on('error', () => {}); res(s) } else rej(new Error(`connection ${i} refused: ${d.toString('hex')}`))
    })
  })
}

const sockets: Socket[] = []
let next = from
await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
  while (next < to) {
    const i = next++
    sockets.push(await connectOne(i))
  }
}))
process.stdout.write(`held ${sockets.length}\n`)
setInterval(() => {}, 1 << 30)
