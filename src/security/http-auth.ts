import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isIdentifier } from '../contract/identifiers.ts'
import { type DeviceRegistry, EMPTY_REGISTRY } from '../rules/device-registry.ts'
import type { Role } from './acl.ts'
import { isLoopbackHost } from './bind-policy.ts'
import { createSecretVerifier, type SecretVerifier } from './credentials.ts'

/**
 * HTTP API access (DESIGN §8): app tokens, CORS and security headers.
 *
 * Token: `Authorization: Bearer <appId>.<secret>`, the app's id and secret from the registry (the
 * same pair it uses as MQTT username and password; secrets are base64url, so the last `.`
 * separates them). Only in the header: a token in the URL would end up in access logs, browser
 * history and Referer headers.
 *
 * Tokens are required exactly when the gateway requires authentication (credentials configured,
 * src/security/bind-policy.ts): then a gateway that listens beyond loopback always has them, and
 * one without credentials either listens on loopback only or was told ALLOW_ANONYMOUS_PUBLIC.
 */
export type HttpAccess =
  /** Anyone: the dashboard page and its files, health and readiness probes, the API docs. */
  | 'public'
  /** Prometheus: a client on this machine (no proxy in between), or an admin token. */
  | 'loopback-or-admin'
  | Role

/** Route (as registered) -> what it needs. Anything under /api not listed needs admin. */
export const HTTP_ACCESS: ReadonlyArray<{ method: string; url: string; access: HttpAccess }> = [
  { method: 'GET', url: '/api/devices', access: 'read-readings' },
  { method: 'GET', url: '/api/readings', access: 'read-readings' },
  { method: 'GET', url: '/api/readings/aggregate', access: 'read-readings' },
  { method: 'GET', url: '/api/alerts', access: 'read-alerts' },
  { method: 'GET', url: '/api/rules', access: 'read-alerts' },
  { method: 'POST', url: '/api/alerts/:id/ack', access: 'write-alerts' },
  { method: 'GET', url: '/api/silences', access: 'read-alerts' },
  { method: 'POST', url: '/api/silences', access: 'write-alerts' },
  { method: 'DELETE', url: '/api/silences/:id', access: 'write-alerts' },
  { method: 'GET', url: '/api/notifications', access: 'read-alerts' },
  { method: 'POST', url: '/api/notifications/:id/retry', access: 'write-alerts' },
  { method: 'POST', url: '/api/rules/test', access: 'admin' },
  { method: 'GET', url: '/metrics', access: 'loopback-or-admin' },
]

/**
 * What a request needs. `routeUrl` is the matched route's pattern (`request.routeOptions.url`),
 * not the raw URL, so encodings and trailing slashes cannot dodge the table; undefined when no
 * route matched (a 404 to be). HEAD is GET's.
 */
export function requiredAccess(
  method: string,
  routeUrl: string | undefined,
  path: string,
): HttpAccess {
  const m = method === 'HEAD' ? 'GET' : method
  if (routeUrl !== undefined) {
    const entry = HTTP_ACCESS.find((e) => e.method === m && e.url === routeUrl)
    if (entry) return entry.access
    return routeUrl === '/api' || routeUrl.startsWith('/api/') ? 'admin' : 'public'
  }
  // No route: the answer is a 404 either way, but under /api only a caller with a token learns it.
  return path === '/api' || path.startsWith('/api/') ? 'admin' : 'public'
}

export function rolesGrant(roles: readonly Role[], access: Exclude<HttpAccess, 'public'>): boolean {
  if (roles.includes('admin')) return true
  // Whoever acknowledges alerts and sets silences must see them: write-alerts includes read-alerts.
  if (access === 'read-alerts' && roles.includes('write-alerts')) return true
  return access !== 'loopback-or-admin' && roles.includes(access)
}

/** Who made each request, as registerHttpSecurity found it (see callerOf). */
const callers = new WeakMap<FastifyRequest, string>()

/**
 * Who made the request, for what it records (an acknowledgement's `by`, a silence's
 * `createdBy`): the app id of its token; `loopback` when the gateway is anonymous on loopback (no
 * credentials: whoever is on this machine); `anonymous` when it needs no token otherwise
 * (ALLOW_ANONYMOUS_PUBLIC, or a server without the gateway's security).
 */
export function callerOf(request: FastifyRequest): string {
  return callers.get(request) ?? 'anonymous'
}

/** `Bearer <appId>.<secret>` -> its parts; null when the header is not that. */
export function parseBearerToken(
  header: string | undefined,
): { appId: string; secret: string } | null {
  if (header === undefined) return null
  const match = /^Bearer +(\S+)\s*$/i.exec(header)
  const token = match?.[1]
  if (token === undefined) return null
  const dot = token.lastIndexOf('.')
  if (dot <= 0 || dot === token.length - 1) return null
  const appId = token.slice(0, dot)
  const secret = token.slice(dot + 1)
  return isIdentifier(appId) ? { appId, secret } : null
}

export type ParsedOrigins =
  | { ok: true; origins: readonly string[] }
  | { ok: false; message: string }

/**
 * CORS_ORIGINS: comma-separated origins (`https://ops.example.com`, `http://localhost:3000`), or
 * `*` for any. Empty: CORS off, browsers on other origins cannot read the API.
 */
export function parseCorsOrigins(text: string): ParsedOrigins {
  const origins: string[] = []
  for (const raw of text.split(',')) {
    const entry = raw.trim()
    if (entry === '') continue
    if (entry === '*') {
      origins.push('*')
      continue
    }
    let origin: string | null = null
    try {
      const url = new URL(entry)
      if (
        (url.protocol === 'http:' || url.protocol === 'https:') &&
        url.origin === entry.replace(/\/$/, '')
      ) {
        origin = url.origin
      }
    } catch {
      origin = null
    }
    if (origin === null) {
      return {
        ok: false,
        message: `CORS_ORIGINS (http.corsOrigins): "${entry.slice(0, 100)}" is not an origin like https://ops.example.com (scheme, host and port only) or *`,
      }
    }
    origins.push(origin)
  }
  return { ok: true, origins }
}

export interface HttpSecurity {
  /** Whether protected routes need a token (credentials are configured). */
  authRequired: boolean
  /**
   * Anonymous and loopback only (no credentials): refuse what only a web page could send, a
   * request whose Host is not a loopback name (DNS rebinding) and a WebSocket upgrade from another
   * origin (cross-site WebSocket hijacking); either would let any site the operator visits reach
   * the open broker and API through the operator's browser.
   */
  loopbackOnly: boolean
  /** Parsed CORS_ORIGINS; empty: CORS off. */
  corsOrigins: readonly string[]
  /** Where app tokens are looked up. */
  registry: DeviceRegistry
  verifier: SecretVerifier
}

/** No tokens, no CORS (tests, and a server without the gateway around it). */
export function openHttpSecurity(): HttpSecurity {
  return {
    authRequired: false,
    loopbackOnly: false,
    corsOrigins: [],
    registry: EMPTY_REGISTRY,
    verifier: createSecretVerifier(),
  }
}

/** The host name of a Host header (`127.0.0.1:8080`, `[::1]:8080`, `localhost`). */
function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1)
  return host.split(':')[0] ?? ''
}

/**
 * Why a request that reached a loopback-only gateway must have come through a browser tricked by
 * a web page, or null when it is fine. Host: a loopback name, or absent (not a browser). Origin
 * (WebSocket upgrades only; for HTTP the browser enforces CORS): absent (not a browser), the
 * gateway's own origin (the dashboard), or one of CORS_ORIGINS.
 */
export function browserAccessProblem(
  headers: { host?: string | undefined; origin?: string | undefined },
  security: Pick<HttpSecurity, 'loopbackOnly' | 'corsOrigins'>,
  kind: 'http' | 'websocket',
): string | null {
  if (!security.loopbackOnly) return null
  const { host, origin } = headers
  if (host !== undefined && !isLoopbackHost(hostName(host))) {
    return `Host "${host.slice(0, 100)}" is not a loopback name: without credentials this gateway serves only this machine (127.0.0.1, localhost)`
  }
  if (kind === 'http' || origin === undefined) return null
  if (security.corsOrigins.includes('*') || security.corsOrigins.includes(origin)) return null
  let sameOrigin = false
  try {
    sameOrigin = host !== undefined && new URL(origin).host === host
  } catch {
    sameOrigin = false
  }
  return sameOrigin
    ? null
    : `a page from ${origin.slice(0, 100)} may not open MQTT over WebSocket here (not this gateway's origin, not in CORS_ORIGINS)`
}

interface ErrorBody {
  error: 'unauthorized' | 'forbidden'
  message: string
  statusCode: number
}

const REALM = 'Bearer realm="sensor-gateway"'
const CORS_MAX_AGE_SECONDS = 600

function isLoopbackPeer(request: FastifyRequest): boolean {
  // A proxy on this machine would make every client look local: any forwarding header says so.
  if (request.headers['x-forwarded-for'] !== undefined || request.headers.forwarded !== undefined) {
    return false
  }
  const address = request.socket.remoteAddress
  return address !== undefined && isLoopbackHost(address)
}

/**
 * Adds to the Fastify instance, before its routes: the token check (onRequest), CORS (preflight
 * answers and the allow-origin header), and security headers on every answer (onSend).
 */
export function registerHttpSecurity(app: FastifyInstance, options: HttpSecurity): void {
  const anyOrigin = options.corsOrigins.includes('*')
  const allowedOrigin = (origin: string | undefined): string | null => {
    if (origin === undefined || options.corsOrigins.length === 0) return null
    if (anyOrigin) return origin
    return options.corsOrigins.includes(origin) ? origin : null
  }

  const refuse = (
    reply: FastifyReply,
    statusCode: 401 | 403,
    message: string,
    challenge?: string,
  ) => {
    const body: ErrorBody = {
      error: statusCode === 401 ? 'unauthorized' : 'forbidden',
      message,
      statusCode,
    }
    if (challenge !== undefined) reply.header('www-authenticate', challenge)
    return reply.code(statusCode).send(body)
  }

  app.addHook('onRequest', async (request, reply) => {
    const origin = allowedOrigin(request.headers.origin)
    // A CORS preflight carries no credentials (Fetch standard): it is answered before the token
    // check, and only for allowed origins; others get what any unknown OPTIONS gets, a 404.
    if (
      request.method === 'OPTIONS' &&
      origin !== null &&
      request.headers['access-control-request-method'] !== undefined
    ) {
      reply
        .code(204)
        .header('access-control-allow-methods', 'GET, HEAD, POST, DELETE')
        .header('access-control-allow-headers', 'Authorization, Content-Type')
        .header('access-control-max-age', String(CORS_MAX_AGE_SECONDS))
      return reply.send()
    }
    const problem = browserAccessProblem(request.headers, options, 'http')
    if (problem !== null) return refuse(reply, 403, problem)
    if (!options.authRequired) {
      if (options.loopbackOnly) callers.set(request, 'loopback')
      return
    }
    const path = request.url.split('?')[0] ?? '/'
    const access = requiredAccess(request.method, request.routeOptions.url, path)
    if (access === 'public') return
    if (access === 'loopback-or-admin' && isLoopbackPeer(request)) return
    const header = request.headers.authorization
    const token = parseBearerToken(header)
    if (token === null) {
      return refuse(
        reply,
        401,
        header === undefined
          ? 'this route needs an app token: Authorization: Bearer <appId>.<secret> (npm run app:add)'
          : 'the Authorization header must be Bearer <appId>.<secret>',
        header === undefined ? REALM : `${REALM}, error="invalid_request"`,
      )
    }
    const entry = options.registry.app(token.appId)
    const ok = await options.verifier.verify(token.appId, token.secret, entry?.secret)
    if (!ok || entry === undefined) {
      request.log.warn({ appId: token.appId }, 'HTTP request refused: bad app token')
      return refuse(reply, 401, 'unknown app or wrong secret', `${REALM}, error="invalid_token"`)
    }
    if (!rolesGrant(entry.roles, access)) {
      const needs = access === 'loopback-or-admin' ? 'admin' : access
      return refuse(
        reply,
        403,
        `app "${entry.id}" lacks the role ${needs} that ${request.method} ${request.routeOptions.url ?? path} needs`,
        `${REALM}, error="insufficient_scope"`,
      )
    }
    callers.set(request, entry.id)
  })

  app.addHook('onSend', async (request, reply, payload) => {
    const origin = allowedOrigin(request.headers.origin)
    if (origin !== null) {
      reply.header('access-control-allow-origin', origin)
      reply.header('vary', 'Origin')
    }
    reply.header('x-content-type-options', 'nosniff')
    reply.header('x-frame-options', 'DENY')
    reply.header('referrer-policy', 'no-referrer')
    // The dashboard page sends a full policy of its own; everything else may not be framed either.
    if (!reply.hasHeader('content-security-policy')) {
      reply.header('content-security-policy', "frame-ancestors 'none'")
    }
    const type = String(reply.getHeader('content-type') ?? '')
    if (
      type.startsWith('application/json') ||
      reply.statusCode === 401 ||
      reply.statusCode === 403
    ) {
      // API answers are live data, often per token: no cache, shared or private, keeps them.
      reply.header('cache-control', 'no-store')
    }
    return payload
  })
}
