import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'

/**
 * A bare MQTT 3.1.1 client over a TCP socket, for what mqtt.js will not do on purpose:
 * stop reading, send nothing, connect from a chosen source address.
 */
export interface RawClient { socket: Socket, packets: mqttPacket.Packet[], send(p: mqttPacket.Packet): void, next(cmd: string, timeoutMs?: number): Promise<mqttPacket.Packet>, closed: Promise<void> }

export function rawConnect (port: number, opts: { localAddress?: string } = {}): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const packets: mqttPacket.Packet[] = []
    parser.on('packet', (p) => packets.push(p))
    socket.on('data', (d) => parser.parse(d))
    socket.on('error', () => {})
    const closed = new Promise<void>((res) => socket.once('close', () => res()))
    socket.once('connect', () => resolve({
      socket,
      packets,
      closed,
      send: (p) => { socket.write(mqttPacket.generate(p)) },
      next: (cmd, timeoutMs = 5000) => new Promise((res, rej) => {
        const end = Date.now() + timeoutMs
        const tick = (): void => {
          const i = packets.findIndex((p) => p.cmd === cmd)
          if (i >= 0) return res(packets.splice(i, 1)[0]!)
          if (Date.now() > end) return rej(new Error(`no ${cmd} within ${timeoutMs} ms`))
          setTimeout(tick, 10)
        }
        tick()
      }),
    }))
    socket.once('error', reject)
  })
}

export function connectPacket (id: string, password: string, keepalive = 60): mqttPacket.IConnectPacket {
  return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: id, keepalive, username: id, password: Buffer.from(password) }
}
