import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply } from 'fastify'

/** The page's own files: plain HTML, CSS and ES modules, served as they are (no build step). */
export const DASHBOARD_DIR = fileURLToPath(new URL('../dashboard/', import.meta.url))

const require = createRequire(import.meta.url)

function packageDir(name: string): string {
  return path.dirname(require.resolve(`${name}/package.json`))
}

interface AssetFile {
  root: string
  file: string
}

/**
 * Files of installed packages the page loads, by the name it loads them under. Served from
 * node_modules so the page needs no CDN and no bundler, and always matches the installed version.
 */
function vendorAssets(): Map<string, AssetFile> {
  const uplot = path.join(packageDir('uplot'), 'dist')
  // MQTT.js' browser bundle: one ES module with its Node polyfills inside.
  const mqtt = path.join(packageDir('mqtt'), 'dist')
  return new Map([
    ['uPlot.esm.js', { root: uplot, file: 'uPlot.esm.js' }],
    ['uPlot.min.css', { root: uplot, file: 'uPlot.min.css' }],
    ['mqtt.esm.js', { root: mqtt, file: 'mqtt.esm.js' }],
  ])
}

/**
 * The page may load only what this server serves and talk only to it (its JSON API and MQTT over
 * WebSocket at /mqtt, which CSP 3 lets 'self' cover). No inline script or style anywhere.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  // MQTT.js runs its keepalive timer in a worker made from a blob, so background tabs keep the
  // link (browsers throttle timers of hidden pages).
  'worker-src blob:',
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/**
 * `GET /`: the live dashboard (DESIGN §6), and `GET /assets/{name}`: its files. Only names known
 * at start-up are served (the page's folder, read once, and the vendor files above); anything else
 * is the API's 404. Files are revalidated on every load (ETag, Last-Modified), so a new version
 * of the page is picked up at once while an unchanged one costs a 304.
 */
export function registerDashboardRoutes(app: FastifyInstance): void {
  const assets = vendorAssets()
  for (const file of readdirSync(DASHBOARD_DIR)) {
    if (file !== 'index.html') assets.set(file, { root: DASHBOARD_DIR, file })
  }

  // Encapsulated: @fastify/static decorates the reply, and other plugins (Swagger UI) bring
  // their own copy of it.
  void app.register(async (scope) => {
    await scope.register(fastifyStatic, { root: DASHBOARD_DIR, serve: false })

    // A page and its files, not API operations: kept out of the OpenAPI document (/docs).
    const schema = { hide: true }

    scope.get('/', { schema }, async (_request, reply) => {
      setSecurityHeaders(reply)
      return reply.sendFile('index.html', DASHBOARD_DIR, { maxAge: 0 })
    })

    scope.get<{ Params: { name: string } }>('/assets/:name', { schema }, async (request, reply) => {
      const asset = assets.get(request.params.name)
      if (asset === undefined) return reply.callNotFound()
      reply.header('x-content-type-options', 'nosniff')
      return reply.sendFile(asset.file, asset.root, { maxAge: 0 })
    })
  })
}

function setSecurityHeaders(reply: FastifyReply): void {
  reply.header('content-security-policy', CONTENT_SECURITY_POLICY)
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
}
