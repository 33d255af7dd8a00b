import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * Set-up shared by the scale-out tests of notifications (notifications-scale-out.test.ts,
 * alert-controls-scale-out.test.ts): one real node:http webhook receiver on 127.0.0.1 that every
 * instance's notifications file points at, and that file.
 */

export interface Delivery {
  id: string
  /** When the receiver got it. */
  at: number
  kind: string
  /** When the notification was written (body `createdAt`), by the instance that wrote it. */
  createdAt: number
  alerts: Array<{ id: string; deviceId: string; state: string }>
}

/** A webhook receiver that can go down and come back on the same port. */
export interface Receiver {
  port: number
  deliveries: Delivery[]
  up(): Promise<void>
  down(): Promise<void>
}

export async function startReceiver(): Promise<Receiver> {
  const deliveries: Delivery[] = []
  let server: Server | undefined
  let port = 0
  const handle = (req: IncomingMessage, body: string) => {
    const parsed = JSON.parse(body) as Omit<Delivery, 'id' | 'at'>
    deliveries.push({
      id: String(req.headers['webhook-id']),
      kind: parsed.kind,
      at: Date.now(),
      createdAt: parsed.createdAt,
      alerts: parsed.alerts,
    })
  }
  const receiver: Receiver = {
    get port() {
      return port
    },
    deliveries,
    async up() {
      const s = createServer((req, res) => {
        let body = ''
        req.on('data', (chunk) => {
          body += String(chunk)
        })
        req.on('end', () => {
          handle(req, body)
          res.writeHead(200).end('ok')
        })
      })
      s.listen(port, '127.0.0.1')
      await once(s, 'listening')
      port = (s.address() as AddressInfo).port
      server = s
    },
    async down() {
      const s = server
      server = undefined
      if (s === undefined) return
      s.closeAllConnections()
      s.close()
      await once(s, 'close')
    },
  }
  await receiver.up()
  return receiver
}

export function notificationsYaml(url: string, repeat = '0'): string {
  return [
    'channels:',
    '  - name: hook',
    '    kind: webhook',
    `    url: "${url}"`,
    '    timeout: 2s',
    'routes:',
    '  - name: everything',
    '    channels: [hook]',
    '    on: [firing, resolved]',
    `    repeat: ${repeat}`,
    'delivery:',
    '  maxAttempts: 1000',
    '  maxAge: 1h',
    '  retryBase: 50ms',
    '  retryMax: 300ms',
    '',
  ].join('\n')
}
