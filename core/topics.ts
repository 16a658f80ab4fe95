import { isValidId } from './ids.ts'

/** The MQTT topic contract shared by broker, ingest, alerting and the firmware. */
export const topics = {
  vitals: (deviceId: string) => `vitals/${deviceId}`,
  deviceErrors: (deviceId: string) => `devices/${deviceId}/errors`,
  deviceRoot: (deviceId: string) => `devices/${deviceId}/`,
  /** retained `{online, at}`: set by the broker at connect and disconnect, and by the device's last will */
  deviceStatus: (deviceId: string) => `devices/${deviceId}/status`,
  alerts: (residentId: string) => `alerts/${residentId}`,
  /** a resident acknowledges an alert by publishing `{"id": "<alert id>"}` here */
  alertAck: (residentId: string) => `alerts/${residentId}/ack`,
  /** retained: the resident's active alerts */
  alertStatus: (residentId: string) => `alerts/${residentId}/status`,
  standards: 'standards/current',
  /** a follower's notices: copies of the resident's alerts it chose, and escalations that reached it */
  followerAlerts: (followerId: string) => `followers/${followerId}/alerts`,
  /** a follower acknowledges the resident's alert by publishing `{"id": "<alert id>"}` here */
  followerAck: (followerId: string) => `followers/${followerId}/ack`,
} as const

/** Returns the device id of a `vitals/{deviceId}` topic, or undefined. */
export function parseVitalsTopic (topic: string): string | undefined {
  if (!topic.startsWith('vitals/')) return undefined
  const id = topic.slice(7)
  return isValidId(id) ? id : undefined
}
