import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify'
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
  const app = Fastify({
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
    ...(options.https ? { https: options.https } : {}),
  })
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
