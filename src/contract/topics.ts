import type { Alert } from './types.ts'

/** Every topic the gateway reads or writes is built or parsed here (DESIGN §3). */

export const SENSOR_ROOT = 'sensors'
export const ALERT_ROOT = 'alerts'
export const DEVICE_ROOT = 'devices'
export const DEAD_LETTER_ROOT = 'gateway/deadletter'

/** Dead letters whose topic names no valid device id are filed under this id. */
export const UNKNOWN_DEVICE_ID = '_unknown'

export function isSensorTopic(topic: string): boolean {
  return topic === SENSOR_ROOT || topic.startsWith(`${SENSOR_ROOT}/`)
}

export function sensorTopic(deviceId: string, metric?: string): string {
  return metric === undefined
    ? `${SENSOR_ROOT}/${deviceId}`
    : `${SENSOR_ROOT}/${deviceId}/${metric}`
}

export function alertTopic(alert: Pick<Alert, 'severity' | 'deviceId' | 'ruleId'>): string {
  return `${ALERT_ROOT}/${alert.severity}/${alert.deviceId}/${alert.ruleId}`
}

export function deviceStatusTopic(deviceId: string): string {
  return `${DEVICE_ROOT}/${deviceId}/status`
}

export function deadLetterTopic(deviceId: string): string {
  return `${DEAD_LETTER_ROOT}/${deviceId}`
}

/**
 * Topics only the gateway publishes on: alerts, device status, dead letters. A client's publish
 * (or last will) there would overwrite the gateway's retained state with something else.
 */
export function isGatewayTopic(topic: string): boolean {
  return (
    topic.startsWith(`${ALERT_ROOT}/`) ||
    topic.startsWith('gateway/') ||
    (topic.startsWith(`${DEVICE_ROOT}/`) && topic.endsWith('/status'))
  )
}
