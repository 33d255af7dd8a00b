import { describe, expect, it } from 'vitest'
import {
  browserAccessProblem,
  HTTP_ACCESS,
  parseBearerToken,
  parseCorsOrigins,
  requiredAccess,
  rolesGrant,
} from '../../../src/security/http-auth.ts'

describe('parseBearerToken', () => {
  it.each([
    ['Bearer dashboard.abc_DEF-123', { appId: 'dashboard', secret: 'abc_DEF-123' }],
    ['bearer dashboard.abc', { appId: 'dashboard', secret: 'abc' }],
    // App ids may contain dots; secrets (base64url) never do: the last dot separates.
    ['Bearer ops.team.abc', { appId: 'ops.team', secret: 'abc' }],
    ['Bearer   dashboard.abc  ', { appId: 'dashboard', secret: 'abc' }],
    ['Bearer dashboard', null],
    ['Bearer .abc', null],
    ['Bearer dashboard.', null],
    ['Basic ZGFzaGJvYXJkOmFiYw==', null],
    ['Bearer bad id.abc', null],
    ['Bearer a b.c', null],
    ['', null],
    [undefined, null],
  ])('%s -> %o', (header, want) => {
    expect(parseBearerToken(header)).toEqual(want)
  })
})

describe('requiredAccess', () => {
  it.each([
    ['GET', '/api/readings', '/api/readings', 'read-readings'],
    ['HEAD', '/api/readings', '/api/readings', 'read-readings'],
    ['GET', '/api/readings/aggregate', '/api/readings/aggregate', 'read-readings'],
    ['GET', '/api/devices', '/api/devices', 'read-readings'],
    ['GET', '/api/alerts', '/api/alerts', 'read-alerts'],
    ['GET', '/api/rules', '/api/rules', 'read-alerts'],
    ['POST', '/api/rules/test', '/api/rules/test', 'admin'],
    ['GET', '/metrics', '/metrics', 'loopback-or-admin'],
    ['GET', '/', '/', 'public'],
    ['GET', '/assets/:name', '/assets/app.js', 'public'],
    ['GET', '/healthz', '/healthz', 'public'],
    ['GET', '/readyz', '/readyz', 'public'],
    ['GET', '/docs/json', '/docs/json', 'public'],
    // A route added later under /api without an entry here is admin-only until it gets one.
    ['DELETE', '/api/alerts', '/api/alerts', 'admin'],
    ['GET', '/api/future', '/api/future', 'admin'],
    // No route matched: a 404 either way, under /api only for a token holder.
    ['GET', undefined, '/api/nothing', 'admin'],
    ['GET', undefined, '/nothing', 'public'],
  ])('%s %s (%s) needs %s', (method, routeUrl, path, want) => {
    expect(requiredAccess(method, routeUrl, path)).toBe(want)
  })

  it('every route of the table is a real route of the API (kept in step with README)', () => {
    expect(HTTP_ACCESS.map((e) => `${e.method} ${e.url}`)).toEqual([
      'GET /api/devices',
      'GET /api/readings',
      'GET /api/readings/aggregate',
      'GET /api/alerts',
      'GET /api/rules',
      'POST /api/alerts/:id/ack',
      'GET /api/silences',
      'POST /api/silences',
      'DELETE /api/silences/:id',
      'GET /api/notifications',
      'POST /api/notifications/:id/retry',
      'POST /api/rules/test',
      'GET /metrics',
    ])
  })
})

describe('rolesGrant', () => {
  it.each([
    [['read-readings'], 'read-readings', true],
    [['read-readings'], 'read-alerts', false],
    [['read-alerts'], 'read-alerts', true],
    [['read-alerts', 'read-readings'], 'admin', false],
    [['admin'], 'read-alerts', true],
    [['admin'], 'read-readings', true],
    [['admin'], 'admin', true],
    [['admin'], 'loopback-or-admin', true],
    [['read-readings'], 'loopback-or-admin', false],
    // Whoever acknowledges alerts must see them: write-alerts includes read-alerts, no more.
    [['write-alerts'], 'write-alerts', true],
    [['write-alerts'], 'read-alerts', true],
    [['write-alerts'], 'read-readings', false],
    [['write-alerts'], 'admin', false],
    [['read-alerts'], 'write-alerts', false],
    [['admin'], 'write-alerts', true],
  ] as const)('%o for %s: %s', (roles, access, granted) => {
    expect(rolesGrant(roles, access)).toBe(granted)
  })
})

describe('parseCorsOrigins', () => {
  it.each([
    ['', []],
    ['  ', []],
    ['https://ops.example.com', ['https://ops.example.com']],
    ['https://ops.example.com/', ['https://ops.example.com']],
    ['http://localhost:3000, https://a.example', ['http://localhost:3000', 'https://a.example']],
    ['*', ['*']],
  ])('%j -> %o', (text, origins) => {
    expect(parseCorsOrigins(text)).toEqual({ ok: true, origins })
  })

  it.each([
    'ops.example.com',
    'https://ops.example.com/path',
    'ftp://ops.example.com',
    'https://ops.example.com?x=1',
  ])('refuses %j, naming the variable', (text) => {
    const result = parseCorsOrigins(text)
    expect(result.ok).toBe(false)
    expect(!result.ok && result.message).toMatch(/^CORS_ORIGINS \(http\.corsOrigins\): /)
  })
})

describe('browserAccessProblem (anonymous, loopback-only gateway)', () => {
  const loopbackOnly = { loopbackOnly: true, corsOrigins: ['http://localhost:3000'] }
  it.each([
    // headers, kind, refused
    [{ host: '127.0.0.1:8080' }, 'http', false],
    [{ host: 'localhost:8080' }, 'http', false],
    [{ host: '[::1]:8080' }, 'http', false],
    [{}, 'http', false], // not a browser
    [{ host: 'evil.example:8080' }, 'http', true], // DNS rebinding
    [{ host: '192.0.2.2:8080' }, 'http', true],
    [{ host: '127.0.0.1:8080', origin: 'https://evil.example' }, 'http', false], // CORS covers it
    [{ host: '127.0.0.1:8080' }, 'websocket', false], // MQTT.js in Node sends no Origin
    [{ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' }, 'websocket', false],
    [{ host: 'localhost:8080', origin: 'http://localhost:8080' }, 'websocket', false],
    [{ host: '127.0.0.1:8080', origin: 'http://localhost:3000' }, 'websocket', false],
    [{ host: '127.0.0.1:8080', origin: 'https://evil.example' }, 'websocket', true],
    [{ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:9999' }, 'websocket', true],
    [{ host: '127.0.0.1:8080', origin: 'null' }, 'websocket', true],
  ] as const)('%o over %s: refused %s', (headers, kind, refused) => {
    expect(browserAccessProblem(headers, loopbackOnly, kind) !== null).toBe(refused)
  })

  it('checks nothing once credentials are required or anonymous access is public', () => {
    const open = { loopbackOnly: false, corsOrigins: [] }
    expect(
      browserAccessProblem(
        { host: 'evil.example', origin: 'https://evil.example' },
        open,
        'websocket',
      ),
    ).toBeNull()
  })
})
