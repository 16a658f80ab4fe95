import { Counter, Gauge, Registry } from 'prom-client'
import type { ErrorCode } from '../core/index.ts'

/**
 * The broker's Prometheus metrics, on a registry of their own (no prom-client global), so
 * two nodes in one process (tests) never share counters. Rates (connects/s, publishes/s)
 * are `rate()` of the counters in PromQL.
 */
export class BrokerMetrics {
  readonly registry = new Registry()
  readonly connects: Counter
  readonly authFailures: Counter
  readonly publishes: Counter
  readonly errors: Counter<'code'>

  constructor (sample: { connectedDevices(): number, connectedClients(): number, bytes(): { in: number, out: number } }) {
    const registers = [this.registry]
    this.connects = new Counter({ name: 'vitalmesh_mqtt_connects_total', help: 'MQTT connections accepted (after authentication)', registers })
    this.authFailures = new Counter({ name: 'vitalmesh_mqtt_auth_failures_total', help: 'MQTT CONNECTs refused by authentication or clientId check', registers })
    this.publishes = new Counter({ name: 'vitalmesh_mqtt_publishes_total', help: 'PUBLISH packets received from clients', registers })
    this.errors = new Counter({ name: 'vitalmesh_errors_total', help: 'errors returned to devices and clients, by stable code', labelNames: ['code'], registers })
    new Gauge({ name: 'vitalmesh_connected_devices', help: 'devices with at least one MQTT session on this node', registers, collect () { this.set(sample.connectedDevices()) } })
    new Gauge({ name: 'vitalmesh_connected_clients', help: 'MQTT sessions on this node (devices and residents)', registers, collect () { this.set(sample.connectedClients()) } })
    new Counter({ name: 'vitalmesh_mqtt_received_bytes_total', help: 'bytes read from MQTT transports (TCP, TLS, WebSocket)', registers, collect () { this.reset(); this.inc(sample.bytes().in) } })
    new Counter({ name: 'vitalmesh_mqtt_sent_bytes_total', help: 'bytes written to MQTT transports (TCP, TLS, WebSocket)', registers, collect () { this.reset(); this.inc(sample.bytes().out) } })
  }

  error (code: ErrorCode): void { this.errors.inc({ code }) }
}
