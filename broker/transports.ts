import { readFileSync } from 'node:fs'
import { createServer as createTlsServer, type Server as TlsServer, type TlsOptions } from 'node:tls'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, createWebSocketStream } from 'ws'
import type { Broker } from './broker.ts'

export interface TlsFiles {
  cert: string
  key: string
  /** CA of device certificates: mutual TLS is offered when set */
  ca?: string
  requireClientCert: boolean
  /** TLS handshake deadline (the connect timeout) */
  handshakeTimeoutMs: number
}

function tlsOptions (t: TlsFiles): TlsOptions {
  return {
    cert: readFileSync(t.cert),
    key: readFileSync(t.key),
    ...(t.ca ? { ca: readFileSync(t.ca), requestCert: true } : {}),
    // without requireClientCert a client may come without (or with a bad) certificate and use a password;
    // the broker trusts a certificate only when `authorized` is true
    rejectUnauthorized: t.requireClientCert,
    handshakeTimeout: t.handshakeTimeoutMs,
    minVersion: 'TLSv1.2',
  }
}

function listen<S extends TlsServer | HttpsServer> (server: S, host: string, port: number): Promise<S> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve(server) })
  })
}

/** MQTT over TLS (8883 by convention). */
export function listenTls (broker: Broker, t: TlsFiles, host: string, port: number): Promise<TlsServer> {
  const server = createTlsServer(tlsOptions(t), (socket) => broker.handle(socket))
  server.on('tlsClientError', () => {}) // a failed handshake is the client's problem; nothing to serve
  broker.adopt(server)
  return listen(server, host, port)
}

export type UpgradeHandler = ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) & { wss: WebSocketServer }

/** Handles an HTTP upgrade: `/mqtt` becomes an MQTT-over-WebSocket connection of the broker, anything else a 404. */
export function mqttUpgradeHandler (handle: (stream: Duplex, req: IncomingMessage) => void): UpgradeHandler {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/mqtt') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws)
      stream.on('error', () => stream.destroy())
      handle(stream, req)
    })
  }
  return Object.assign(onUpgrade, { wss })
}

/** Hands upgraded `/mqtt` WebSocket connections of an HTTP(S) server to the broker. */
export function attachMqttOverWebSocket (server: { on(e: 'upgrade', l: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): unknown }, handle: (stream: Duplex, req: IncomingMessage) => void): WebSocketServer {
  const onUpgrade = mqttUpgradeHandler(handle)
  server.on('upgrade', onUpgrade)
  return onUpgrade.wss
}

/** MQTT over secure WebSocket at /mqtt on a port of its own (the HTTP API stays plain behind a proxy). */
export async function listenWss (broker: Broker, t: TlsFiles, host: string, port: number): Promise<HttpsServer> {
  const server = createHttpsServer(tlsOptions(t), (_req, res) => { res.writeHead(404).end() })
  server.on('tlsClientError', () => {})
  const wss = attachMqttOverWebSocket(server, (stream, req) => broker.handle(stream, req))
  server.on('close', () => { for (const c of wss.clients) c.terminate(); wss.close() })
  broker.adopt(server as unknown as import('node:net').Server)
  return listen(server, host, port)
}
