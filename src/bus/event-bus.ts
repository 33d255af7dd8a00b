import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { GatewayEventName, GatewayEvents } from './events.ts'

export type Listener<E extends GatewayEventName> = (payload: GatewayEvents[E]) => void

export interface EventBus {
  /** Subscribes `listener` as `owner`; a throwing listener is logged and the others still run. */
  on<E extends GatewayEventName>(owner: string, event: E, listener: Listener<E>): void
  emit<E extends GatewayEventName>(event: E, payload: GatewayEvents[E]): void
  /** Removes every listener `owner` added, so a stopping module leaves nothing behind. */
  removeOwner(owner: string): void
  listenerCount(event: GatewayEventName): number
}

/** Typed in-process bus, after zigbee2mqtt's eventBus: isolated listeners, owned subscriptions. */
export function createEventBus(log: Logger): EventBus {
  const emitter = new EventEmitter()
  // Every module subscribes once per event; more than this means a leak, not a design.
  emitter.setMaxListeners(50)
  const owned = new Map<string, Array<{ event: GatewayEventName; wrapped: (p: unknown) => void }>>()

  return {
    on(owner, event, listener) {
      const wrapped = (payload: unknown) => {
        try {
          listener(payload as never)
        } catch (err) {
          log.error({ err, owner, event }, `listener ${owner}/${event} failed`)
        }
      }
      emitter.on(event, wrapped)
      const list = owned.get(owner) ?? []
      list.push({ event, wrapped })
      owned.set(owner, list)
    },
    emit(event, payload) {
      emitter.emit(event, payload)
    },
    removeOwner(owner) {
      for (const { event, wrapped } of owned.get(owner) ?? []) emitter.off(event, wrapped)
      owned.delete(owner)
    },
    listenerCount(event) {
      return emitter.listenerCount(event)
    },
  }
}
