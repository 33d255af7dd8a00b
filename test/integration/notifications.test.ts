import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import { Webhook } from 'standardwebhooks'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { NotificationJson } from '../../src/http/routes/notifications.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { type GatewayChild, startGatewayChild } from '../helpers/gateway-child.ts'
import { connectClient, endAll } from '../helpers/mqtt.ts'
import { parsePrometheusText } from '../helpers/prometheus.ts'
import { createTempDir, type TempDir } from '../helpers/temp-dir.ts'
import { type Receiver, startReceiver } from '../unit/notify/channels/fixtures.ts'

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`

/** A notifications file: one webhook channel per receiver, one route to all of them. */
function notificationsYaml(
  channels: Array<{ name: string; url: string; timeout?: string; concurrency?: number }>,
  route: string[] = ['on: [firing, resolved]'],
  delivery = 'maxAttempts: 20\n  maxAge: 1h\n  retryBase: 50ms\n  retryMax: 200ms',
): string {
  const lines = ['channels:']
  for (const c of channels) {
    lines.push(`  - name: ${c.name}`, '    kind: webhook', `    url: "${c.url}"`)
    lines.push(`    secret: ${SECRET}`, `    timeout: ${c.timeout ?? '5s'}`)
    if (c.concurrency !== undefined) lines.push(`    concurrency: ${c.concurrency}`)
  }
  lines.push('routes:', '  - name: everything')
  lines.push(`    channels: [${channels.map((c) => c.name).join(', ')}]`)
  lines.push(...route.map((line) => `    ${line}`), 'delivery:', `  ${delivery}`)
  return `${lines.join('\n')}\n`
}

async function listNotifications(httpUrl: string, state: string): Promise<NotificationJson[]> {
  const res = await fetch(`${httpUrl}/api/notifications?state=${state}`)
  expect(res.status).toBe(200)
  return ((await res.json()) as { notifications: NotificationJson[] }).notifications
}

const webhookIdsOf = (receiver: Receiver) =>
  receiver.requests.map((r) => r.headers['webhook-id'] as string)

describe('notifications of a running gateway (webhook channel, real receivers)', () => {
  const receivers: Receiver[] = []
  const clients = new Set<MqttClient>()
  const dirs: TempDir[] = []
  let gw: TestGateway | undefined

  const receiver = async () => {
    const r = await startReceiver()
    receivers.push(r)
    return r
  }

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.cleanup()
    gw = undefined
    for (const r of receivers.splice(0)) await r.close()
    for (const d of dirs.splice(0)) await d.remove()
  })

  it('delivers, retries with the same id, honours Retry-After, dead-letters a 410 for a retry by hand, and a hung receiver delays no other channel', async () => {
    const [ok, flaky, limited, gone, hung] = await Promise.all([
      receiver(),
      receiver(),
      receiver(),
      receiver(),
      receiver(),
    ])
    flaky.answers.push({ status: 500, body: 'try later' })
    limited.answers.push({ status: 429, headers: { 'retry-after': '1' }, body: 'slow down' })
    gone.answers.push({ status: 410, body: 'gone' })
    hung.answers.push('hang', 'hang', 'hang', 'hang')
    const dir = await createTempDir('notify-it-')
    dirs.push(dir)
    const file = path.join(dir.path, 'notifications.yaml')
    await writeFile(
      file,
      notificationsYaml([
        { name: 'ok', url: `${ok.url}/hook` },
        { name: 'flaky', url: `${flaky.url}/hook` },
        { name: 'limited', url: `${limited.url}/hook` },
        { name: 'gone', url: `${gone.url}/hook` },
        { name: 'hung', url: `${hung.url}/hook`, timeout: '60s' },
      ]),
    )
    gw = await startTestGateway({ NOTIFICATIONS_FILE: file })
    const device = await connectClient(gw.mqttUrl, { clientId: 'gh-notify-1' })
    clients.add(device)
    await device.publishAsync('sensors/gh-notify-1/temperature', '35', { qos: 1 })

    // The healthy channels are served while the hung receiver holds its request open (60 s).
    await vi.waitFor(
      () => {
        expect(ok.requests).toHaveLength(1)
        expect(flaky.requests).toHaveLength(2)
        expect(gone.requests).toHaveLength(1)
        expect(hung.requests).toHaveLength(1)
      },
      { timeout: 10_000 },
    )
    const [request] = ok.requests
    if (request === undefined) throw new Error('no request')
    expect(request.method).toBe('POST')
    // The signature verifies with the channel's secret (Standard Webhooks).
    const body = new Webhook(SECRET).verify(request.body, {
      'webhook-id': String(request.headers['webhook-id']),
      'webhook-timestamp': String(request.headers['webhook-timestamp']),
      'webhook-signature': String(request.headers['webhook-signature']),
    }) as { id: string; kind: string; alerts: Array<{ ruleId: string; deviceId: string }> }
    expect(body).toMatchObject({
      kind: 'firing',
      alerts: [{ ruleId: 'high-temperature', deviceId: 'gh-notify-1' }],
    })
    expect(body.id).toBe(request.headers['webhook-id'])

    // The API's rows have exactly the fields /docs documents.
    type Schema = { required?: string[]; properties?: Record<string, Schema>; items?: Schema }
    const doc = (await (await fetch(`${gw.httpUrl}/docs/json`)).json()) as {
      paths: Record<
        string,
        Record<
          string,
          { responses: Record<string, { content: Record<string, { schema: Schema }> }> }
        >
      >
    }
    const listSchema =
      doc.paths['/api/notifications']?.get?.responses['200']?.content['application/json']?.schema
    const documented = listSchema?.properties?.notifications?.items?.required ?? []
    expect(documented).toContain('lastError')
    const [row] = await listNotifications(gw.httpUrl, 'delivered')
    expect(Object.keys(row ?? {}).sort()).toEqual([...documented].sort())

    // 500 then 200: the retry carries the same webhook-id.
    const [firstFlaky, secondFlaky] = webhookIdsOf(flaky)
    expect(secondFlaky).toBe(firstFlaky)

    // 429 with Retry-After: 1 s: the second attempt comes no earlier.
    await vi.waitFor(
      () => {
        expect(limited.requests).toHaveLength(2)
      },
      { timeout: 10_000 },
    )
    const delivered = await listNotifications(gw.httpUrl, 'delivered')
    expect(delivered.map((n) => n.channel).sort()).toEqual(['flaky', 'limited', 'ok'])
    const limitedRow = delivered.find((n) => n.channel === 'limited')
    expect(limitedRow).toMatchObject({ attempts: 2, lastError: expect.stringContaining('429') })
    // Delivered (the second attempt) no earlier than Retry-After's 1 s after the first.
    expect((limitedRow?.updatedAt ?? 0) - (limitedRow?.createdAt ?? 0)).toBeGreaterThanOrEqual(
      1_000,
    )
    expect(new Set(webhookIdsOf(limited)).size).toBe(1)

    // 410: dead-lettered at once, visible with its error, and sent again by hand.
    const failed = await listNotifications(gw.httpUrl, 'failed')
    expect(failed).toHaveLength(1)
    const [dead] = failed
    expect(dead).toMatchObject({ channel: 'gone', attempts: 1, state: 'failed' })
    expect(dead?.lastError).toContain('410')
    expect(dead?.id).toBe(webhookIdsOf(gone)[0])
    const retry = await fetch(`${gw.httpUrl}/api/notifications/${dead?.id}/retry`, {
      method: 'POST',
    })
    expect(retry.status).toBe(200)
    await vi.waitFor(() => expect(gone.requests).toHaveLength(2), { timeout: 10_000 })
    expect(webhookIdsOf(gone)).toEqual([dead?.id, dead?.id])
    await vi.waitFor(async () =>
      expect((await listNotifications(gw!.httpUrl, 'failed')).length).toBe(0),
    )
    const again = await fetch(`${gw.httpUrl}/api/notifications/${dead?.id}/retry`, {
      method: 'POST',
    })
    expect(again.status).toBe(409)

    // The hung channel's one notification is still pending, in flight; nothing else waited on it.
    const pending = await listNotifications(gw.httpUrl, 'pending')
    expect(pending.map((n) => n.channel)).toEqual(['hung'])

    const res = await fetch(`${gw.httpUrl}/metrics`)
    const scrape = parsePrometheusText(await res.text())
    expect(
      scrape.value('gateway_notifications_total', { channel: 'ok', outcome: 'delivered' }),
    ).toBe(1)
    expect(
      scrape.value('gateway_notifications_total', { channel: 'flaky', outcome: 'retried' }),
    ).toBe(1)
    expect(
      scrape.value('gateway_notifications_total', { channel: 'gone', outcome: 'failed' }),
    ).toBe(1)
    expect(
      scrape.value('gateway_notifications_total', { channel: 'gone', outcome: 'delivered' }),
    ).toBe(1)
    expect(scrape.value('gateway_notifications_pending', { channel: 'hung' })).toBe(1)
    expect(scrape.value('gateway_notifications_pending', { channel: 'ok' })).toBe(0)
    expect(scrape.value('gateway_notifications_oldest_pending_seconds')).toBeGreaterThanOrEqual(0)
    expect(
      scrape.value('gateway_notification_delivery_seconds_count', { channel: 'limited' }),
    ).toBe(1)
  }, 30_000)

  it('aborts an attempt at the channel timeout and retries it with the same id', async () => {
    const slow = await receiver()
    slow.answers.push('hang')
    const dir = await createTempDir('notify-it-')
    dirs.push(dir)
    const file = path.join(dir.path, 'notifications.yaml')
    await writeFile(
      file,
      notificationsYaml([{ name: 'slow', url: `${slow.url}/hook`, timeout: '300ms' }]),
    )
    gw = await startTestGateway({ NOTIFICATIONS_FILE: file })
    const device = await connectClient(gw.mqttUrl, { clientId: 'gh-notify-2' })
    clients.add(device)
    await device.publishAsync('sensors/gh-notify-2/temperature', '35', { qos: 1 })
    await vi.waitFor(
      async () => expect(await listNotifications(gw!.httpUrl, 'delivered')).toHaveLength(1),
      { timeout: 10_000 },
    )
    const [n] = await listNotifications(gw.httpUrl, 'delivered')
    expect(n).toMatchObject({ attempts: 2, lastError: 'timed out after 300 ms' })
    expect(webhookIdsOf(slow)).toEqual([n?.id, n?.id])
  })

  it('has no outbox and no notifications without a notifications file', async () => {
    gw = await startTestGateway()
    expect(await listNotifications(gw.httpUrl, 'pending')).toEqual([])
    const scrape = parsePrometheusText(await (await fetch(`${gw.httpUrl}/metrics`)).text())
    expect(scrape.types.has('gateway_notifications_total')).toBe(false)
    const { readdir } = await import('node:fs/promises')
    expect(await readdir(gw.dataDir)).not.toContain('outbox.db')
  })
})

describe('grouping, acknowledgements and silences seen by a webhook receiver', () => {
  const clients = new Set<MqttClient>()
  const dirs: TempDir[] = []
  let gw: TestGateway | undefined
  let hook: Receiver | undefined

  /** A gateway whose one route sends every alert to one receiver, with `route` lines. */
  const start = async (route: string[]) => {
    hook = await startReceiver()
    const dir = await createTempDir('notify-it-')
    dirs.push(dir)
    const file = path.join(dir.path, 'notifications.yaml')
    await writeFile(file, notificationsYaml([{ name: 'hook', url: `${hook.url}/hook` }], route))
    gw = await startTestGateway({ NOTIFICATIONS_FILE: file })
    const device = await connectClient(gw.mqttUrl, { clientId: `pub-${dirs.length}` })
    clients.add(device)
    return { gw, hook, device }
  }
  const bodies = (receiver: Receiver) =>
    receiver.requests.map(
      (r) => JSON.parse(r.body) as { kind: string; alerts: Array<{ deviceId: string }> },
    )
  const post = (url: string, body: unknown) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })

  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.cleanup()
    gw = undefined
    await hook?.close()
    hook = undefined
    for (const d of dirs.splice(0)) await d.remove()
  })

  it('sends the alerts of one grouping window as one POST, firing and resolved each their own', async () => {
    const { hook, device } = await start(['on: [firing, resolved]', 'group: 1s'])
    const devices = ['gh-g1', 'gh-g2', 'gh-g3', 'gh-g4', 'gh-g5']
    for (const id of devices)
      await device.publishAsync(`sensors/${id}/temperature`, '35', { qos: 1 })
    await vi.waitFor(() => expect(hook.requests).toHaveLength(1), { timeout: 10_000 })
    for (const id of devices)
      await device.publishAsync(`sensors/${id}/temperature`, '20', { qos: 1 })
    await vi.waitFor(() => expect(hook.requests).toHaveLength(2), { timeout: 10_000 })
    expect(bodies(hook).map((b) => [b.kind, b.alerts.map((a) => a.deviceId)])).toEqual([
      ['firing', devices],
      ['resolved', devices],
    ])
  })

  it('reminds of an alert still firing until it is acknowledged', async () => {
    const { gw, hook, device } = await start(['on: [firing]', 'repeat: 300ms'])
    await device.publishAsync('sensors/gh-r1/temperature', '35', { qos: 1 })
    await vi.waitFor(
      () =>
        expect(bodies(hook).filter((b) => b.kind === 'repeat').length).toBeGreaterThanOrEqual(2),
      { timeout: 10_000 },
    )
    expect(bodies(hook)[0]?.kind).toBe('firing')
    const ack = await post(
      `${gw.httpUrl}/api/alerts/${encodeURIComponent('high-temperature:gh-r1')}/ack`,
      { comment: 'on it' },
    )
    expect(ack.status).toBe(200)
    // At most the reminder already written when the ack came; then none over 5 intervals.
    const atAck = hook.requests.length
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expect(hook.requests.length).toBeLessThanOrEqual(atAck + 1)
    const settled = hook.requests.length
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(hook.requests.length).toBe(settled)
  })

  it('notifies nothing of a silenced alert, which is still published on MQTT', async () => {
    const { gw, hook, device } = await start(['on: [firing, resolved]'])
    const silence = await post(`${gw.httpUrl}/api/silences`, {
      matchers: { device: 'gh-quiet-*' },
      duration: '1h',
      comment: 'maintenance',
    })
    expect(silence.status).toBe(201)
    const watcher = await connectClient(gw.mqttUrl, { clientId: 'watch-silence' })
    clients.add(watcher)
    const seen: string[] = []
    watcher.on('message', (topic) => seen.push(topic))
    await watcher.subscribeAsync('alerts/#', { qos: 1 })
    await device.publishAsync('sensors/gh-quiet-1/temperature', '35', { qos: 1 })
    await vi.waitFor(() => expect(seen).toContain('alerts/major/gh-quiet-1/high-temperature'))
    // A device outside the silence, after it: its notification comes, the silenced one never did.
    await device.publishAsync('sensors/gh-loud-1/temperature', '35', { qos: 1 })
    await vi.waitFor(() => expect(hook.requests).toHaveLength(1), { timeout: 10_000 })
    expect(bodies(hook).map((b) => b.alerts.map((a) => a.deviceId))).toEqual([['gh-loud-1']])
    expect(await listNotifications(gw.httpUrl, 'pending')).toEqual([])
  })
})

describe('notifications across kill -9 (gateway process)', () => {
  let child: GatewayChild | undefined
  let server: Server | undefined
  const dirs: TempDir[] = []

  afterEach(async () => {
    child?.kill()
    await child?.exited
    child = undefined
    if (server?.listening) {
      server.closeAllConnections()
      server.close()
    }
    for (const d of dirs.splice(0)) await d.remove()
  })

  it('delivers every notification pending at a kill -9 after the restart; duplicates only with the same id', async () => {
    // A port for the receiver, then nobody on it: the receiver is down.
    const probe = createServer()
    probe.listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const { port } = probe.address() as AddressInfo
    probe.close()
    await once(probe, 'close')

    const dir = await createTempDir('notify-kill-')
    dirs.push(dir)
    const dataDir = path.join(dir.path, 'data')
    const file = path.join(dir.path, 'notifications.yaml')
    await writeFile(
      file,
      notificationsYaml([{ name: 'hook', url: `http://127.0.0.1:${port}/hook`, concurrency: 4 }]),
    )
    const env = { NOTIFICATIONS_FILE: file, DATA_DIR: dataDir }
    child = await startGatewayChild({ env })
    const device = await connectClient(child.mqttUrl, { clientId: 'gh-kill' })
    for (let i = 1; i <= 5; i++) {
      await device.publishAsync(`sensors/gh-kill-${i}/temperature`, '35', { qos: 1 })
    }
    for (let i = 1; i <= 2; i++) {
      await device.publishAsync(`sensors/gh-kill-${i}/temperature`, '20', { qos: 1 })
    }
    await device.endAsync()
    // Seven transitions, each one notification, each tried and refused (connection refused).
    let written: NotificationJson[] = []
    await vi.waitFor(
      async () => {
        written = await listNotifications(child!.httpUrl, 'pending')
        expect(written).toHaveLength(7)
        for (const n of written) expect(n.attempts).toBeGreaterThanOrEqual(1)
      },
      { timeout: 15_000 },
    )
    child.kill()
    await child.exited

    // The receiver comes up; then the gateway, on the same DATA_DIR.
    const received: string[] = []
    server = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        received.push(String(req.headers['webhook-id']))
        res.writeHead(200)
        res.end('ok')
      })
    })
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
    child = await startGatewayChild({ env })

    const ids = new Set(written.map((n) => n.id))
    await vi.waitFor(() => expect(new Set(received)).toEqual(ids), { timeout: 15_000 })
    // Every request carried one of the seven ids: a duplicate, if any, is one a receiver can drop.
    for (const id of received) expect(ids.has(id)).toBe(true)
    await vi.waitFor(async () =>
      expect(await listNotifications(child!.httpUrl, 'delivered')).toHaveLength(7),
    )
    expect(await listNotifications(child.httpUrl, 'pending')).toEqual([])
    expect(await child.stop()).toBe(0)
  }, 60_000)
})
