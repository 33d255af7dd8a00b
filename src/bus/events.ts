import type { Alert, DeadLetter, Reading } from '../contract/types.ts'

/** A publish on `sensors/...` that could not become readings; the dead letter is what subscribers see. */
export interface ReadingRejected {
  deviceId: string
  clientId: string | null
  deadLetter: DeadLetter
}

export interface DevicePresence {
  deviceId: string
  clientId: string
  ts: number
}

export interface StoreError {
  operation: 'write_readings' | 'write_alerts'
  message: string
  /** How many items the failing operation carried. */
  count: number
  ts: number
}

/** The event map of the gateway's bus (DESIGN §2). Every payload is plain data. */
export interface GatewayEvents {
  reading: Reading
  'reading.rejected': ReadingRejected
  alert: Alert
  /**
   * An alert's current firing was acknowledged (POST /api/alerts/{id}/ack): the alert as it is
   * now, with `acknowledged` set. Not a transition: the retained alert is published again.
   */
  'alert.acknowledged': Alert
  'device.online': DevicePresence
  'device.offline': DevicePresence
  'store.error': StoreError
}

export type GatewayEventName = keyof GatewayEvents
