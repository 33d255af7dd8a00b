import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  RESOLVED_COLOR,
  SEVERITY_COLORS,
  type SlackConfig,
  type SlackMessage,
  slackKind,
} from '../../../../src/notify/channels/slack.ts'
import type { NotificationChannel } from '../../../../src/notify/types.ts'
import { captureLogs } from '../../../helpers/log-capture.ts'
import {
  alertFixture,
  closedPort,
  groupFixture,
  notificationFixture,
  problemsOf,
  type Receiver,
  startReceiver,
} from './fixtures.ts'

/** The path of an incoming-webhook URL is its credential (Slack: /services/T.../B.../secret). */
const HOOK_PATH = '/services/T0001/B0002/XXsecretXXtokenXX'

function channelFor(url: string): NotificationChannel {
  const { config, problems } = problemsOf(slackKind.parse, { url })
  expect(problems).toEqual([])
  return slackKind.create('chat', config as SlackConfig, { log: captureLogs().log })
}

const signal = () => new AbortController().signal

describe('slack channel', () => {
  let receiver: Receiver
  let channel: NotificationChannel
  beforeAll(async () => {
    receiver = await startReceiver()
    channel = channelFor(`${receiver.url}${HOOK_PATH}`)
  })
  afterAll(async () => {
    await channel.close()
    await receiver.close()
  })
  beforeEach(() => {
    receiver.requests.length = 0
    receiver.answers.length = 0
  })

  it('posts text plus one attachment coloured by severity, with Slack control characters escaped', async () => {
    expect(await channel.deliver(notificationFixture(), 1, signal())).toEqual({ ok: true })
    const req = receiver.requests[0]!
    expect(req.url).toBe(HOOK_PATH)
    expect(req.headers['content-type']).toBe('application/json')
    expect(JSON.parse(req.body)).toEqual({
      text: '[CRITICAL] greenhouse-1: greenhouse-hot firing',
      attachments: [
        {
          color: SEVERITY_COLORS.critical,
          fallback: '[CRITICAL] greenhouse-1: greenhouse-hot firing',
          text: 'greenhouse-1 temperature = 41.5 &gt; 35 &amp; rising &lt;fast&gt;',
        },
      ],
    })
  })

  it('a group shows each alert on a line; the colour is the worst firing severity, green when resolved', async () => {
    const group = groupFixture(3)
    const mixed = {
      ...group,
      alerts: [
        alertFixture({ deviceId: 'gh-a', severity: 'minor' }),
        alertFixture({ deviceId: 'gh-b', severity: 'major' }),
        alertFixture({ deviceId: 'gh-c', severity: 'critical', state: 'resolved' }),
      ],
    }
    expect(await channel.deliver(mixed, 1, signal())).toEqual({ ok: true })
    const message = JSON.parse(receiver.requests[0]!.body) as SlackMessage
    expect(message.text).toBe('[critical] greenhouse-hot: 3 alerts firing')
    expect(message.attachments).toHaveLength(1)
    expect(message.attachments[0]?.color).toBe(SEVERITY_COLORS.major)
    expect(message.attachments[0]?.text.split('\n')).toEqual([
      'greenhouse-1: greenhouse-1 temperature = 36 &gt; 35',
      'greenhouse-2: greenhouse-2 temperature = 37 &gt; 35',
      'greenhouse-3: greenhouse-3 temperature = 38 &gt; 35',
    ])
    const resolved = groupFixture(3, { state: 'resolved' })
    expect(await channel.deliver(resolved, 1, signal())).toEqual({ ok: true })
    const second = JSON.parse(receiver.requests[1]!.body) as SlackMessage
    expect(second.text).toBe('[critical] greenhouse-hot: 3 alerts resolved')
    expect(second.attachments[0]?.color).toBe(RESOLVED_COLOR)
  })

  it('a storm of 200 is one message: 100 lines and a count of the rest', async () => {
    expect(await channel.deliver(groupFixture(200), 1, signal())).toEqual({ ok: true })
    expect(receiver.requests).toHaveLength(1)
    const lines = (
      JSON.parse(receiver.requests[0]!.body) as SlackMessage
    ).attachments[0]!.text.split('\n')
    expect(lines).toHaveLength(100 + 1)
    expect(lines[99]).toBe('greenhouse-100: greenhouse-100 temperature = 135 &gt; 35')
    expect(lines.at(-1)).toBe('... and 100 more lines')
  })

  it('refusals are mapped, and their texts never quote the URL path (the token)', async () => {
    receiver.answers.push({ status: 404, body: `no_service ${HOOK_PATH}` })
    const gone = await channel.deliver(notificationFixture(), 1, signal())
    expect(gone).toEqual({
      ok: false,
      permanent: true,
      error: `HTTP 404 Not Found from ${receiver.url} (url redacted): no_service [redacted]`,
    })
    receiver.answers.push({ status: 429, headers: { 'Retry-After': '30' }, body: 'rate_limited' })
    expect(await channel.deliver(notificationFixture(), 1, signal())).toMatchObject({
      ok: false,
      permanent: false,
      retryAfterMs: 30_000,
    })
    const port = await closedPort()
    const down = channelFor(`http://127.0.0.1:${port}${HOOK_PATH}`)
    const refused = await down.deliver(notificationFixture(), 1, signal())
    expect(refused).toMatchObject({ ok: false, permanent: false })
    expect((refused as { error: string }).error).toMatch(/ECONNREFUSED/)
    expect((refused as { error: string }).error).not.toContain('XXsecretXX')
  })

  it('parse: the URL is required, and a bad one is not quoted back', () => {
    expect(problemsOf(slackKind.parse, {}).problems).toEqual([
      'url: is required: an http:// or https:// URL, got nothing',
    ])
    const bad = problemsOf(slackKind.parse, { url: 'hooks.slack.com/services/T/B/XXsecretXX' })
    expect(bad.config).toBeNull()
    expect(bad.problems).toEqual([
      'url: must be an http:// or https:// URL, got a string that is not one (not quoted: it is a secret)',
    ])
    expect(
      problemsOf(slackKind.parse, { url: 'https://x.example/h', channel: '#ops' }).problems,
    ).toEqual(['channel: is not a field of a slack channel (known: url)'])
    expect(slackKind.secretFields).toEqual(['url'])
  })
})
