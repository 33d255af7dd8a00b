import type { Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify'
import { limitedWarn } from '../broker/listeners.ts'
import type { AlertControlsService } from '../notify/alert-controls.ts'
import type { NotificationsView } from '../notify/notifier.ts'
import { type HttpSecurity, openHttpSecurity, registerHttpSecurity } from '../security/http-auth.ts'
import type { ReadingStore } from '../store/reading-store.ts'
import type { Logger } from '../telemetry/logger.ts'
import { createStoreMonitor } from '../telemetry/store-monitor.ts'
import { errorHandler, notFoundHandler } from './errors.ts'
import { describeOnly, registerOpenApi } from './openapi.ts'
import { registerAggregateRoute } from './routes/aggregate.ts'
import { registerAlertControlsRoutes } from './routes/alert-controls.ts'
import { registerAlertsRoute } from './routes/alerts.ts'
import { registerDashboardRoutes } from './routes/dashboard.ts'
import { registerDevicesRoute } from './routes/devices.ts'
import { registerHealthRoute } from './routes/health.ts'
import { type MetricsEndpoint, registerMetricsRoute } from './routes/metrics.ts'
import { registerNotificationsRoutes } from './routes/notifications.ts'
import { registerReadingsRoute } from './routes/readings.ts'
import { type ReadinessCheck, registerReadyRoute } from './routes/ready.ts'
import { type RulesView, registerRulesRoutes } from './routes/rules.ts'

export type { DryRunResult, RulesView, RuleView } from './routes/rules.ts'

export interface HttpServerDeps {
  store: ReadingStore
  log: Logger
  /** The clock `now` and relative times (`-1h`) are read from; tests pin it. */
  now?: () => number
  /** The loaded rules and a dry run; without it `/api/rules*` answer 503 `rules_unavailable`. */
  rules?: RulesView
  /** `GET /metrics`; without it the route does not exist. */
  metrics?: MetricsEndpoint
  /** `GET /readyz`; without it readiness is a probe of `store` alone. */
  readiness?: ReadinessCheck
  /**
   * App tokens and CORS (src/security/http-auth.ts). Without it: no tokens, no CORS. Security
   * headers are sent either way.
   */
  security?: HttpSecurity
  /** The notification outbox; without it (no notifications file) its list is empty. */
  notifications?: NotificationsView
  /** Acknowledgements and silences; without it their routes do not exist. */
  alertControls?: AlertControlsService
}

export interface HttpServerOptions {
  /**
   * 'debug' (default): one debug line per completed request, so the dashboard's polling does not
   * flood an info-level log. 'off': none. Server errors are logged either way.
   */
  requestLogging?: 'debug' | 'off'
  /**
   * Serve HTTPS (and WSS on the same port) with this certificate and key (HTTP_TLS). Fastify
   * takes it only at creation; absent: plain HTTP.
   */
  https?: { key: Buffer; cert: Buffer }
  /** Bounds on slow and numerous clients (HTTP_* limits); absent: the defaults below. */
  limits?: Partial<HttpLimits>
}

/**
 * What one client may hold of the HTTP server (README "Limits"). Its sockets use the file
 * descriptors MQTT needs too, so a client that trickles a body or opens sockets by the thousand
 * must not keep them.
 */
export interface HttpLimits {
  /**
   * The whole request (headers and body) must arrive within this (HTTP_REQUEST_TIMEOUT); past
   * it: 408 and the socket is closed. Node checks it on the request only, never on a socket
   * upgraded to WebSocket (MQTT at /mqtt), nor on a response being streamed.
   */
  requestTimeoutMs: number
  /** The headers must arrive within this (HTTP_HEADERS_TIMEOUT); past it: 408, closed. */
  headersTimeoutMs: number
  /** Sockets open at once, upgraded WebSockets included (HTTP_MAX_CONNECTIONS); more: dropped. */
  maxConnections: number
  /** Sockets open at once from one address (HTTP_MAX_CONNECTIONS_PER_ADDRESS); more: 503. */
  maxConnectionsPerAddress: number
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  maxConnections: 1_000,
  maxConnectionsPerAddress: 100,
}

/**
 * The HTTP API (DESIGN §6). Registers routes and handlers but does not listen: the gateway calls
 * `listen({ host, port })` and `close()`; tests call `inject()`.
 */
export function createHttpServer(
  deps: HttpServerDeps,
  options: HttpServerOptions = {},
): FastifyInstance {
  const ctx = { store: deps.store, now: deps.now ?? Date.now }
  const limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits }
  // Node sweeps for expired requests every connectionsCheckingInterval (30 s by default), so a
  // timeout is enforced within it of its end; a tenth of the shortest timeout keeps that close.
  const connectionsCheckingInterval = Math.max(
    50,
    Math.min(1_000, Math.floor(Math.min(limits.requestTimeoutMs, limits.headersTimeoutMs) / 10)),
  )
  const app = Fastify({
    requestTimeout: limits.requestTimeoutMs,
    http: { connectionsCheckingInterval },
    // Fastify types its logger with its own copy of pino's types; the instance is the same pino.
    loggerInstance: deps.log.child({ module: 'http' }) as FastifyBaseLogger,
    // `/api/readings/` is what people type; it is the same resource.
    routerOptions: { ignoreTrailingSlash: true },
    // A malformed URL (`/%zz`) never reaches a route; it still gets the one error shape.
    frameworkErrors: (error, request, reply) => {
      errorHandler(error, request, reply)
    },
    logController:
      options.requestLogging === 'off'
        ? new LogController({ disableRequestLogging: true })
        : new DebugRequestLog(),
    ...(options.https ? { https: { ...options.https, connectionsCheckingInterval } } : {}),
  })
  applyConnectionLimits(app, limits, deps.log.child({ module: 'http' }), ctx.now)
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  // Before any route, so every answer (404s and errors included) passes its hooks.
  registerHttpSecurity(app, deps.security ?? openHttpSecurity())

  const readiness = deps.readiness ?? storeReadiness(deps.store)

  // The OpenAPI generator sees only routes registered after it has loaded, hence the API routes
  // in a plugin of their own; in that context the schemas are documentation (see openapi.ts).
  registerOpenApi(app)
  app.register(async (api) => {
    describeOnly(api)
    registerHealthRoute(api)
    registerReadyRoute(api, readiness)
    if (deps.metrics) registerMetricsRoute(api, deps.metrics)
    registerDevicesRoute(api, ctx)
    registerReadingsRoute(api, ctx)
    registerAggregateRoute(api, ctx)
    registerAlertsRoute(api, ctx, deps.alertControls?.withAck)
    if (deps.alertControls) registerAlertControlsRoutes(api, deps.alertControls, ctx.now)
    registerRulesRoutes(api, deps.rules)
    registerNotificationsRoutes(api, deps.notifications)
  })
  registerDashboardRoutes(app)
  return app
}

/**
 * Header timeout and connection caps on the Node server under Fastify, and a warn line (at most
 * one per kind per 10 s) when any of them, or the request timeout, turns a client away. Fastify's
 * own clientError handler answers a timed-out request 408 and closes its socket.
 */
function applyConnectionLimits(
  app: FastifyInstance,
  limits: HttpLimits,
  log: Logger,
  now: () => number,
): void {
  const server = app.server
  const warnLimited = limitedWarn(log, now)
  // Node refuses a headersTimeout above requestTimeout (it would never fire).
  server.headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs)
  server.maxConnections = limits.maxConnections
  const tls = server instanceof TlsServer

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT') return
    warnLimited(
      'request_timeout',
      {
        remoteAddress: socket.remoteAddress,
        requestTimeoutMs: limits.requestTimeoutMs,
        headersTimeoutMs: server.headersTimeout,
      },
      'HTTP request closed with 408: headers or body did not arrive within HTTP_HEADERS_TIMEOUT / HTTP_REQUEST_TIMEOUT',
    )
  })
  // Past maxConnections Node closes the socket before any byte is read; nothing can be answered.
  server.on('drop', (data?: { remoteAddress?: string }) => {
    warnLimited(
      'max_connections',
      { remoteAddress: data?.remoteAddress, maxConnections: limits.maxConnections },
      'HTTP connection dropped: HTTP_MAX_CONNECTIONS reached',
    )
  })

  // The cap is checked before Node's (and TLS's) own 'connection' listeners see the socket, so a
  // refused one is never parsed: a request already sent on it cannot reach a route or an upgrade.
  // 'connection' is the TCP socket, before TLS: with HTTPS a plain-text answer would be garbage.
  const inner = server.listeners('connection') as ((socket: Socket) => void)[]
  server.removeAllListeners('connection')
  const perAddress = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? ''
    const open = perAddress.get(address) ?? 0
    if (open >= limits.maxConnectionsPerAddress) {
      warnLimited(
        'max_connections_per_address',
        { remoteAddress: address, maxConnectionsPerAddress: limits.maxConnectionsPerAddress },
        'HTTP connection refused: HTTP_MAX_CONNECTIONS_PER_ADDRESS reached for its address',
      )
      socket.on('error', () => {})
      if (tls) socket.destroy()
      else socket.end(TOO_MANY_CONNECTIONS, () => socket.destroy())
      return
    }
    perAddress.set(address, open + 1)
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1
      if (left <= 0) perAddress.delete(address)
      else perAddress.set(address, left)
    })
    for (const listener of inner) listener.call(server, socket)
  })
}

const TOO_MANY_CONNECTIONS_BODY = JSON.stringify({
  error: 'too_many_connections',
  message: 'too many connections from this address (HTTP_MAX_CONNECTIONS_PER_ADDRESS)',
  statusCode: 503,
})
const TOO_MANY_CONNECTIONS = [
  'HTTP/1.1 503 Service Unavailable',
  'Connection: close',
  'Retry-After: 1',
  'Content-Type: application/json; charset=utf-8',
  `Content-Length: ${Buffer.byteLength(TOO_MANY_CONNECTIONS_BODY)}`,
  '',
  TOO_MANY_CONNECTIONS_BODY,
].join('\r\n')

/** Readiness of a server without the gateway around it (tests): the store answers a probe. */
function storeReadiness(store: ReadingStore): ReadinessCheck {
  const monitor = createStoreMonitor(store)
  return async () => {
    const { up } = await monitor.check()
    return { ready: up, checks: { store: up ? 'up' : 'down' } }
  }
}

/** Fastify logs two info lines per request by default; one debug line is enough. */
class DebugRequestLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const fields = {
      method: request.method,
      url: request.url,
      statusCode: reply.statusCode,
      responseTimeMs: reply.elapsedTime,
    }
    if (error) reply.log.error({ ...fields, err: error }, 'request errored')
    else reply.log.debug(fields, 'request completed')
  }
}
