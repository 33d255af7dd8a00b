import { writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { generateSecret, hashSecret } from '../../src/security/credentials.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectClient, endAll, recordMessages } from '../helpers/mqtt.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'

/** Short limits, so a test sees them act; the request timeout is longer than the headers one. */
const HEADERS_TIMEOUT_MS = 300
const REQUEST_TIMEOUT_MS = 800
const SHORT_TIMEOUTS = {
  HTTP_HEADERS_TIMEOUT: `${HEADERS_TIMEOUT_MS}ms`,
  HTTP_REQUEST_TIMEOUT: `${REQUEST_TIMEOUT_MS}ms`,
}
/** Far beyond both timeouts and Node's sweep interval: a socket still open then never closes. */
const CLOSE_BOUND_MS = 5_000

/** A raw HTTP client socket: everything the server sent, and whether it closed the socket. */
interface RawConnection {
  socket: Socket
  received(): string
  closed: Promise<void>
  isClosed(): boolean
}

async function openRaw(httpUrl: string): Promise<RawConnection> {
  const { port } = new URL(httpUrl)
  const socket = connect({ host: '127.0.0.1', port: Number(port) })
  const chunks: Buffer[] = []
  let isClosed = false
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return {
    socket,
    received: () => Buffer.concat(chunks).toString('latin1'),
    closed,
    isClosed: () => isClosed,
  }
}

/** Writes `text` one byte every `everyMs` until the socket closes (or the text is sent). */
function trickle(conn: RawConnection, text: string, everyMs: number): () => void {
  let i = 0
  const timer = setInterval(() => {
    if (conn.isClosed() || i >= text.length) clearInterval(timer)
    else conn.socket.write(text[i++] as string)
  }, everyMs)
  return () => clearInterval(timer)
}

/** Resolves with the ms from now until the connection closes; rejects past CLOSE_BOUND_MS. */
async function closedWithin(conn: RawConnection): Promise<number> {
  const start = performance.now()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    conn.closed,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`socket still open after ${CLOSE_BOUND_MS} ms`)),
        CLOSE_BOUND_MS,
      )
    }),
  ]).finally(() => clearTimeout(timer))
  return performance.now() - start
}

const SLOW_BODY_HEAD = [
  'POST /api/rules/test HTTP/1.1',
  'Host: 127.0.0.1',
  'Content-Type: application/json',
  'Content-Length: 100000',
  '',
  '',
].join('\r\n')

describe('HTTP timeouts (no credentials configured)', () => {
  let gw: TestGateway
  const raws = new Set<RawConnection>()
  const stops: (() => void)[] = []
  const clients = new Set<MqttClient>()
  const raw = async () => {
    const conn = await openRaw(gw.httpUrl)
    raws.add(conn)
    return conn
  }

  beforeAll(async () => {
    gw = await startTestGateway(SHORT_TIMEOUTS)
  })
  afterEach(async () => {
    for (const stop of stops.splice(0)) stop()
    for (const conn of raws) conn.socket.destroy()
    raws.clear()
    await endAll(clients)
    clients.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  it('answers 408 and closes a body with a Content-Length that trickles in and never completes', async () => {
    const conn = await raw()
    conn.socket.write(SLOW_BODY_HEAD)
    // A byte every 100 ms: never idle for long, so only a timeout on the whole request ends it.
    stops.push(trickle(conn, '{"rule":'.padEnd(100_000, ' '), 100))
    const closedAfterMs = await closedWithin(conn)
    expect(conn.received()).toMatch(/^HTTP\/1\.1 408 /)
    expect(closedAfterMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100)
  })

  it('answers 408 and closes a request whose headers trickle in', async () => {
    const conn = await raw()
    conn.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    stops.push(trickle(conn, `X-Slow: ${'a'.repeat(10_000)}`, 20))
    await closedWithin(conn)
    expect(conn.received()).toMatch(/^HTTP\/1\.1 408 /)
  })

  it('logs the timeouts at warn, once per interval however many there are', async () => {
    const conns = await Promise.all([raw(), raw(), raw()])
    for (const conn of conns) conn.socket.write('GET /healthz HTTP/1.1\r\n')
    await Promise.all(conns.map((conn) => closedWithin(conn)))
    const warned = gw.logs.filter(
      (line) => line.level === 40 && String(line.msg).startsWith('HTTP request closed with 408'),
    )
    // Earlier tests in this file timed out too, within the same 10 s: one line in all.
    expect(warned).toHaveLength(1)
    expect(warned[0]).toMatchObject({ requestTimeoutMs: REQUEST_TIMEOUT_MS })
  })

  it('keeps MQTT over WebSocket (/mqtt) connected well past the request timeout', async () => {
    const wsUrl = `${gw.httpUrl.replace(/^http/, 'ws')}/mqtt`
    const client = await connectClient(wsUrl, { clientId: 'ws-long', reconnectPeriod: 0 })
    clients.add(client)
    let closes = 0
    client.on('close', () => closes++)
    const received = recordMessages(client)
    await client.subscribeAsync('sensors/#', { qos: 1 })

    // While the WebSocket sits idle, a slow body on the same server is closed: the sweep runs.
    const conn = await raw()
    conn.socket.write(SLOW_BODY_HEAD)
    await closedWithin(conn)
    // Then as long again as both timeouts together.
    await new Promise((resolve) => setTimeout(resolve, REQUEST_TIMEOUT_MS + HEADERS_TIMEOUT_MS))

    expect(closes).toBe(0)
    expect(client.connected).toBe(true)
    const device = await connectClient(gw.mqttUrl, { clientId: 'dev-long' })
    clients.add(device)
    await device.publishAsync('sensors/dev-long/temperature', '21', { qos: 1 })
    await vi.waitFor(() =>
      expect(received.map((m) => m.topic)).toContain('sensors/dev-long/temperature'),
    )
    expect(closes).toBe(0)
  })
})

describe('HTTP timeouts with app tokens required', () => {
  let gw: TestGateway
  let dir: TempDir
  const raws = new Set<RawConnection>()
  const stops: (() => void)[] = []

  beforeAll(async () => {
    dir = await createTempDir('http-limits-')
    const registry = path.join(dir.path, 'devices.yaml')
    await writeFile(
      registry,
      [
        'apps:',
        '  - id: admin-app',
        `    secret: ${await hashSecret(generateSecret())}`,
        '    roles: [admin]',
        '',
      ].join('\n'),
    )
    gw = await startTestGateway({ ...SHORT_TIMEOUTS, DEVICES_FILE: registry })
  })
  afterEach(() => {
    for (const stop of stops.splice(0)) stop()
    for (const conn of raws) conn.socket.destroy()
    raws.clear()
  })
  afterAll(async () => {
    await gw.cleanup()
    await dir.remove()
  })

  it('closes a slow body without a token, also after answering it 401', async () => {
    const conn = await openRaw(gw.httpUrl)
    raws.add(conn)
    conn.socket.write(SLOW_BODY_HEAD)
    stops.push(trickle(conn, '{"rule":'.padEnd(100_000, ' '), 100))
    await closedWithin(conn)
    // The 401 comes at once; the body still trickling after it is what the timeout ends.
    expect(conn.received()).toMatch(/^HTTP\/1\.1 401 /)
    expect(conn.received()).toContain('HTTP/1.1 408 ')
  })
})

/** Holds a socket whose request has been answered (keep-alive): the server has surely counted it. */
async function holdAnswered(httpUrl: string): Promise<RawConnection> {
  const conn = await openRaw(httpUrl)
  conn.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await vi.waitFor(() => expect(conn.received()).toMatch(/^HTTP\/1\.1 200 /))
  return conn
}

describe('HTTP connections in all', () => {
  it('drops the connection past HTTP_MAX_CONNECTIONS unanswered and logs it', async () => {
    const gw = await startTestGateway({ HTTP_MAX_CONNECTIONS: '2' })
    const raws: RawConnection[] = []
    try {
      raws.push(await holdAnswered(gw.httpUrl), await holdAnswered(gw.httpUrl))
      const extra = await openRaw(gw.httpUrl)
      raws.push(extra)
      extra.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
      await closedWithin(extra)
      expect(extra.received()).toBe('')
      expect(
        gw.logs.filter((line) => String(line.msg).startsWith('HTTP connection dropped')),
      ).toHaveLength(1)
      for (const conn of raws) conn.socket.destroy()
      // Until the server has seen them close, a new socket may still be dropped: probe again.
      await vi.waitFor(
        async () => {
          const probe = await openRaw(gw.httpUrl)
          raws.push(probe)
          probe.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
          await vi.waitFor(() => expect(probe.received()).toMatch(/^HTTP\/1\.1 200 /), {
            timeout: 500,
          })
        },
        { timeout: CLOSE_BOUND_MS },
      )
    } finally {
      for (const conn of raws) conn.socket.destroy()
      await gw.cleanup()
    }
  })
})

describe('HTTP connections per address', () => {
  const CAP = 3
  let gw: TestGateway
  const raws = new Set<RawConnection>()

  beforeAll(async () => {
    // Default timeouts: the held sockets must outlive the test.
    gw = await startTestGateway({ HTTP_MAX_CONNECTIONS_PER_ADDRESS: String(CAP) })
  })
  afterAll(async () => {
    for (const conn of raws) conn.socket.destroy()
    await gw.cleanup()
  })

  it('refuses the connection past the cap with 503 and serves the address again once they close', async () => {
    const held: RawConnection[] = []
    for (let i = 0; i < CAP; i++) {
      const conn = await holdAnswered(gw.httpUrl)
      raws.add(conn)
      held.push(conn)
    }

    const extra = await openRaw(gw.httpUrl)
    raws.add(extra)
    extra.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await closedWithin(extra)
    expect(extra.received()).toMatch(/^HTTP\/1\.1 503 /)
    expect(extra.received()).toContain('"error":"too_many_connections"')
    expect(extra.received()).not.toContain('"status":"ok"')
    expect(held.every((conn) => !conn.isClosed())).toBe(true)

    for (const conn of held) conn.socket.destroy()
    await vi.waitFor(async () => {
      const res = await fetch(`${gw.httpUrl}/healthz`)
      expect(res.status).toBe(200)
    })
    expect(
      gw.logs.filter((line) =>
        String(line.msg).startsWith('HTTP connection refused: HTTP_MAX_CONNECTIONS_PER_ADDRESS'),
      ),
    ).toHaveLength(1)
  })
})
