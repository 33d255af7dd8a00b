import type { Client } from 'aedes'

/** Persistent sessions without a connection whose owner is remembered, oldest forgotten first. */
export const SESSION_OWNERS_MAX_IDLE = 10_000

export interface SessionOwners {
  /**
   * Claims `clientId` for `principalId` on this connection: false when another principal holds it
   * (connected, or with a persistent session it created). A claim with clean session 1 ends the
   * persistent session (Aedes discards it), so the entry goes once its connections close.
   */
  claim(client: Client, clientId: string, principalId: string, clean: boolean): boolean
  /** The principal holding a client id, if any. */
  ownerOf(clientId: string): string | undefined
  /** How many client ids are remembered (connected or with a persistent session). */
  readonly size: number
}

interface Conn {
  once(event: 'close', listener: () => void): unknown
}

interface Entry {
  principalId: string
  /** Whether a persistent session (clean session 0) exists for the id. */
  persistent: boolean
  live: Set<Client>
}

/**
 * Which principal (device or app id) holds each client id in use or with a persistent session
 * (issue 16 point 6): a persistent session belongs to the identity that created it.
 *
 * Memory: connected ids are bounded by MAX_CONNECTIONS; an entry of a clean-session connection
 * goes when its last connection closes. A persistent session's entry stays while Aedes keeps the
 * session (its in-memory persistence keeps it until a clean connect), but at most `maxIdle` of
 * them without a connection: past that the one idle longest is forgotten, and its client id can
 * then be claimed by anyone again (as before this module). In-process only: with REDIS_URL each
 * instance knows the owners of the connections it served.
 */
export function createSessionOwners(options: { maxIdle?: number } = {}): SessionOwners {
  const maxIdle = options.maxIdle ?? SESSION_OWNERS_MAX_IDLE
  const entries = new Map<string, Entry>()
  /** Persistent entries without a connection, in the order they became idle (Map order). */
  const idle = new Map<string, Entry>()

  const release = (clientId: string, entry: Entry, client: Client) => {
    if (!entry.live.delete(client) || entry.live.size > 0) return
    if (entries.get(clientId) !== entry) return
    if (!entry.persistent) {
      entries.delete(clientId)
      return
    }
    idle.set(clientId, entry)
    if (idle.size > maxIdle) {
      const [oldest] = idle.keys()
      if (oldest !== undefined) {
        idle.delete(oldest)
        entries.delete(oldest)
      }
    }
  }

  return {
    claim(client, clientId, principalId, clean) {
      let entry = entries.get(clientId)
      if (entry !== undefined && entry.principalId !== principalId) return false
      if (entry === undefined) {
        entry = { principalId, persistent: false, live: new Set() }
        entries.set(clientId, entry)
      }
      idle.delete(clientId)
      // [MQTT-3.1.2-6] clean session 1 discards any previous session; 0 creates or resumes one.
      entry.persistent = !clean
      if (!entry.live.has(client)) {
        entry.live.add(client)
        const owned = entry
        const conn = (client as { conn?: { destroyed?: boolean; once?: Conn['once'] } }).conn
        // Closed while its password was being checked: 'close' has already been emitted.
        if (conn === undefined || conn.destroyed === true) release(clientId, owned, client)
        else conn.once?.('close', () => release(clientId, owned, client))
      }
      return true
    },
    ownerOf: (clientId) => entries.get(clientId)?.principalId,
    get size() {
      return entries.size
    },
  }
}
