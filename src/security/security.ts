import type { EventBus } from '../bus/event-bus.ts'
import type { GatewayConfig } from '../config/schema.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'
import type { ParseOptions } from '../ingest/parse-publish.ts'
import type { DeviceRegistry } from '../rules/device-registry.ts'
import type { Logger } from '../telemetry/logger.ts'
import { createMqttAuth, type MqttAuth } from './auth.ts'
import { type AuthMode, checkBindPolicy, type Listener } from './bind-policy.ts'
import { createSecretVerifier } from './credentials.ts'
import { type HttpSecurity, parseCorsOrigins } from './http-auth.ts'

export interface GatewaySecurity {
  mode: AuthMode
  /** Aedes hooks: authenticate, publish/subscribe/forward ACLs. */
  mqtt: MqttAuth
  /** What the HTTP server checks: tokens (when required) and CORS. */
  http: HttpSecurity
}

/**
 * Decides the gateway's authentication mode from the registry and the addresses it will listen
 * on, logs it, and builds the MQTT and HTTP checks. Throws a GatewayError (exit 1) when the
 * configuration is unsafe (src/security/bind-policy.ts) or CORS_ORIGINS is malformed; called
 * before anything is opened or bound.
 */
export function createGatewaySecurity(
  config: GatewayConfig,
  deps: {
    registry: DeviceRegistry
    bus: EventBus
    log: Logger
    parseOptions: ParseOptions
    /** More listeners to hold to the policy (TLS listeners), beside MQTT_HOST and HTTP_HOST. */
    listeners?: readonly Listener[]
  },
): GatewaySecurity {
  const { registry } = deps
  const log = deps.log.child({ module: 'auth' })
  // Secrets in the registry switch authentication on. Client certificates alone do not: they
  // guard the mqtts listener only, and flipping the HTTP API to tokens with no app to hold one
  // would lock the operator out. A certificate-only fleet off loopback adds an app (app:add).
  const hasCredentials = registry.hasCredentials()
  const decision = checkBindPolicy({
    listeners: [
      { variable: 'MQTT_HOST', host: config.mqtt.host },
      { variable: 'HTTP_HOST', host: config.http.host },
      ...(deps.listeners ?? []),
    ],
    hasCredentials,
    allowAnonymousPublic: config.auth.allowAnonymousPublic,
  })
  if (!decision.ok) throw new GatewayError(ERROR_CODES.config, decision.message)
  const cors = parseCorsOrigins(config.http.corsOrigins)
  if (!cors.ok) throw new GatewayError(ERROR_CODES.config, cors.message)

  const fields = {
    mode: decision.mode,
    devicesWithSecrets: registry.ids().filter((id) => registry.device(id)?.secret).length,
    apps: registry.appIds().length,
    clientCertificates: config.tls.clientCert,
    devicesFile: config.devicesFile,
  }
  if (decision.mode === 'anonymous-public') log.warn(fields, decision.message)
  else log.info(fields, decision.message)
  if (cors.origins.length > 0) log.info({ origins: cors.origins }, 'CORS enabled')

  const verifier = createSecretVerifier()
  return {
    mode: decision.mode,
    mqtt: createMqttAuth({
      registry,
      log: deps.log,
      bus: deps.bus,
      parseOptions: deps.parseOptions,
      verifier,
      required: hasCredentials,
    }),
    http: {
      authRequired: decision.mode === 'authentication-required',
      loopbackOnly: decision.mode === 'anonymous-loopback',
      corsOrigins: cors.origins,
      registry,
      verifier,
    },
  }
}
