import { isGatewayTopic, SENSOR_ROOT } from '../contract/topics.ts'

/**
 * Who may publish and read what (DESIGN §8). Pure: principals in, decisions out. These rules apply
 * to authenticated clients; anonymous clients exist only while no credential is configured, and
 * then only the gateway-topics guard applies to them (as before authentication existed).
 *
 * | principal          | publish                                   | subscribe / receive                       |
 * |--------------------|-------------------------------------------|-------------------------------------------|
 * | device {id}        | `sensors/{id}`, `sensors/{id}/...` only;  | `sensors/{id}`, `sensors/{id}/#` (its own  |
 * |                    | with `metrics`, only those metrics        | readings), `devices/{id}/#` (its status,   |
 * |                    |                                           | later config/commands),                    |
 * |                    |                                           | `gateway/deadletter/{id}` (why a publish   |
 * |                    |                                           | of its own was rejected)                   |
 * | app, read-alerts   | nothing                                   | `alerts/#`, `devices/+/status`             |
 * | app, write-alerts  | nothing                                   | as read-alerts (it acknowledges alerts and |
 * |                    |                                           | sets silences over HTTP, not MQTT)         |
 * | app, read-readings | nothing                                   | `sensors/#`                                |
 * | app, admin         | any topic the gateway does not own        | everything (`#`, `$SYS/#`)                 |
 *
 * Nobody but the gateway publishes on `alerts/#`, `devices/+/status`, `gateway/#` (the
 * gateway-topics guard, which stays in force for admins too). A subscription is allowed when its
 * filter lies within one of the grants (`filterWithinGrant`), not when its text happens to match.
 */
export const ROLES = ['read-alerts', 'write-alerts', 'read-readings', 'admin'] as const
export type Role = (typeof ROLES)[number]

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value)
}

export type Principal =
  | {
      kind: 'device'
      id: string
      /** Metrics the device may publish; null: any. */
      metrics: ReadonlySet<string> | null
    }
  | { kind: 'app'; id: string; roles: ReadonlySet<Role> }

/** Topic filters each role may subscribe to (and within). Admin is handled as "everything". */
export const ROLE_GRANTS: Readonly<Record<Exclude<Role, 'admin'>, readonly string[]>> = {
  'read-alerts': ['alerts/#', 'devices/+/status'],
  // Whoever acknowledges alerts must see them: write-alerts includes read-alerts.
  'write-alerts': ['alerts/#', 'devices/+/status'],
  'read-readings': ['sensors/#'],
}

/** What a device may subscribe to: its own data, nothing of other devices. */
export function deviceGrants(deviceId: string): string[] {
  return [
    `${SENSOR_ROOT}/${deviceId}`,
    `${SENSOR_ROOT}/${deviceId}/#`,
    `devices/${deviceId}/#`,
    `gateway/deadletter/${deviceId}`,
  ]
}

/** The filters a principal may subscribe within; `all` for admins. */
export function subscribeGrants(principal: Principal): Grants {
  if (principal.kind === 'device') return deviceGrants(principal.id)
  if (principal.roles.has('admin')) return 'all'
  const grants: string[] = []
  for (const role of principal.roles) if (role !== 'admin') grants.push(...ROLE_GRANTS[role])
  return grants
}

const isDollar = (level: string | undefined) => level?.startsWith('$') === true

/**
 * Whether every topic `filter` can match is also matched by `grant` (both MQTT topic filters).
 * Level by level: a grant's `#` covers whatever is left (its parent level included, as
 * [MQTT-4.7.1-2] says); a grant's `+` covers one level of anything but `#`; a literal covers only
 * itself. A filter's `#` or `+` is covered only by the same or a broader wildcard. Topics starting
 * with `$` are not matched by a leading wildcard [MQTT-4.7.2-1], so `#` does not cover `$SYS/#`.
 *
 *   filterWithinGrant('sensors/dev-1/+', 'sensors/dev-1/#')       true
 *   filterWithinGrant('sensors/+/temperature', 'sensors/dev-1/#') false
 *   filterWithinGrant('sensors/#', 'sensors/dev-1/#')             false
 */
export function filterWithinGrant(filter: string, grant: string): boolean {
  const f = filter.split('/')
  const g = grant.split('/')
  if (isDollar(f[0]) && (g[0] === '#' || g[0] === '+')) return false
  for (let i = 0; i < g.length; i++) {
    const gl = g[i] as string
    if (gl === '#') return true
    if (i >= f.length) return false
    const fl = f[i] as string
    if (fl === '#') return false
    if (gl === '+') continue
    if (fl === '+' || fl !== gl) return false
  }
  // The grant has no more levels: the filter must not have any either.
  return f.length === g.length
}

/** Whether a topic name (no wildcards) matches a filter [MQTT-4.7]. */
export function topicMatchesFilter(topic: string, filter: string): boolean {
  const t = topic.split('/')
  const f = filter.split('/')
  if (isDollar(t[0]) && (f[0] === '#' || f[0] === '+')) return false
  for (let i = 0; i < f.length; i++) {
    const fl = f[i] as string
    if (fl === '#') return true
    if (i >= t.length) return false
    if (fl !== '+' && fl !== t[i]) return false
  }
  return t.length === f.length
}

export type Grants = readonly string[] | 'all'

/** Whether a subscription filter lies within the grants (subscribeGrants, computed once). */
export function filterGranted(grants: Grants, filter: string): boolean {
  return grants === 'all' || grants.some((grant) => filterWithinGrant(filter, grant))
}

/** Whether a message on `topic` may be delivered under the grants. */
export function topicGranted(grants: Grants, topic: string): boolean {
  return grants === 'all' || grants.some((grant) => topicMatchesFilter(topic, grant))
}

export function maySubscribe(principal: Principal, filter: string): boolean {
  return filterGranted(subscribeGrants(principal), filter)
}

/** Whether a message on `topic` may be delivered to the principal. */
export function mayReceive(principal: Principal, topic: string): boolean {
  return topicGranted(subscribeGrants(principal), topic)
}

export type PublishDecision =
  | { ok: true }
  | {
      ok: false
      /** What a log line and the closed connection's error say. */
      reason: 'other_device' | 'not_a_sensor_topic' | 'read_only_app' | 'gateway_topic'
    }

/**
 * Whether the principal may publish on `topic`. The device's metric allow-list is checked
 * separately (`metricAllowed`): it needs the parsed payload for `sensors/{id}`.
 */
export function mayPublish(principal: Principal, topic: string): PublishDecision {
  // `$SYS/...` is the broker's own (Aedes' default authorizePublish refuses it too).
  if (isGatewayTopic(topic) || topic.startsWith('$')) return { ok: false, reason: 'gateway_topic' }
  if (principal.kind === 'app') {
    return principal.roles.has('admin') ? { ok: true } : { ok: false, reason: 'read_only_app' }
  }
  const levels = topic.split('/')
  if (levels[0] !== SENSOR_ROOT || levels.length < 2) {
    return { ok: false, reason: 'not_a_sensor_topic' }
  }
  // `sensors/{id}` or `sensors/{id}/...`; the rest of the topic is ingest's to validate.
  if (levels[1] !== principal.id) return { ok: false, reason: 'other_device' }
  return { ok: true }
}

export function metricAllowed(principal: Principal, metric: string): boolean {
  return principal.kind !== 'device' || principal.metrics === null || principal.metrics.has(metric)
}
