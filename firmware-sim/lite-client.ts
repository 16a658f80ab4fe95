import { connect as tcp, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'

export interface LiteOptions {
  host: string
  port: number
  clientId: string
  username: string
  password: string
  keepalive?: number
  /** spread source addresses over 127.0.0.0/8 so one machine can open many connections */
  localAddress?: string
  will?: { topic: string, payload: Buffer, qos: 0 | 1, retain: boolean }
}

type Ack = (err: Error | null) => void

/**
 * A deliberately small MQTT 3.1.1 client (CONNECT, PUBLISH QoS 0/1, PUBACK, SUBSCRIBE,
 * PINGREQ) so one process can drive tens of thousands of simulated wearables: a full
 * client library costs far more memory per connection than the firmware it stands for.
 */
export class LiteClient {
  private sock: Socket | undefined
  private parser = mqttPacket.parser({ protocolVersion: 4 })
  private nextId = 1
  private readonly inflight = new Map<number, Ack>()
  private ping: NodeJS.Timeout | undefined
  connected = false
  onMessage: ((topic: string, payload: Buffer) => void) | undefined
  onClose: ((hadError: boolean) => void) | undefined

  constructor (private readonly o: LiteOptions) {}

  connect (): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = tcp({ host: this.o.host, port: this.o.port, ...(this.o.localAddress ? { localAddress: this.o.localAddress } : {}) })
      this.sock = sock
      this.parser = mqttPacket.parser({ protocolVersion: 4 })
      let settled = false
      const fail = (e: Error): void => { if (!settled) { settled = true; reject(e) } }
      sock.setNoDelay(true)
      sock.on('data', (d) => this.parser.parse(d))
      sock.on('error', (e) => fail(e))
      sock.on('close', (hadError) => {
        this.connected = false
        if (this.ping) clearInterval(this.ping)
        for (const ack of this.inflight.values()) ack(new Error('connection closed'))
        this.inflight.clear()
        fail(new Error('connection closed before CONNACK'))
        this.onClose?.(hadError)
      })
      this.parser.on('packet', (p) => {
        switch (p.cmd) {
          case 'connack':
            if (p.returnCode !== 0) { fail(new Error(`CONNACK refused: ${p.returnCode}`)); sock.destroy(); return }
            this.connected = true
            settled = true
            this.ping = setInterval(() => this.write({ cmd: 'pingreq' }), ((this.o.keepalive ?? 60) * 1000) / 2)
            this.ping.unref()
            resolve()
            break
          case 'puback': {
            const ack = this.inflight.get(p.messageId!)
            this.inflight.delete(p.messageId!)
            ack?.(null)
            break
          }
          case 'publish':
            if (p.qos === 1) this.write({ cmd: 'puback', messageId: p.messageId })
            this.onMessage?.(p.topic, Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload))
            break
          default:
        }
      })
      sock.once('connect', () => {
        this.write({
          cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: this.o.clientId, keepalive: this.o.keepalive ?? 60,
          username: this.o.username, password: Buffer.from(this.o.password),
          ...(this.o.will ? { will: { ...this.o.will } } : {}),
        })
      })
    })
  }

  private write (p: object): void {
    if (this.sock && !this.sock.destroyed) this.sock.write(mqttPacket.generate(p as never))
  }

  publish (topic: string, payload: string | Buffer, qos: 0 | 1, ack?: Ack): void {
    if (!this.connected) { ack?.(new Error('not connected')); return }
    if (qos === 0) { this.write({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }); ack?.(null); return }
    const messageId = this.nextId
    this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1
    if (ack) this.inflight.set(messageId, ack)
    this.write({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false, dup: false })
  }

  subscribe (topic: string, qos: 0 | 1): void {
    const messageId = this.nextId
    this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1
    this.write({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
  }

  get pending (): number { return this.inflight.size }

  end (): void {
    if (this.sock && !this.sock.destroyed) { this.write({ cmd: 'disconnect' }); this.sock.end() }
  }

  destroy (): void { this.sock?.destroy() }
}
