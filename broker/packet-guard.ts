import type { Client } from 'aedes'

interface MqttParser {
  packet: { length: number, cmd?: string }
  _parseLength(): boolean
  _emitError(err: Error): void
}

/**
 * Refuses an MQTT packet whose declared length exceeds the limit as soon as its fixed
 * header is read, before its body is buffered: a device cannot make the broker hold a
 * 256 MB packet in memory. The connection is closed (MQTT 3.1.1 has no error reply).
 */
export function guardPacketSize (client: Client, maxBytes: number, onRefused: (length: number) => void): void {
  const parser = (client as unknown as { _parser: MqttParser })._parser
  const parseLength = parser._parseLength
  parser._parseLength = function (this: MqttParser): boolean {
    const ok = parseLength.call(this)
    if (ok && this.packet.length > maxBytes) {
      onRefused(this.packet.length)
      const err = new Error(`VM_PAYLOAD_TOO_LARGE: packet of ${this.packet.length} bytes exceeds the limit of ${maxBytes} bytes`)
      this._emitError(err)
      return false
    }
    return ok
  }
}
