import WebSocket from 'ws'

export interface LiveClient {
  ws: WebSocket
  messages: Record<string, unknown>[]
  /** resolves with the close code once the server (or the client) closed the socket */
  closed: Promise<number>
  /** the close code, or a rejection when the socket is still open after `ms` */
  closedWithin(ms: number): Promise<number>
  /** the first message (from `from` on) that matches, waiting for it */
  next(match: (m: Record<string, unknown>) => boolean, timeoutMs?: number, from?: number): Promise<Record<string, unknown>>
  send(data: string | Buffer, binary?: boolean): void
  close(): Promise<void>
}

/** A client of the live stream (/v1/live) that records every message it receives. */
export async function openLive (port: number, key?: string): Promise<LiveClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/live`)
  const messages: Record<string, unknown>[] = []
  const waiters = new Set<() => void>()
  ws.on('message', (d) => {
    try { messages.push(JSON.parse(d.toString()) as Record<string, unknown>) } catch { messages.push({ unparsable: d.toString() }) }
    for (const w of [...waiters]) w()
  })
  const closed = new Promise<number>((res) => ws.once('close', (code) => { res(code); for (const w of [...waiters]) w() }))
  ws.on('error', () => {})
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej) })
  const next = (match: (m: Record<string, unknown>) => boolean, timeoutMs = 5000, from = 0): Promise<Record<string, unknown>> => new Promise((res, rej) => {
    const check = (): boolean => {
      const m = messages.slice(from).find(match)
      if (m) { waiters.delete(check2); clearTimeout(t); res(m); return true }
      if (ws.readyState === ws.CLOSED) { waiters.delete(check2); clearTimeout(t); rej(new Error(`socket closed; messages: ${JSON.stringify(messages.slice(from))}`)); return true }
      return false
    }
    const check2 = (): void => { check() }
    const t = setTimeout(() => { waiters.delete(check2); rej(new Error(`no matching live message in ${timeoutMs} ms; got ${JSON.stringify(messages.slice(from))}`)) }, timeoutMs)
    if (!check()) waiters.add(check2)
  })
  const c: LiveClient = {
    ws, messages, closed, next,
    closedWithin: (ms) => Promise.race([closed, new Promise<number>((_res, rej) => setTimeout(() => rej(new Error(`the socket is still open after ${ms} ms`)), ms).unref())]),
    send: (data, binary = false) => ws.send(data, { binary }),
    close: async () => { if (ws.readyState !== ws.CLOSED) { ws.close(); await closed } },
  }
  if (key !== undefined) {
    c.send(JSON.stringify({ type: 'auth', key }))
    await next((m) => m.type === 'ready' || m.type === 'error')
  }
  return c
}
