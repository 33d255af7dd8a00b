import type { EventEmitter } from 'node:events'
import type { Client } from 'aedes'
import { checkTopicFilter, checkTopicName, type TopicProblem } from './topic-policy.ts'

/**
 * The rules of MQTT 3.1.1 for PUBLISH, SUBSCRIBE and UNSUBSCRIBE that Aedes 1.2 does not enforce
 * (README "MQTT 3.1.1 conformance"), checked on each parsed packet before Aedes handles it. A
 * packet that breaks one is a protocol violation: the connection is closed (§4.8), as Aedes
 * itself does for the rules it checks (an empty topic, a wildcard in a PUBLISH).
 */

/** The fields of a parsed packet the rules read (mqtt-packet's packet). */
export interface ParsedPacket {
  cmd: string
  topic?: string
  subscriptions?: ReadonlyArray<{ topic: string }>
  unsubscriptions?: readonly string[]
}

const NO_FILTERS: TopicProblem = {
  spec: 'MQTT-3.8.3-3',
  reason: 'SUBSCRIBE without a topic filter',
}
const NO_UNSUBSCRIBE_FILTERS: TopicProblem = {
  spec: 'MQTT-3.10.3-2',
  reason: 'UNSUBSCRIBE without a topic filter',
}

/** The first rule `packet` breaks, or null. Pure, and cheap on PUBLISH (one pass of the topic). */
export function checkPacket(packet: ParsedPacket): TopicProblem | null {
  switch (packet.cmd) {
    case 'publish':
      return checkTopicName(packet.topic ?? '') // [MQTT-3.3.2-2] [MQTT-4.7.3-1] [MQTT-4.7.3-2]
    case 'subscribe': {
      const subscriptions = packet.subscriptions ?? []
      // mqtt-packet parses a SUBSCRIBE with only a packet id as one with no filters.
      if (subscriptions.length === 0) return NO_FILTERS // [MQTT-3.8.3-3]
      for (const subscription of subscriptions) {
        const problem = checkTopicFilter(subscription.topic) // §4.7.1, [MQTT-4.7.3-2]
        if (problem) return problem
      }
      return null
    }
    case 'unsubscribe':
      if ((packet.unsubscriptions ?? []).length === 0) return NO_UNSUBSCRIBE_FILTERS // [MQTT-3.10.3-2]
      return null
    default:
      return null
  }
}

/** Aedes' Client keeps its mqtt-packet parser here; its 'packet' listener hands packets on. */
interface ClientInternals {
  _parser?: EventEmitter
}

/**
 * Puts `checkPacket` between a client's parser and Aedes: Aedes' own 'packet' listener gets only
 * the packets that pass. A violation closes the connection through the client's 'error' event,
 * the path Aedes takes for a packet its parser refuses (it logs and counts it the same way).
 * False when the client has no parser where this expects it (nothing installed).
 *
 * Aedes has no public hook before SUBSCRIBE handling (authorizeSubscribe runs per filter, so never
 * for a SUBSCRIBE without one); the parser is private to its Client. Aedes is pinned to an exact
 * version, and test/unit/broker/packet-policy.test.ts fails if the parser is not where this expects.
 */
export function guardPackets(
  client: Client,
  onViolation: (problem: TopicProblem, cmd: string) => void,
): boolean {
  const parser = (client as unknown as ClientInternals)._parser
  // Another Aedes than the pinned one: the connection is served without these checks.
  if (!parser) return false
  const handlers = parser.listeners('packet') as Array<(packet: ParsedPacket) => void>
  parser.removeAllListeners('packet')
  parser.on('packet', function checked(this: EventEmitter, packet: ParsedPacket) {
    const problem = checkPacket(packet)
    if (problem === null) {
      for (const handler of handlers) handler.call(this, packet)
      return
    }
    onViolation(problem, packet.cmd)
    client.emit('error', new Error(`${packet.cmd}: ${problem.reason} [${problem.spec}]`))
  })
  return true
}
