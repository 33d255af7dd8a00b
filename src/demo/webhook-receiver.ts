import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import type { Alert } from '../contract/types.ts'

/**
 * A webhook receiver as a user of the gateway would write one (README "Notifications >
 * Channels"): node:http on loopback, the Standard Webhooks signature verified on the raw body
 * before the JSON is trusted. `npm run demo` prints what it gets; `npm run bench` times the
 * arrival of each notification with it. Not part of the gateway: nothing in src/ but the demo
 * imports it.
 */

/** The webhook body (README "Notifications > Channels"), as a receiver reads it. */
export interface ReceivedNotification {
  id: string
  kind: string
  route: string
  channel: string
  title: string
  text: string
  createdAt: number
  alerts: Alert[]
}

export type ReceivedWebhook =
  | { verified: true; receivedAtMs: number; notification: ReceivedNotification }
  | { verified: false; receivedAtMs: number; reason: string }

export interface WebhookReceiver {
  /** `http://127.0.0.1:{port}/notifications`: what the channel's `url` is set to. */
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

export interface WebhookReceiverOptions {
  /** The channel's `whsec_...` secret: requests without a valid signature are refused (401). */
  secret: string
  /** Called once per request whose body arrived, verified or not. */
  onReceived(received: ReceivedWebhook): void
  host?: string
  /** Clock of `receivedAtMs`; Date.now by default (the bench passes its cross-process clock). */
  now?: () => number
  /** Lets the process exit while the receiver listens (the demo: the gateway keeps it alive). */
  unref?: boolean
}

const PATH = '/notifications'
/** A notification of a group of 200 alerts is about 100 KiB; anything far larger is not ours. */
const MAX_BODY_BYTES = 4 * 1024 * 1024

/** A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`
}

function headerText(req: IncomingMessage, name: string): string {
  const value = req.headers[name]
  return Array.isArray(value) ? (value[0] ?? '') : (value ?? '')
}

export async function startWebhookReceiver(
  options: WebhookReceiverOptions,
): Promise<WebhookReceiver> {
  const verifier = new Webhook(options.secret)
  const now = options.now ?? Date.now
  const answer = (res: ServerResponse, status: number, text: string) => {
    res.writeHead(status, { 'content-type': 'text/plain' }).end(text)
  }
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== PATH) {
      answer(res, 404, `POST ${PATH} only`)
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) chunks.push(chunk)
    })
    req.on('end', () => {
      const receivedAtMs = now()
      if (size > MAX_BODY_BYTES) {
        answer(res, 413, 'body too large')
        return
      }
      const body = Buffer.concat(chunks).toString('utf8')
      let notification: ReceivedNotification
      try {
        // On the raw body, before parsing: a forged, altered or replayed request throws.
        notification = verifier.verify(body, {
          'webhook-id': headerText(req, 'webhook-id'),
          'webhook-timestamp': headerText(req, 'webhook-timestamp'),
          'webhook-signature': headerText(req, 'webhook-signature'),
        }) as ReceivedNotification
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err)
        options.onReceived({ verified: false, receivedAtMs, reason })
        // 401 is a permanent refusal for the gateway: a wrong secret is not fixed by retrying.
        answer(res, 401, `signature not verified: ${reason}`)
        return
      }
      options.onReceived({ verified: true, receivedAtMs, notification })
      answer(res, 200, 'ok')
    })
  })
  server.listen(0, options.host ?? '127.0.0.1')
  await once(server, 'listening')
  if (options.unref) server.unref()
  const { address, port } = server.address() as AddressInfo
  return {
    url: `http://${address}:${port}${PATH}`,
    port,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** At most this many device ids are named in a line; the rest are counted. */
const DEVICES_NAMED = 5
const TEXT_CHARS = 160

/**
 * One readable line for a received webhook: time, whether its signature verified, the title, the
 * devices, the first line of the text and the notification id.
 */
export function describeReceivedWebhook(received: ReceivedWebhook): string {
  const time = new Date(received.receivedAtMs).toISOString().slice(11, 19)
  if (!received.verified) {
    return `${time} webhook REFUSED (401): signature not verified: ${received.reason}`
  }
  const n = received.notification
  const alerts = Array.isArray(n.alerts) ? n.alerts : []
  const devices = [...new Set(alerts.map((a) => a.deviceId))]
  const named = devices.slice(0, DEVICES_NAMED).join(', ')
  const more = devices.length > DEVICES_NAMED ? ` +${devices.length - DEVICES_NAMED} more` : ''
  const lines = String(n.text ?? '').split('\n')
  let text = lines[0] ?? ''
  if (lines.length > 1) text += ` (+${lines.length - 1} lines)`
  if (text.length > TEXT_CHARS) text = `${text.slice(0, TEXT_CHARS)}...`
  // A group names its devices; one alert's title already does.
  const group = alerts.length > 1 ? ` | ${alerts.length} alerts: ${named}${more}` : ''
  return `${time} webhook received, signature verified: ${n.title}${group} | ${text} | id ${n.id}`
}
