import { TLSSocket } from 'node:tls'
import type { AedesOptions, Client } from 'aedes'
import { limitedWarn } from '../broker/listeners.ts'
import type { EventBus } from '../bus/event-bus.ts'
import { isIdentifier } from '../contract/identifiers.ts'
import { SENSOR_ROOT } from '../contract/topics.ts'
import { type ParseOptions, parsePublish } from '../ingest/parse-publish.ts'
import { deadLetterDeviceId, type SuppressedPublishes } from '../ingest/suppressed-publishes.ts'
import type { DeviceRegistry } from '../rules/device-registry.ts'
import type { Logger } from '../telemetry/logger.ts'
import {
  filterGranted,
  type Grants,
  mayPublish,
  metricAllowed,
  type Principal,
  subscribeGrants,
  topicGranted,
} from './acl.ts'
import { createSecretVerifier, type SecretVerifier } from './credentials.ts'
import { logSafe } from './log-safe.ts'
import { createSessionOwners, type SessionOwners } from './session-owners.ts'

type Authenticate = NonNullable<AedesOptions['authenticate']>
type AuthorizePublish = NonNullable<AedesOptions['authorizePublish']>
type AuthorizeSubscribe = NonNullable<AedesOptions['authorizeSubscribe']>
type AuthorizeForward = NonNullable<AedesOptions['authorizeForward']>

/** CONNACK return codes of MQTT 3.1.1 (§3.2.2.3) that authentication answers with. */
export const CONNACK = {
  identifierRejected: 2,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const

export interface MqttAuth {
  /** Aedes' authenticate: the same for TCP, TLS and WebSocket, since they share one broker. */
  authenticate: Authenticate
  /**
   * Wraps the rest of the publish chain (topic guard, rate limit, ingest) with the ACL. A refused
   * publish is handed to `suppressed` and goes on down the chain (to take its rate-limit token):
   * acknowledged, dead-lettered, never published.
   */
  authorizePublish(next: AuthorizePublish, suppressed: SuppressedPublishes): AuthorizePublish
  authorizeSubscribe: AuthorizeSubscribe
  authorizeForward: AuthorizeForward
  /** The authenticated principal of a connection; undefined for anonymous ones. */
  principalOf(client: Client): Principal | undefined
}

/**
 * The device id a verified TLS client certificate vouches for: its subject CN, when the TLS
 * handshake verified the certificate against the configured CA (`authorized`). For MQTT over
 * TLS the socket is `client.conn`; for MQTT over secure WebSocket it is the upgrade request's
 * socket. Null when there is no verified certificate or its CN is not a valid device id.
 */
export function certificateIdentity(client: { conn?: unknown; req?: unknown }): string | null {
  const socket =
    client.conn instanceof TLSSocket
      ? client.conn
      : (client.req as { socket?: unknown } | undefined)?.socket
  if (!(socket instanceof TLSSocket) || socket.authorized !== true) return null
  const cn: unknown = socket.getPeerCertificate()?.subject?.CN
  // A subject with several CNs comes back as an array: which one is meant is not ours to guess.
  return isIdentifier(cn) ? cn : null
}

function authError(returnCode: 2 | 4 | 5, message: string) {
  return Object.assign(new Error(message), { returnCode })
}

/**
 * MQTT authentication and authorisation (DESIGN §8), one Aedes hook each.
 *
 * authenticate, in order:
 * 1. a verified client certificate: the device named by its CN (no password needed; a username,
 *    if sent, must be that CN, else 4). A CN naming an app is refused (5): certificates are for
 *    devices.
 * 2. no credentials configured (no secret in the registry): anyone, as before (the bind policy
 *    keeps this to loopback).
 *    A username sent then is ignored: there is nothing to check it against.
 * 3. no username: 5 "not authorized".
 * 4. username = a device or app id, password = its secret (scrypt, constant-time compare);
 *    unknown id or wrong secret: 4 "bad user name or password" (the same answer and about the same
 *    time for both, so ids cannot be probed).
 * 5. the client id: one that names a registered device or app is that principal's alone, so no
 *    one can take over (and disconnect) another's session; else 2 "identifier rejected".
 * 6. any other client id belongs to the principal that holds it: connected, or with a persistent
 *    session (clean session 0) it created; another principal gets 2 "identifier rejected", so it
 *    can neither disconnect the holder nor take its queued messages (session-owners.ts).
 *
 * Refusals are logged at warn at most once per reason per 10 s (with the count suppressed since),
 * client id and username cut to 128 characters with their length: they are the sender's, a
 * CONNECT may carry 64 KB of each, and refusing one costs the sender nothing.
 *
 * Denied publishes (another device's topic, a topic outside `sensors/{id}`, `alerts/...`,
 * `gateway/...`, `$...`, a read-only app publishing, a metric outside the device's allow-list)
 * are acknowledged (MQTT 3.1.1 has no negative PUBACK), never published, forwarded or retained,
 * and dead-lettered as `not_authorized` on the publisher's own `gateway/deadletter/{id}` with a
 * detail naming the rule, counted, and logged at warn once per device and interval by the
 * dead-letter module. The connection stays: closing it would make the client reconnect and send
 * the same message again, forever, losing its later readings; a client that keeps doing it meets
 * the publish rate limit instead (each refused publish still takes a token). Denied subscriptions get SUBACK 0x80
 * for that filter and the connection stays. Forwarding re-checks each message against the
 * receiver's grants (defence in depth: nothing reaches a client that it could not subscribe to).
 */
export function createMqttAuth(deps: {
  registry: DeviceRegistry
  log: Logger
  /** Unused: refused publishes are dead-lettered through SuppressedPublishes (authorizePublish). */
  bus?: EventBus
  /** To read the metrics of `sensors/{id}` payloads for devices with a metric allow-list. */
  parseOptions: ParseOptions
  verifier?: SecretVerifier
  now?: () => number
  /** Whether clients without an identity are refused; default: once the registry has a secret. */
  required?: boolean
  /** Who holds each client id (rule 6); default: a new in-process map. */
  sessionOwners?: SessionOwners
}): MqttAuth {
  const { registry } = deps
  const required = deps.required ?? registry.hasCredentials()
  const log = deps.log.child({ module: 'auth' })
  const verifier = deps.verifier ?? createSecretVerifier()
  const now = deps.now ?? Date.now
  const owners = deps.sessionOwners ?? createSessionOwners()
  const warnLimited = limitedWarn(log, now)
  const principals = new WeakMap<Client, Principal>()
  /** Each principal's subscribe grants, computed once per connection: forwarding is hot. */
  const grants = new WeakMap<Client, Grants>()

  const devicePrincipal = (id: string): Principal => {
    const metrics = registry.device(id)?.metrics
    return { kind: 'device', id, metrics: metrics ? new Set(metrics) : null }
  }

  /** A client id naming a registered principal belongs to it (rule 5 above). */
  const clientIdTaken = (clientId: string, principal: Principal) =>
    clientId !== principal.id &&
    (registry.device(clientId) !== undefined || registry.app(clientId) !== undefined)

  const accept = (
    client: Client,
    principal: Principal,
    via: string,
    done: Parameters<Authenticate>[3],
  ) => {
    if (clientIdTaken(client.id, principal)) {
      warnLimited(
        'auth_client_id_registered',
        { clientId: logSafe(client.id), principal: principal.id, kind: principal.kind },
        'MQTT connection refused: client id belongs to another device or app',
      )
      return done(
        authError(CONNACK.identifierRejected, 'client id belongs to another device or app'),
        false,
      )
    }
    // [MQTT-3.1.3-2] the client id names the session: only its holder may resume or take it over.
    if (!owners.claim(client, client.id, principal.id, client.clean !== false)) {
      warnLimited(
        'auth_client_id_held',
        {
          clientId: logSafe(client.id),
          principal: principal.id,
          kind: principal.kind,
          holder: owners.ownerOf(client.id),
        },
        'MQTT connection refused: client id is in use or has a session of another device or app',
      )
      return done(
        authError(CONNACK.identifierRejected, 'client id belongs to another device or app'),
        false,
      )
    }
    principals.set(client, principal)
    grants.set(client, subscribeGrants(principal))
    log.debug(
      { clientId: logSafe(client.id), principal: principal.id, kind: principal.kind, via },
      'MQTT client authenticated',
    )
    done(null, true)
  }

  const authenticate: Authenticate = (client, username, password, done) => {
    const certified = certificateIdentity(client)
    if (certified !== null) {
      if (username !== undefined && username !== certified) {
        warnLimited(
          'auth_username_not_cn',
          { clientId: logSafe(client.id), certificate: certified, username: logSafe(username) },
          'MQTT connection refused: username is not the certificate CN',
        )
        return done(
          authError(CONNACK.badUsernameOrPassword, 'username is not the certificate CN'),
          false,
        )
      }
      if (registry.app(certified) !== undefined) {
        warnLimited(
          'auth_certificate_app',
          { clientId: logSafe(client.id), certificate: certified },
          'MQTT connection refused: certificate names an app',
        )
        return done(authError(CONNACK.notAuthorized, 'certificates identify devices'), false)
      }
      return accept(client, devicePrincipal(certified), 'certificate', done)
    }
    if (!required) return done(null, true)
    if (username === undefined) {
      warnLimited(
        'auth_no_credentials',
        { clientId: logSafe(client.id) },
        'MQTT connection refused: no credentials given',
      )
      return done(authError(CONNACK.notAuthorized, 'not authorized: credentials required'), false)
    }
    const device = registry.device(username)
    const app = device ? undefined : registry.app(username)
    const hash = device?.secret ?? app?.secret
    verifier.verify(username, password ?? Buffer.alloc(0), hash).then(
      (ok) => {
        if (!ok) {
          // The username is what a client claims; it is logged (who tried), the password never.
          warnLimited(
            'auth_bad_credentials',
            { clientId: logSafe(client.id), username: logSafe(username) },
            'MQTT connection refused: bad username or password',
          )
          return done(authError(CONNACK.badUsernameOrPassword, 'bad user name or password'), false)
        }
        const principal: Principal = app
          ? { kind: 'app', id: app.id, roles: new Set(app.roles) }
          : devicePrincipal(username)
        accept(client, principal, 'password', done)
      },
      (err: unknown) => {
        log.error({ err, clientId: logSafe(client.id) }, 'MQTT authentication failed')
        done(authError(CONNACK.notAuthorized, 'authentication failed'), false)
      },
    )
  }

  /** What a refused publish's dead letter says: which rule, for whom. */
  const refusalDetail = (principal: Principal | undefined, topic: string, reason: string) => {
    if (reason === 'reserved_topic' || (reason === 'gateway_topic' && topic.startsWith('$'))) {
      return `${topic}: topics starting with $ are the broker's own`
    }
    if (reason === 'gateway_topic') return `only the gateway publishes on ${topic}`
    if (principal?.kind === 'app')
      return `app ${principal.id} may not publish (its roles are read-only)`
    if (principal === undefined) return `may not publish on ${topic}`
    if (reason === 'other_device') {
      return `device ${principal.id} may not publish on ${topic}: another device's topic`
    }
    return `device ${principal.id} may publish only on ${SENSOR_ROOT}/${principal.id}/..., not on ${topic}`
  }

  const refuse = (
    suppressed: SuppressedPublishes,
    client: Client,
    principal: Principal | undefined,
    packet: Parameters<AuthorizePublish>[1],
    reason: string,
  ) => {
    log.debug(
      {
        clientId: client.id,
        principal: principal?.id,
        kind: principal?.kind ?? 'anonymous',
        topic: packet.topic,
        reason,
      },
      'publish denied: acknowledged and dead-lettered',
    )
    suppressed.refuse(packet, {
      deviceId: deadLetterDeviceId(principal?.id, packet.topic, client.id),
      clientId: client.id,
      reason: 'not_authorized',
      detail: refusalDetail(principal, packet.topic, reason),
    })
  }

  /** The metrics of a publish the device may not send, or null when all are allowed. */
  const disallowedMetrics = (
    principal: Principal,
    topic: string,
    payload: Buffer,
  ): string[] | null => {
    if (principal.kind !== 'device' || principal.metrics === null) return null
    const levels = topic.split('/')
    if (levels.length === 3) {
      const metric = levels[2] as string
      // Not a metric name at all: ingest dead-letters it as bad_identifier.
      if (!isIdentifier(metric)) return null
      return metricAllowed(principal, metric) ? null : [metric]
    }
    if (levels.length !== 2) return null
    // `sensors/{id}` carries its metrics in the payload. A payload that does not parse is left to
    // ingest, which dead-letters it with the parser's own reason.
    const parsed = parsePublish(topic, payload, now(), deps.parseOptions)
    if (!parsed.ok) return null
    const bad = [...new Set(parsed.readings.map((r) => r.metric))].filter(
      (m) => !metricAllowed(principal, m),
    )
    return bad.length > 0 ? bad : null
  }

  return {
    authenticate,

    authorizePublish(next, suppressed) {
      return (client, packet, callback) => {
        // The broker's own publishes (alerts, status, dead letters), wills without a client, and
        // publishes already refused (over MAX_PACKET_BYTES).
        if (client === null || suppressed.isRefused(packet)) return next(client, packet, callback)
        const principal = principals.get(client)
        if (principal === undefined) {
          // Anonymous (no credentials configured): as before, but never on the broker's $SYS.
          if (packet.topic.startsWith('$')) {
            refuse(suppressed, client, principal, packet, 'reserved_topic')
          }
          return next(client, packet, callback)
        }
        const decision = mayPublish(principal, packet.topic)
        if (!decision.ok) {
          refuse(suppressed, client, principal, packet, decision.reason)
          return next(client, packet, callback)
        }
        if (
          principal.kind === 'device' &&
          principal.metrics !== null &&
          packet.topic.startsWith(`${SENSOR_ROOT}/`)
        ) {
          const payload =
            typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
          const bad = disallowedMetrics(principal, packet.topic, payload)
          if (bad !== null) {
            // Acknowledged and dropped: the device's other readings keep flowing.
            suppressed.refuse(packet, {
              deviceId: principal.id,
              clientId: client.id,
              reason: 'not_authorized',
              detail: `device ${principal.id} may not publish metric ${bad.join(', ')} (allowed: ${[...principal.metrics].join(', ')})`,
            })
          }
        }
        next(client, packet, callback)
      }
    },

    authorizeSubscribe(client, subscription, callback) {
      const principal = principals.get(client)
      const granted = grants.get(client)
      if (principal === undefined || granted === undefined) return callback(null, subscription)
      if (filterGranted(granted, subscription.topic)) return callback(null, subscription)
      log.info(
        {
          clientId: client.id,
          principal: principal.id,
          kind: principal.kind,
          topic: subscription.topic,
        },
        'subscription denied',
      )
      // null negates this one filter: SUBACK 0x80 for it, the connection stays.
      callback(null, null)
    },

    authorizeForward(client, packet) {
      const granted = grants.get(client)
      if (granted === undefined || topicGranted(granted, packet.topic)) return packet
      return null
    },

    principalOf: (client) => principals.get(client),
  }
}
