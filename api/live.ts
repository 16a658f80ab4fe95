import type { WebSocket } from 'ws'
import type { ApiKeyPrincipal } from '../registry/index.ts'
import { mayAccessResident } from './access.ts'

interface Client { ws: WebSocket, p?: ApiKeyPrincipal, watch: Set<string> }

export interface LiveReading { residentId: string, deviceId: string, seq: number, ts: number, hr?: number, sys?: number, dia?: number }
export interface LiveAlert { id: string, residentId: string }

/**
 * The live stream (`/v1/live`, WebSocket): after `{"type":"auth","key":"vm_..."}` a client
 * gets readings and alerts within its scope only — a resident its own, a hospital its
 * patients', an operator every alert and the readings of residents it asks to watch
 * (`{"type":"watch","residentId":"..."}`) — and, for operators, node statistics every second.
 */
export class LiveHub {
  private readonly clients = new Set<Client>()

  constructor (private readonly d: {
    verifyApiKey(token: string): ApiKeyPrincipal | undefined
    hospitalOf(residentId: string): string | null | undefined
  }) {}

  attach (ws: WebSocket): void {
    const c: Client = { ws, watch: new Set() }
    this.clients.add(c)
    const timer = setTimeout(() => { if (!c.p) ws.close(4401, 'send {"type":"auth","key":"..."} first') }, 10_000)
    ws.on('message', (data) => {
      let m: { type?: string, key?: string, residentId?: string }
      try { m = JSON.parse(data.toString()) as typeof m } catch { return this.send(c, { type: 'error', code: 'VM_BAD_REQUEST', message: 'messages are JSON' }) }
      if (m.type === 'auth') {
        const p = typeof m.key === 'string' ? this.d.verifyApiKey(m.key) : undefined
        if (!p) { this.send(c, { type: 'error', code: 'VM_UNAUTHORIZED', message: 'invalid API key' }); ws.close(4401, 'unauthorized'); return }
        c.p = p
        if (p.role === 'resident' && p.scope) c.watch.add(p.scope)
        clearTimeout(timer)
        return this.send(c, { type: 'ready', role: p.role, scope: p.scope })
      }
      if (!c.p) return this.send(c, { type: 'error', code: 'VM_UNAUTHORIZED', message: 'authenticate first' })
      if (m.type === 'watch' && typeof m.residentId === 'string') {
        if (!mayAccessResident(c.p, m.residentId, this.d.hospitalOf)) return this.send(c, { type: 'error', code: 'VM_FORBIDDEN', message: `this key may not watch resident ${m.residentId}` })
        c.watch.add(m.residentId)
        return this.send(c, { type: 'watching', residentId: m.residentId })
      }
      this.send(c, { type: 'error', code: 'VM_BAD_REQUEST', message: 'unknown message type' })
    })
    ws.on('close', () => { clearTimeout(timer); this.clients.delete(c) })
    ws.on('error', () => ws.terminate())
  }

  private send (c: Client, msg: unknown): void {
    // a client that stops reading loses messages rather than growing the server's memory
    if (c.ws.readyState === c.ws.OPEN && c.ws.bufferedAmount < 1024 * 1024) c.ws.send(JSON.stringify(msg))
  }

  readings (rows: readonly LiveReading[]): void {
    if (this.clients.size === 0) return
    for (const c of this.clients) {
      if (!c.p || c.watch.size === 0) continue
      const mine = rows.filter((r) => c.watch.has(r.residentId))
      if (mine.length) this.send(c, { type: 'readings', readings: mine.map((r) => ({ residentId: r.residentId, deviceId: r.deviceId, seq: r.seq, ts: r.ts, hr: r.hr, sys: r.sys, dia: r.dia })) })
    }
  }

  alert (a: LiveAlert): void {
    for (const c of this.clients) {
      if (c.p && mayAccessResident(c.p, a.residentId, this.d.hospitalOf)) this.send(c, { type: 'alert', alert: a })
    }
  }

  stats (s: unknown): void {
    for (const c of this.clients) if (c.p?.role === 'operator') this.send(c, { type: 'stats', stats: s })
  }

  close (): void { for (const c of this.clients) c.ws.terminate() }
}
