import mqtt, { type MqttClient, type IClientOptions } from 'mqtt'

export async function connect (port: number, username: string, password: string, opts: IClientOptions = {}, beforeConnect?: (c: MqttClient) => void): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: username, username, password, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 5000, ...opts })
  // e.g. collect(): a persistent session's queued messages can arrive with the CONNACK, before `await connect()` returns
  beforeConnect?.(c)
  await new Promise<void>((res, rej) => {
    c.once('connect', () => res())
    c.once('error', (e) => rej(e))
    // a node that is gone (connection refused, or closed before the CONNACK) ends the wait too
    c.once('close', () => rej(new Error('closed before CONNACK')))
  })
  return c
}

export function reading (seq: number, v: { hr?: number, sys?: number, dia?: number, ts?: number } = {}): string {
  return JSON.stringify({ v: 1, seq, ts: v.ts ?? Date.now(), hr: v.hr ?? 72, sys: v.sys ?? 118, dia: v.dia ?? 76 })
}

/** Collects the messages a client receives, by topic. */
export function collect (c: MqttClient): { messages: { topic: string, body: any }[], next(topic: string, pred?: (b: any) => boolean, timeoutMs?: number): Promise<any> } {
  const messages: { topic: string, body: any }[] = []
  c.on('message', (topic, payload) => {
    let body: unknown
    try { body = JSON.parse(payload.toString()) } catch { body = payload.toString() }
    messages.push({ topic, body })
  })
  return {
    messages,
    next (topic, pred = () => true, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs
      return new Promise((res, rej) => {
        const tick = (): void => {
          const m = messages.find((x) => x.topic === topic && pred(x.body))
          if (m) return res(m.body)
          if (Date.now() > end) return rej(new Error(`no message on ${topic} within ${timeoutMs} ms; got ${JSON.stringify(messages)}`))
          setTimeout(tick, 20)
        }
        tick()
      })
    },
  }
}

/** SUBSCRIBE and return the SUBACK return code per filter (128 = refused), in order. */
export async function subackCodes (c: MqttClient, filters: string[]): Promise<Record<string, number>> {
  let granted: number[]
  try {
    const res = await c.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])))
    granted = res.map((g) => g.qos)
  } catch (e) {
    // mqtt.js rejects when any code is 128; the SUBACK packet is on the error
    const p = (e as { packet?: { granted?: number[] } }).packet
    if (!p?.granted) throw e
    granted = p.granted
  }
  return Object.fromEntries(filters.map((f, i) => [f, granted[i]!]))
}
