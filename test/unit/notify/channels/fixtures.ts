import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Alert, alertId } from '../../../../src/contract/types.ts'
import {
  DEFAULT_TEXT,
  DEFAULT_TITLE,
  renderNotification,
} from '../../../../src/notify/templates.ts'
import type { ChannelProblems, Notification } from '../../../../src/notify/types.ts'

/** An alert object as the engine publishes it on `alerts/{severity}/{deviceId}/{ruleId}`. */
export function alertFixture(overrides: Partial<Alert> = {}): Alert {
  const ruleId = overrides.ruleId ?? 'greenhouse-hot'
  const deviceId = overrides.deviceId ?? 'greenhouse-1'
  return {
    id: alertId(ruleId, deviceId),
    ruleId,
    kind: 'threshold',
    deviceId,
    metric: 'temperature',
    severity: 'critical',
    state: 'firing',
    value: 41.5,
    threshold: 35,
    since: 1_764_680_000_000,
    ts: 1_764_680_000_000,
    message: `${deviceId} temperature = 41.5 > 35`,
    flapping: false,
    ...overrides,
  }
}

export function notificationFixture(overrides: Partial<Notification> = {}): Notification {
  const alerts = overrides.alerts ?? [alertFixture()]
  return {
    id: 'ntf_01JDX3S8Q4M5Z',
    channel: 'ops',
    route: 'critical-to-ops',
    kind: 'firing',
    alerts,
    title: '[CRITICAL] greenhouse-1: greenhouse-hot firing',
    text: 'greenhouse-1 temperature = 41.5 > 35 & rising <fast>',
    createdAt: 1_764_680_000_123,
    ...overrides,
  }
}

/**
 * A storm: `count` devices crossing the same threshold, as one notification whose title and text
 * the route's default templates render (a group: one line per alert).
 */
export function groupFixture(count: number, overrides: Partial<Alert> = {}): Notification {
  const alerts = Array.from({ length: count }, (_, i) => {
    const deviceId = `greenhouse-${i + 1}`
    return alertFixture({
      deviceId,
      value: 36 + i,
      message: `${deviceId} temperature = ${36 + i} > 35`,
      ...overrides,
    })
  })
  const kind = overrides.state === 'resolved' ? 'resolved' : 'firing'
  const rendered = renderNotification(
    { template: { title: DEFAULT_TITLE, text: DEFAULT_TEXT } },
    kind,
    alerts,
  )
  return notificationFixture({ id: 'ntf_group_1', kind, alerts, ...rendered })
}

/** Runs a kind's parse and returns the config and the problems as `field: message` lines. */
export function problemsOf(
  parse: (raw: Record<string, unknown>, problems: ChannelProblems) => unknown,
  raw: Record<string, unknown>,
): { config: unknown; problems: string[] } {
  const problems: ChannelProblems = []
  const config = parse(raw, problems)
  return { config, problems: problems.map(([field, message]) => `${field}: ${message}`) }
}

export interface ReceivedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

/** How the receiver answers one request: a status (with headers and body), or never. */
export type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang'

export interface Receiver {
  url: string
  requests: ReceivedRequest[]
  /** Answers, in order, for the next requests; when empty it answers 200. */
  answers: Answer[]
  close(): Promise<void>
}

/** A real HTTP receiver on 127.0.0.1, port 0: records each request, answers as told. */
export async function startReceiver(): Promise<Receiver> {
  const requests: ReceivedRequest[] = []
  const answers: Answer[] = []
  const hung: ServerResponse[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      })
      const answer = answers.shift() ?? { status: 200, body: 'ok' }
      if (answer === 'hang') {
        hung.push(res)
        return
      }
      res.writeHead(answer.status, answer.headers ?? {})
      res.end(answer.body ?? '')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    answers,
    async close() {
      for (const res of hung) res.destroy()
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** A port nobody listens on: a server's, once it is closed. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}
