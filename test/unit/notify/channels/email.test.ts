import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { SMTPServer, type SMTPServerOptions } from 'smtp-server'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type EmailConfig, emailKind } from '../../../../src/notify/channels/email.ts'
import type { NotificationChannel } from '../../../../src/notify/types.ts'
import { makeTestCerts, type TestCerts } from '../../../helpers/certs.ts'
import { captureLogs } from '../../../helpers/log-capture.ts'
import { closedPort, groupFixture, notificationFixture, problemsOf } from './fixtures.ts'

const USER = 'alerts@gw.example'
const PASS = 'pa55-w0rd-s3cr3t'

interface Received {
  from: string
  to: string[]
  user: unknown
  secure: boolean
  raw: string
}

interface SmtpReceiver {
  port: number
  mails: Received[]
  close(): Promise<void>
}

/** A real SMTP server (smtp-server) on 127.0.0.1, port 0; `options` add to or override ours. */
async function startSmtp(
  certs: TestCerts,
  options: Partial<SMTPServerOptions> = {},
): Promise<SmtpReceiver> {
  const mails: Received[] = []
  const server = new SMTPServer({
    key: await readFileText(certs.keyFile),
    cert: await readFileText(certs.certFile),
    authMethods: ['PLAIN', 'LOGIN'],
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASS) return callback(null, { user: USER })
      const err = Object.assign(new Error('Invalid username or password'), { responseCode: 535 })
      return callback(err)
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user,
          secure: session.secure,
          raw: Buffer.concat(chunks).toString('utf8'),
        })
        callback()
      })
    },
    logger: false,
    ...options,
  })
  server.listen(0, '127.0.0.1')
  await once(server.server, 'listening')
  return {
    port: (server.server.address() as AddressInfo).port,
    mails,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

async function readFileText(file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  return readFile(file, 'utf8')
}

/** The header block and the decoded body of a received message (nodemailer may use QP). */
function parseMail(raw: string): { headers: Map<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n')
  const headers = new Map<string, string>()
  for (const line of raw
    .slice(0, split)
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n')) {
    const colon = line.indexOf(':')
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim())
  }
  let body = raw.slice(split + 4)
  const encoding = headers.get('content-transfer-encoding')
  if (encoding === 'quoted-printable') {
    body = Buffer.from(
      body
        .replace(/=\r\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_, hex: string) =>
          String.fromCharCode(Number.parseInt(hex, 16)),
        ),
      'latin1',
    ).toString('utf8')
  } else if (encoding === 'base64') {
    body = Buffer.from(body, 'base64').toString('utf8')
  }
  return { headers, body: body.replace(/\r\n/g, '\n') }
}

describe('email channel', () => {
  let certs: TestCerts
  const open: Array<{ close(): Promise<void> }> = []
  beforeAll(async () => {
    certs = await makeTestCerts(['sim-001'])
  })
  afterEach(async () => {
    // Channels first: the server's close waits for the client's pooled connections.
    for (const item of open.splice(0).reverse()) await item.close()
  })
  afterAll(async () => {
    await certs.remove()
  })

  function channelFor(raw: Record<string, unknown>): NotificationChannel {
    const { config, problems } = problemsOf(emailKind.parse, raw)
    expect(problems).toEqual([])
    const channel = emailKind.create('mail', config as EmailConfig, { log: captureLogs().log })
    open.push(channel)
    return channel
  }

  async function smtp(options: Partial<SMTPServerOptions> = {}): Promise<SmtpReceiver> {
    const receiver = await startSmtp(certs, options)
    open.unshift(receiver)
    return receiver
  }

  const signal = () => new AbortController().signal

  it('STARTTLS (required) with AUTH PLAIN and the CA file: subject, body, sender and recipients', async () => {
    const server = await smtp({ authMethods: ['PLAIN'] })
    const channel = channelFor({
      host: '127.0.0.1',
      port: server.port,
      requireTLS: true,
      auth: { user: USER, pass: PASS },
      from: 'Sensor gateway <gateway@gw.example>',
      to: ['ops@farm.example', 'oncall@farm.example'],
      tls: { caFile: certs.caFile },
    })
    const notification = notificationFixture()
    expect(await channel.deliver(notification, 1, signal())).toEqual({ ok: true })
    expect(server.mails).toHaveLength(1)
    const mail = server.mails[0]!
    expect(mail.secure).toBe(true)
    expect(mail.user).toBe(USER)
    expect(mail.from).toBe('gateway@gw.example')
    expect(mail.to).toEqual(['ops@farm.example', 'oncall@farm.example'])
    const { headers, body } = parseMail(mail.raw)
    expect(headers.get('subject')).toBe('[CRITICAL] greenhouse-1: greenhouse-hot firing')
    expect(headers.get('to')).toBe('ops@farm.example, oncall@farm.example')
    expect(headers.get('message-id')).toBe('<ntf_01JDX3S8Q4M5Z@sensor-gateway>')
    expect(headers.get('x-notification-id')).toBe('ntf_01JDX3S8Q4M5Z')
    expect(headers.get('content-type')).toMatch(/^text\/plain/)
    expect(body).toBe(
      [
        'greenhouse-1 temperature = 41.5 > 35 & rising <fast>',
        '',
        '--',
        'Notification ntf_01JDX3S8Q4M5Z (firing, route critical-to-ops, channel ops) from sensor-gateway',
        '',
      ].join('\n'),
    )
  })

  it('implicit TLS (secure) with AUTH LOGIN; a group is one email with each alert on a line', async () => {
    const server = await smtp({ secure: true, authMethods: ['LOGIN'] })
    const channel = channelFor({
      host: '127.0.0.1',
      port: server.port,
      secure: true,
      auth: { user: USER, pass: PASS },
      from: 'gateway@gw.example',
      to: 'ops@farm.example',
      tls: { caFile: certs.caFile },
    })
    expect(await channel.deliver(groupFixture(4), 1, signal())).toEqual({ ok: true })
    const mail = server.mails[0]!
    expect([mail.secure, mail.user, mail.to]).toEqual([true, USER, ['ops@farm.example']])
    const { headers, body } = parseMail(mail.raw)
    expect(headers.get('subject')).toBe('[critical] greenhouse-hot: 4 alerts firing')
    expect(body.split('\n')).toEqual([
      'greenhouse-1: greenhouse-1 temperature = 36 > 35',
      'greenhouse-2: greenhouse-2 temperature = 37 > 35',
      'greenhouse-3: greenhouse-3 temperature = 38 > 35',
      'greenhouse-4: greenhouse-4 temperature = 39 > 35',
      '',
      '--',
      'Notification ntf_group_1 (firing, route critical-to-ops, channel ops) from sensor-gateway',
      '',
    ])
  })

  it('a wrong password is a permanent 535 whose text never holds the password', async () => {
    const server = await smtp()
    const channel = channelFor({
      host: '127.0.0.1',
      port: server.port,
      requireTLS: true,
      auth: { user: USER, pass: `${PASS}-wrong` },
      from: 'gateway@gw.example',
      to: ['ops@farm.example'],
      tls: { caFile: certs.caFile },
    })
    const result = await channel.deliver(notificationFixture(), 1, signal())
    expect(result).toMatchObject({ ok: false, permanent: true })
    const { error } = result as { error: string }
    expect(error).toMatch(
      /^SMTP 535 on AUTH PLAIN from 127\.0\.0\.1:\d+: .*Invalid username or password/,
    )
    expect(error).not.toContain(PASS)
    expect(server.mails).toHaveLength(0)
  })

  it('maps SMTP replies: 4xx retryable, 5xx permanent, at RCPT TO and at DATA', async () => {
    const server = await smtp({
      onRcptTo(address, _session, callback) {
        const code = Number(/^rcpt-(\d{3})@/.exec(address.address)?.[1] ?? 0)
        if (code === 0) return callback()
        return callback(Object.assign(new Error(`rcpt refused ${code}`), { responseCode: code }))
      },
      onData(stream, session, callback) {
        stream.resume()
        stream.on('end', () => {
          const code = Number(/^data-(\d{3})@/.exec(session.envelope.rcptTo[0]?.address ?? '')?.[1])
          callback(Object.assign(new Error(`data refused ${code}`), { responseCode: code }))
        })
      },
    })
    const base = {
      host: '127.0.0.1',
      port: server.port,
      auth: { user: USER, pass: PASS },
      from: 'gateway@gw.example',
      tls: { caFile: certs.caFile },
    }
    const cases: Array<[string, boolean, RegExp]> = [
      ['rcpt-450@farm.example', false, /^SMTP 450 on RCPT TO from .*rcpt refused 450/],
      ['rcpt-550@farm.example', true, /^SMTP 550 on RCPT TO from .*rcpt refused 550/],
      ['data-451@farm.example', false, /^SMTP 451 on DATA from .*data refused 451/],
      ['data-554@farm.example', true, /^SMTP 554 on DATA from .*data refused 554/],
    ]
    for (const [to, permanent, error] of cases) {
      const channel = channelFor({ ...base, to: [to] })
      const result = await channel.deliver(notificationFixture(), 1, signal())
      expect(result, to).toMatchObject({ ok: false, permanent })
      expect((result as { error: string }).error, to).toMatch(error)
    }
  })

  it('connection errors are retryable: refused, and a self-signed certificate without its CA', async () => {
    const port = await closedPort()
    const refused = await channelFor({
      host: '127.0.0.1',
      port,
      from: 'gateway@gw.example',
      to: ['ops@farm.example'],
    }).deliver(notificationFixture(), 1, signal())
    expect(refused).toMatchObject({ ok: false, permanent: false })
    expect((refused as { error: string }).error).toMatch(
      new RegExp(`^cannot send through 127.0.0.1:${port}: .*ECONNREFUSED`),
    )
    const server = await smtp()
    const untrusted = await channelFor({
      host: '127.0.0.1',
      port: server.port,
      requireTLS: true,
      auth: { user: USER, pass: PASS },
      from: 'gateway@gw.example',
      to: ['ops@farm.example'],
    }).deliver(notificationFixture(), 1, signal())
    expect(untrusted).toMatchObject({ ok: false, permanent: false })
    expect((untrusted as { error: string }).error).toMatch(/certificate/)
    expect((untrusted as { error: string }).error).not.toContain(PASS)
    // rejectUnauthorized: false accepts it (a lab server), still over TLS.
    expect(
      await channelFor({
        host: '127.0.0.1',
        port: server.port,
        requireTLS: true,
        auth: { user: USER, pass: PASS },
        from: 'gateway@gw.example',
        to: ['ops@farm.example'],
        tls: { rejectUnauthorized: false },
      }).deliver(notificationFixture(), 1, signal()),
    ).toEqual({ ok: true })
    expect(server.mails.map((m) => m.secure)).toEqual([true])
  })

  it('a server that never answers DATA: the attempt resolves retryable when its signal aborts', async () => {
    const stuck: Array<() => void> = []
    const server = await smtp({
      onData(stream, _session, callback) {
        stream.resume()
        stream.on('end', () => stuck.push(() => callback()))
      },
    })
    const channel = channelFor({
      host: '127.0.0.1',
      port: server.port,
      auth: { user: USER, pass: PASS },
      from: 'gateway@gw.example',
      to: ['ops@farm.example'],
      tls: { caFile: certs.caFile },
    })
    const controller = new AbortController()
    const pending = channel.deliver(notificationFixture(), 1, controller.signal)
    await vi.waitFor(() => expect(stuck).toHaveLength(1), { timeout: 10_000 })
    controller.abort()
    expect(await pending).toEqual({
      ok: false,
      permanent: false,
      error: `no answer from 127.0.0.1:${server.port} before the attempt was aborted`,
    })
    for (const release of stuck) release()
  })

  it('parse names every problem at once and never quotes the password', () => {
    const { config, problems } = problemsOf(emailKind.parse, {
      name: 'mail',
      kind: 'email',
      port: 70000,
      secure: 'yes',
      auth: { user: '', pass: 12345, password: 'x' },
      from: 'not an address',
      to: ['ops@farm.example', 'nobody'],
      tls: { caFile: '/nonexistent/ca.pem', verify: false },
      cc: ['x@y.example'],
    })
    expect(config).toBeNull()
    expect(problems).toEqual([
      'cc: is not a field of an email channel (known: host, port, secure, requireTLS, auth, from, to, tls)',
      'host: is required: non-empty text, got nothing',
      'secure: must be true or false, got "yes"',
      'port: must be a TCP port from 1 to 65535, got 70000',
      "auth.password: is not a field of an email channel's auth (known: user, pass)",
      'auth.user: is required: non-empty text, got ""',
      'auth.pass: is required with auth.user: the password as text, got 12345',
      'from: must be an email address (a@b.example or "Name <a@b.example>"), got "not an address"',
      'to[1]: must be an email address (a@b.example or "Name <a@b.example>"), got "nobody"',
      "tls.verify: is not a field of an email channel's tls (known: rejectUnauthorized, caFile)",
      "tls.caFile: cannot read /nonexistent/ca.pem: ENOENT: no such file or directory, open '/nonexistent/ca.pem'",
    ])
    const both = problemsOf(emailKind.parse, {
      host: 'smtp.example',
      secure: true,
      requireTLS: true,
      from: 'a@b.example',
      to: [],
    })
    expect(both.problems).toEqual([
      'requireTLS: is for STARTTLS; with secure: true the connection is TLS from the start: set one of them',
      'to: is required: a list of email addresses, got a list of 0',
    ])
    const ok = problemsOf(emailKind.parse, {
      host: 'smtp.example',
      from: 'a@b.example',
      to: 'c@d.example',
    })
    expect(ok).toEqual({
      problems: [],
      config: {
        host: 'smtp.example',
        port: 587,
        secure: false,
        requireTLS: false,
        auth: null,
        from: 'a@b.example',
        to: ['c@d.example'],
        tls: { rejectUnauthorized: true, ca: null },
      },
    })
    expect(emailKind.secretFields).toEqual(['auth.pass'])
  })
})
