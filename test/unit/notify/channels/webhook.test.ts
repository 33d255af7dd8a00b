import { randomBytes } from 'node:crypto'
import { Webhook } from 'standardwebhooks'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { type WebhookConfig, webhookKind } from '../../../../src/notify/channels/webhook.ts'
import type { NotificationChannel } from '../../../../src/notify/types.ts'
import { captureLogs } from '../../../helpers/log-capture.ts'
import {
  closedPort,
  groupFixture,
  notificationFixture,
  problemsOf,
  type Receiver,
  startReceiver,
} from './fixtures.ts'

const SECRET = `whsec_${randomBytes(32).toString('base64')}`
const TOKEN = 'Bearer tok-9f8e7d6c5b4a'

function channelFor(raw: Record<string, unknown>): NotificationChannel {
  const { config, problems } = problemsOf(webhookKind.parse, raw)
  expect(problems).toEqual([])
  return webhookKind.create('ops', config as WebhookConfig, { log: captureLogs().log })
}

function signal(): AbortSignal {
  return new AbortController().signal
}

describe('webhook channel', () => {
  let receiver: Receiver
  let channel: NotificationChannel
  beforeAll(async () => {
    receiver = await startReceiver()
    channel = channelFor({
      url: `${receiver.url}/hooks/alerts?src=gw`,
      headers: { Authorization: TOKEN, 'X-Team': 'greenhouse' },
      secret: SECRET,
    })
  })
  afterAll(async () => {
    await channel.close()
    await receiver.close()
  })
  beforeEach(() => {
    receiver.requests.length = 0
    receiver.answers.length = 0
  })

  it('POSTs the documented JSON body with the custom headers and a signature that verifies', async () => {
    const notification = notificationFixture()
    expect(await channel.deliver(notification, 1, signal())).toEqual({ ok: true })
    expect(receiver.requests).toHaveLength(1)
    const req = receiver.requests[0]!
    expect(req.method).toBe('POST')
    expect(req.url).toBe('/hooks/alerts?src=gw')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers.authorization).toBe(TOKEN)
    expect(req.headers['x-team']).toBe('greenhouse')
    expect(req.headers['webhook-id']).toBe(notification.id)
    const body = JSON.parse(req.body) as Record<string, unknown>
    expect(Object.keys(body)).toEqual([
      'id',
      'kind',
      'route',
      'channel',
      'title',
      'text',
      'createdAt',
      'alerts',
    ])
    expect(body).toEqual({
      id: notification.id,
      kind: 'firing',
      route: 'critical-to-ops',
      channel: 'ops',
      title: notification.title,
      text: notification.text,
      createdAt: notification.createdAt,
      alerts: notification.alerts,
    })
    // The receiver's side of Standard Webhooks: the raw body and the three headers.
    const verified = new Webhook(SECRET).verify(req.body, req.headers as Record<string, string>)
    expect(verified).toEqual(body)
    const timestampS = Number(req.headers['webhook-timestamp'])
    expect(Math.abs(timestampS - Date.now() / 1000)).toBeLessThan(60)
    // Another key, or a body changed on the way, does not verify.
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`)
    expect(() => other.verify(req.body, req.headers as Record<string, string>)).toThrow(
      /No matching signature/,
    )
    expect(() =>
      new Webhook(SECRET).verify(
        req.body.replace('41.5', '14.5'),
        req.headers as Record<string, string>,
      ),
    ).toThrow(/No matching signature/)
  })

  it('keeps webhook-id across retries and signs each attempt afresh', async () => {
    const notification = groupFixture(3)
    receiver.answers.push({ status: 500, body: 'database down' })
    const first = await channel.deliver(notification, 1, signal())
    expect(first).toEqual({
      ok: false,
      permanent: false,
      error: `HTTP 500 Internal Server Error from ${receiver.url}/hooks/alerts?src=gw: database down`,
    })
    expect(await channel.deliver(notification, 2, signal())).toEqual({ ok: true })
    const [a, b] = receiver.requests
    expect(a?.headers['webhook-id']).toBe('ntf_group_1')
    expect(b?.headers['webhook-id']).toBe('ntf_group_1')
    expect(a?.body).toBe(b?.body)
    for (const req of [a, b]) {
      expect(new Webhook(SECRET).verify(req!.body, req!.headers as Record<string, string>)).toEqual(
        JSON.parse(req!.body),
      )
    }
    expect((JSON.parse(b!.body) as { alerts: unknown[] }).alerts).toHaveLength(3)
  })

  it('maps 429 and 503 with Retry-After (seconds, HTTP-date), 408 and 410', async () => {
    const n = notificationFixture()
    receiver.answers.push({ status: 429, headers: { 'Retry-After': '7' }, body: 'slow down' })
    expect(await channel.deliver(n, 1, signal())).toMatchObject({
      ok: false,
      permanent: false,
      retryAfterMs: 7000,
    })
    const at = new Date(Date.now() + 120_000).toUTCString()
    receiver.answers.push({ status: 503, headers: { 'Retry-After': at } })
    const unavailable = await channel.deliver(n, 1, signal())
    expect(unavailable).toMatchObject({ ok: false, permanent: false })
    const waitMs = (unavailable as { retryAfterMs?: number }).retryAfterMs
    // The date has one-second resolution: between 119 and 120 s from now.
    expect(waitMs).toBeGreaterThan(118_000)
    expect(waitMs).toBeLessThanOrEqual(120_000)
    receiver.answers.push({ status: 408 })
    expect(await channel.deliver(n, 1, signal())).toEqual({
      ok: false,
      permanent: false,
      error: `HTTP 408 Request Timeout from ${receiver.url}/hooks/alerts?src=gw`,
    })
    // Retry-After is honoured on 429/503 only.
    receiver.answers.push({ status: 502, headers: { 'Retry-After': '5' } })
    const bad = await channel.deliver(n, 1, signal())
    expect(bad).toMatchObject({ ok: false, permanent: false })
    expect(bad).not.toHaveProperty('retryAfterMs')
    receiver.answers.push({ status: 410, body: 'gone' })
    expect(await channel.deliver(n, 1, signal())).toEqual({
      ok: false,
      permanent: true,
      error: `HTTP 410 Gone from ${receiver.url}/hooks/alerts?src=gw: gone`,
    })
    receiver.answers.push({ status: 301, headers: { Location: 'http://127.0.0.1:1/x' } })
    expect(await channel.deliver(n, 1, signal())).toMatchObject({ ok: false, permanent: true })
    expect(receiver.requests).toHaveLength(6)
  })

  it('a receiver that never answers: the attempt resolves retryable when its signal aborts', async () => {
    receiver.answers.push('hang')
    const controller = new AbortController()
    const pending = channel.deliver(notificationFixture(), 1, controller.signal)
    await vi.waitFor(() => expect(receiver.requests).toHaveLength(1), { timeout: 5000 })
    controller.abort(new Error('timeout after 2000 ms'))
    const result = await pending
    expect(result).toEqual({
      ok: false,
      permanent: false,
      error: `no answer from ${receiver.url}/hooks/alerts?src=gw before the attempt was aborted (timeout after 2000 ms)`,
    })
  })

  it('AbortSignal.timeout bounds an attempt', async () => {
    receiver.answers.push('hang')
    const result = await channel.deliver(notificationFixture(), 1, AbortSignal.timeout(200))
    expect(result).toMatchObject({ ok: false, permanent: false })
    expect((result as { error: string }).error).toMatch(/aborted/)
  })

  it('a refused connection is retryable and names the cause', async () => {
    const port = await closedPort()
    const down = channelFor({ url: `http://127.0.0.1:${port}/hook` })
    const result = await down.deliver(notificationFixture(), 1, signal())
    expect(result).toMatchObject({ ok: false, permanent: false })
    expect((result as { error: string }).error).toMatch(
      new RegExp(
        `^cannot reach http://127.0.0.1:${port}/hook: connect ECONNREFUSED 127.0.0.1:${port}$`,
      ),
    )
  })

  it('without a secret: webhook-id but no timestamp or signature headers', async () => {
    const plain = channelFor({ url: `${receiver.url}/plain` })
    expect(await plain.deliver(notificationFixture(), 1, signal())).toEqual({ ok: true })
    const req = receiver.requests[0]!
    expect(req.headers['webhook-id']).toBe('ntf_01JDX3S8Q4M5Z')
    expect(req.headers).not.toHaveProperty('webhook-signature')
    expect(req.headers).not.toHaveProperty('webhook-timestamp')
  })

  it('an error text never quotes the secret or the header values, even when the receiver echoes them', async () => {
    receiver.answers.push({
      status: 401,
      body: `bad token ${TOKEN}, expected something else than ${SECRET}`,
    })
    const result = await channel.deliver(notificationFixture(), 1, signal())
    expect(result).toMatchObject({ ok: false, permanent: true })
    const { error } = result as { error: string }
    expect(error).toContain('HTTP 401 Unauthorized')
    expect(error).toContain('[redacted]')
    expect(error).not.toContain('tok-9f8e7d6c5b4a')
    expect(error).not.toContain(SECRET.slice(6, 30))
  })

  it('parse names every problem at once, and never quotes the secret', () => {
    const badSecret = 'whsec_!!not-base64!!'
    const { config, problems } = problemsOf(webhookKind.parse, {
      name: 'ops',
      kind: 'webhook',
      timeout: '5s',
      concurrency: 2,
      url: 'ftp://example.com/x',
      headers: { 'Bad Header': 'x', 'webhook-id': 'x', 'X-Num': 5, 'X-Crlf': 'a\r\nb' },
      secret: badSecret,
      header: { typo: true },
    })
    expect(config).toBeNull()
    expect(problems).toEqual([
      'header: is not a field of a webhook channel (known: url, headers, secret)',
      'url: must be an http:// or https:// URL, got the scheme ftp:',
      "headers.Bad Header: is not a valid HTTP header name (letters, digits and !#$%&'*+.^_`|~-)",
      'headers.webhook-id: is set by the webhook channel itself and cannot be configured',
      'headers.X-Num: must be text (quote numbers), got 5',
      'headers.X-Crlf: must not contain line breaks or NUL',
      'secret: must be whsec_ followed by 24 to 64 random bytes in base64 (e.g. whsec_$(openssl rand -base64 32)); what follows whsec_ is not base64 (not quoted: it is a secret)',
    ])
    expect(problems.join('\n')).not.toContain('not-base64')
    const short = problemsOf(webhookKind.parse, {
      url: 'https://example.com/h',
      secret: `whsec_${randomBytes(8).toString('base64')}`,
    })
    expect(short.problems).toEqual([
      'secret: must be whsec_ followed by 24 to 64 random bytes in base64 (e.g. whsec_$(openssl rand -base64 32)); the value given decodes to 8 bytes',
    ])
    const noPrefix = problemsOf(webhookKind.parse, {
      url: 'https://example.com/h',
      secret: randomBytes(32).toString('base64'),
    })
    expect(noPrefix.problems).toEqual([
      'secret: must be whsec_ followed by 24 to 64 random bytes in base64 (e.g. whsec_$(openssl rand -base64 32)); the value given does not start with whsec_ (not quoted: it is a secret)',
    ])
    expect(problemsOf(webhookKind.parse, {}).problems).toEqual([
      'url: is required: an http:// or https:// URL, got nothing',
    ])
    expect(
      problemsOf(webhookKind.parse, { url: 'https://user:pw@example.com/h' }).problems,
    ).toEqual(['url: must not hold credentials (user:password@): put them in headers'])
    expect(webhookKind.secretFields).toEqual(['secret', 'headers'])
  })
})
