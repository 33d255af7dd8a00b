/**
 * Topic names and topic filters as MQTT 3.1.1 §4.7 defines them, checked in full.
 *
 * Aedes checks only part of this: its `validateTopic()` (lib/utils.js) lets `a#`, `+a` and `a+`
 * through (its neighbour checks skip the first two characters), and neither it nor mqtt-packet
 * looks for U+0000. Validators return the broken rule, or null; they never throw (hot path).
 */

/** A broken rule: what is wrong, and the statement of the specification it breaks. */
export interface TopicProblem {
  spec: string
  reason: string
}

const NUL = '\u0000'
const SLASH = 47
const PLUS = 43
const HASH = 35

const EMPTY: TopicProblem = { spec: 'MQTT-4.7.3-1', reason: 'empty topic' }
const NUL_CHAR: TopicProblem = { spec: 'MQTT-4.7.3-2', reason: 'topic contains U+0000' }
const WILDCARD_IN_NAME: TopicProblem = {
  spec: 'MQTT-4.7.1-1',
  reason: 'wildcard (+ or #) in a topic name',
}
const HASH_NOT_LAST: TopicProblem = {
  spec: 'MQTT-4.7.1-2',
  reason: '# must be the last character of a filter and a whole level',
}
const PLUS_NOT_LEVEL: TopicProblem = {
  spec: 'MQTT-4.7.1-3',
  reason: '+ must occupy a whole level of a filter',
}

/** A topic name, as in PUBLISH and a will: no wildcards, not empty, no U+0000. */
export function checkTopicName(topic: string): TopicProblem | null {
  if (topic.length === 0) return EMPTY // [MQTT-4.7.3-1]
  if (topic.includes(NUL)) return NUL_CHAR // [MQTT-4.7.3-2]
  if (topic.includes('+') || topic.includes('#')) return WILDCARD_IN_NAME // [MQTT-4.7.1-1]
  return null
}

/** A topic filter, as in SUBSCRIBE: wildcards only as whole levels, `#` only last. */
export function checkTopicFilter(filter: string): TopicProblem | null {
  if (filter.length === 0) return EMPTY // [MQTT-4.7.3-1]
  if (filter.includes(NUL)) return NUL_CHAR // [MQTT-4.7.3-2]
  const last = filter.length - 1
  for (let i = 0; i <= last; i++) {
    const code = filter.charCodeAt(i)
    if (code !== PLUS && code !== HASH) continue
    const levelStart = i === 0 || filter.charCodeAt(i - 1) === SLASH
    if (code === HASH) {
      // [MQTT-4.7.1-2] `#` alone in its level, and that level the last one.
      if (!levelStart || i !== last) return HASH_NOT_LAST
    } else if (!levelStart || (i !== last && filter.charCodeAt(i + 1) !== SLASH)) {
      return PLUS_NOT_LEVEL // [MQTT-4.7.1-3]
    }
  }
  return null
}

/**
 * Whether `topic` matches `filter` (§4.7.1): `+` one level, `#` this level and every one below,
 * the parent included (`a/#` matches `a`). Both are taken as valid; a `$` topic gets no special
 * treatment here (see `dollarTopicSubscribed`).
 */
export function topicMatches(filter: string, topic: string): boolean {
  const filterLevels = filter.split('/')
  const topicLevels = topic.split('/')
  for (let i = 0; i < filterLevels.length; i++) {
    const level = filterLevels[i]
    if (level === '#') return true
    if (i >= topicLevels.length) return false
    if (level !== '+' && level !== topicLevels[i]) return false
  }
  return filterLevels.length === topicLevels.length
}

/**
 * Whether one of `filters` that does not start with a wildcard matches the `$` topic `topic`:
 * only those may deliver it ([MQTT-4.7.2-1]). Aedes keeps `#` and `+/...` from `$` topics on live
 * messages, but sends retained messages at SUBSCRIBE by the persistence's plain match, which
 * knows nothing of `$`.
 */
export function dollarTopicSubscribed(filters: Iterable<string>, topic: string): boolean {
  for (const filter of filters) {
    const first = filter.charCodeAt(0)
    if (first !== PLUS && first !== HASH && topicMatches(filter, topic)) return true
  }
  return false
}
