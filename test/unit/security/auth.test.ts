import { EventEmitter } from 'node:events'
import { Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import type { Client } from 'aedes'
import { afterEach, describe, expect, it } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import { DEFAULT_PARSE_OPTIONS } from '../../../src/ingest/parse-publish.ts'
import { createDeviceRegistry, type DeviceRegistry } from '../../../src/rules/device-registry.ts'
import { CONNACK, certificateIdentity, createMqttAuth } from '../../../src/security/auth.ts'
import { hashSecret, parseSecretHash, type SecretHash } from '../../../src/security/credentials.ts'
import { logSafe } from '../../../src/security/log-safe.ts'
import { createSessionOwners } from '../../../src/security/session-owners.ts'
import { createSilentLogger } from '../../../src/telemetry/logger.ts'
import { captureLogs } from '../../helpers/log-capture.ts'

const sockets: TLSSocket[] = []
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy()
})

/** A TLS socket as the TLS server leaves it after a handshake, without the handshake. */
function tlsSocket(authorized: boolean, subject: Record<string, unknown> | undefined): TLSSocket {
  const socket = new TLSSocket(new Socket())
  sockets.push(socket)
  Object.defineProperty(socket, 'authorized', { value: authorized })
  socket.getPeerCertificate = (() => ({ subject })) as TLSSocket['getPeerCertificate']
  return socket
}

async function hash(secret: string): Promise<SecretHash> {
  const parsed = parseSecretHash(await hashSecret(secret, { N: 1024, r: 8, p: 1 }))
  if (!parsed.ok) throw new Error(parsed.message)
  return parsed.hash
}

describe('certificateIdentity', () => {
  it('is the CN of a certificate the TLS handshake verified', () => {
    expect(certificateIdentity({ conn: tlsSocket(true, { CN: 'dev-7', O: 'Acme' }) })).toBe('dev-7')
  })

  it.each([
    ['an unverified certificate', tlsSocket(false, { CN: 'dev-7' })],
    ['no CN', tlsSocket(true, { O: 'Acme' })],
    ['a CN that is not a device id', tlsSocket(true, { CN: 'dev 7/../x' })],
    ['several CNs', tlsSocket(true, { CN: ['dev-7', 'dev-8'] })],
    ['no certificate at all', tlsSocket(true, undefined)],
    ['a plain TCP socket', new Socket()],
    ['a WebSocket stream', { on() {} }],
  ])('is null for %s', (_name, conn) => {
    expect(certificateIdentity({ conn })).toBeNull()
  })

  it('reads the upgrade request socket for MQTT over secure WebSocket', () => {
    const req = { socket: tlsSocket(true, { CN: 'dev-9' }) }
    expect(certificateIdentity({ conn: { on() {} }, req })).toBe('dev-9')
  })
})

describe('authenticate', () => {
  let registry: DeviceRegistry
  const setUp = async () => {
    registry = createDeviceRegistry(
      [
        { id: 'dev-1', tags: {}, secret: await hash('secret-1') },
        { id: 'cert-dev', tags: {} },
      ],
      [{ id: 'ops', secret: await hash('secret-ops'), roles: ['admin'] }],
    )
  }

  const run = (
    auth: ReturnType<typeof createMqttAuth>,
    client: Partial<Client>,
    username?: string,
    password?: string,
  ) =>
    new Promise<{ ok: boolean; returnCode?: number }>((resolve) => {
      auth.authenticate(
        client as Client,
        username,
        password === undefined ? undefined : Buffer.from(password),
        (err, ok) => resolve({ ok: ok === true, ...(err ? { returnCode: err.returnCode } : {}) }),
      )
    })

  const create = (r: DeviceRegistry = registry) => {
    const { log, lines } = captureLogs('debug')
    const auth = createMqttAuth({
      registry: r,
      log,
      bus: createEventBus(createSilentLogger()),
      parseOptions: DEFAULT_PARSE_OPTIONS,
    })
    return { auth, lines }
  }

  it('without any credential configured, lets everyone in, as before', async () => {
    const { auth } = create(createDeviceRegistry([{ id: 'dev-1', tags: {} }]))
    expect(await run(auth, { id: 'x' })).toEqual({ ok: true })
    expect(await run(auth, { id: 'x' }, 'dev-1', 'whatever')).toEqual({ ok: true })
    expect(auth.principalOf({ id: 'x' } as Client)).toBeUndefined()
  })

  it('with credentials: password, anonymous, wrong or unknown, and the client id rule', async () => {
    await setUp()
    const { auth, lines } = create()
    const c1 = { id: 'dev-1' }
    expect(await run(auth, c1, 'dev-1', 'secret-1')).toEqual({ ok: true })
    expect(auth.principalOf(c1 as Client)).toMatchObject({ kind: 'device', id: 'dev-1' })
    expect(await run(auth, { id: 'anything' }, 'dev-1', 'secret-1')).toEqual({ ok: true })
    expect(await run(auth, { id: 'x' })).toEqual({ ok: false, returnCode: CONNACK.notAuthorized })
    expect(await run(auth, { id: 'x' }, 'dev-1', 'nope')).toEqual({
      ok: false,
      returnCode: CONNACK.badUsernameOrPassword,
    })
    expect(await run(auth, { id: 'x' }, 'dev-1')).toEqual({
      ok: false,
      returnCode: CONNACK.badUsernameOrPassword,
    })
    expect(await run(auth, { id: 'x' }, 'ghost', 'secret-1')).toEqual({
      ok: false,
      returnCode: CONNACK.badUsernameOrPassword,
    })
    // A device without a secret cannot log in with a password.
    expect(await run(auth, { id: 'x' }, 'cert-dev', '')).toEqual({
      ok: false,
      returnCode: CONNACK.badUsernameOrPassword,
    })
    // Another principal's id as client id would take over (and kick off) its session.
    expect(await run(auth, { id: 'dev-1' }, 'ops', 'secret-ops')).toEqual({
      ok: false,
      returnCode: CONNACK.identifierRejected,
    })
    const ops = { id: 'ops-console-1' }
    expect(await run(auth, ops, 'ops', 'secret-ops')).toEqual({ ok: true })
    expect(auth.principalOf(ops as Client)).toMatchObject({ kind: 'app', id: 'ops' })
    // Passwords never reach the log, right or wrong.
    const text = JSON.stringify(lines)
    for (const secret of ['secret-1', 'secret-ops', 'nope']) expect(text).not.toContain(secret)
  })

  it('a verified client certificate names the device, no password needed', async () => {
    await setUp()
    const { auth } = create()
    const cert = (cn: string, id = cn) => ({ id, conn: tlsSocket(true, { CN: cn }) })
    const client = cert('cert-dev')
    expect(await run(auth, client)).toEqual({ ok: true })
    expect(auth.principalOf(client as unknown as Client)).toMatchObject({
      kind: 'device',
      id: 'cert-dev',
    })
    // A CN the registry does not list is still a device the CA vouches for.
    expect(await run(auth, cert('new-dev'))).toEqual({ ok: true })
    expect(await run(auth, cert('cert-dev'), 'cert-dev')).toEqual({ ok: true })
    expect(await run(auth, cert('cert-dev'), 'dev-1', 'secret-1')).toEqual({
      ok: false,
      returnCode: CONNACK.badUsernameOrPassword,
    })
    expect(await run(auth, cert('ops'))).toEqual({ ok: false, returnCode: CONNACK.notAuthorized })
    expect(await run(auth, cert('cert-dev', 'dev-1'))).toEqual({
      ok: false,
      returnCode: CONNACK.identifierRejected,
    })
    // Unverified: no identity from it, so credentials are needed as for anyone.
    const unverified = { id: 'cert-dev', conn: tlsSocket(false, { CN: 'cert-dev' }) }
    expect(await run(auth, unverified)).toEqual({ ok: false, returnCode: CONNACK.notAuthorized })
  })
})

describe('client ids held by a principal (issue 16 point 6)', () => {
  /** A client as Aedes hands it to authenticate: its connection closes with 'close'. */
  const client = (id: string, clean: boolean) => {
    const conn = Object.assign(new EventEmitter(), { destroyed: false })
    const close = () => {
      conn.destroyed = true
      conn.emit('close')
    }
    return { client: { id, clean, conn } as unknown as Client, close }
  }
  const login = (auth: ReturnType<typeof createMqttAuth>, c: Client, who: string) =>
    new Promise<number | null>((resolve) =>
      auth.authenticate(c, who, Buffer.from(`secret-${who}`), (err) =>
        resolve(err ? (err.returnCode ?? -1) : null),
      ),
    )
  const setUp = async () => {
    const registry = createDeviceRegistry(
      [
        { id: 'dev-a', tags: {}, secret: await hash('secret-dev-a') },
        { id: 'dev-b', tags: {}, secret: await hash('secret-dev-b') },
      ],
      [],
    )
    const { log, lines } = captureLogs('debug')
    const owners = createSessionOwners({ maxIdle: 2 })
    const auth = createMqttAuth({
      registry,
      log,
      parseOptions: DEFAULT_PARSE_OPTIONS,
      sessionOwners: owners,
    })
    return { auth, owners, lines }
  }

  it("refuses another principal a persistent session's client id (2), connected or not, until its owner ends it", async () => {
    const { auth, owners, lines } = await setUp()
    const a1 = client('shared-1', false)
    expect(await login(auth, a1.client, 'dev-a')).toBeNull()
    expect(await login(auth, client('shared-1', true).client, 'dev-b')).toBe(
      CONNACK.identifierRejected,
    )
    // The owner may take over its own session.
    const a2 = client('shared-1', false)
    expect(await login(auth, a2.client, 'dev-a')).toBeNull()
    a1.close()
    a2.close()
    // Disconnected, the session and its queued messages are still dev-a's.
    expect(owners.ownerOf('shared-1')).toBe('dev-a')
    expect(await login(auth, client('shared-1', false).client, 'dev-b')).toBe(
      CONNACK.identifierRejected,
    )
    // A clean connect by the owner ends the session: once it closes, the id is free.
    const a3 = client('shared-1', true)
    expect(await login(auth, a3.client, 'dev-a')).toBeNull()
    a3.close()
    expect(owners.size).toBe(0)
    expect(await login(auth, client('shared-1', true).client, 'dev-b')).toBeNull()
    expect(lines.find((l) => l.holder === 'dev-a')).toMatchObject({
      level: 40,
      clientId: 'shared-1',
      principal: 'dev-b',
      msg: 'MQTT connection refused: client id is in use or has a session of another device or app',
    })
  })

  it('forgets a clean-session id when its connection closes, even one closed during the password check', async () => {
    const { auth, owners } = await setUp()
    const b = client('temp-1', true)
    expect(await login(auth, b.client, 'dev-b')).toBeNull()
    expect(await login(auth, client('temp-1', true).client, 'dev-a')).toBe(
      CONNACK.identifierRejected,
    )
    b.close()
    expect(owners.size).toBe(0)
    const gone = client('temp-2', false)
    gone.close()
    expect(await login(auth, gone.client, 'dev-b')).toBeNull()
    // Persistent: remembered although its connection is already gone.
    expect(owners.ownerOf('temp-2')).toBe('dev-b')
  })

  it('keeps at most maxIdle disconnected persistent sessions, forgetting the one idle longest', async () => {
    const { auth, owners } = await setUp()
    for (const id of ['p-1', 'p-2', 'p-3']) {
      const c = client(id, false)
      expect(await login(auth, c.client, 'dev-a')).toBeNull()
      c.close()
    }
    expect(owners.size).toBe(2)
    expect(owners.ownerOf('p-1')).toBeUndefined()
    expect(owners.ownerOf('p-3')).toBe('dev-a')
    // Connected ids are never evicted: they are bounded by MAX_CONNECTIONS.
    const live = client('p-1', false)
    expect(await login(auth, live.client, 'dev-a')).toBeNull()
    expect(owners.size).toBe(3)
  })
})

describe('refusal log lines (issue 16 point 4a)', () => {
  it('logs one line per reason per interval, with client id and username cut and their length', async () => {
    const registry = createDeviceRegistry(
      [{ id: 'dev-1', tags: {}, secret: await hash('secret-1') }],
      [],
    )
    const { log, lines } = captureLogs('debug')
    let nowMs = 0
    const auth = createMqttAuth({
      registry,
      log,
      parseOptions: DEFAULT_PARSE_OPTIONS,
      now: () => nowMs,
    })
    const longId = 'c'.repeat(60_000)
    const longUser = 'u'.repeat(60_000)
    const tries = async () => {
      for (let i = 0; i < 20; i++) {
        await new Promise<void>((resolve) =>
          auth.authenticate({ id: longId } as Client, longUser, Buffer.from('x'), () => resolve()),
        )
        await new Promise<void>((resolve) =>
          auth.authenticate({ id: longId } as Client, undefined, undefined, () => resolve()),
        )
      }
    }
    await tries()
    const refused = () => lines.filter((l) => String(l.msg).startsWith('MQTT connection refused'))
    expect(refused().map((l) => l.msg)).toEqual([
      'MQTT connection refused: bad username or password',
      'MQTT connection refused: no credentials given',
    ])
    expect(refused()[0]).toMatchObject({
      clientId: `${'c'.repeat(128)}…[60000 chars]`,
      username: `${'u'.repeat(128)}…[60000 chars]`,
      suppressed: 0,
    })
    nowMs = 10_000
    await tries()
    expect(refused()).toHaveLength(4)
    expect(refused()[2]).toMatchObject({ suppressed: 19 })
    expect(JSON.stringify(lines).length).toBeLessThan(4_000)
  })

  it('logSafe leaves short strings alone', () => {
    expect(logSafe('dev-1')).toBe('dev-1')
    expect(logSafe(undefined)).toBeUndefined()
    expect(logSafe('x'.repeat(129))).toBe(`${'x'.repeat(128)}…[129 chars]`)
  })
})

describe('authorizeSubscribe and authorizeForward', () => {
  it('negate a filter outside the grants (SUBACK 0x80) and drop what a client may not read', async () => {
    const registry = createDeviceRegistry([{ id: 'dev-1', tags: {}, secret: await hash('s') }])
    const auth = createMqttAuth({
      registry,
      log: createSilentLogger(),
      bus: createEventBus(createSilentLogger()),
      parseOptions: DEFAULT_PARSE_OPTIONS,
    })
    const device = { id: 'dev-1' } as Client
    const anonymous = { id: 'someone' } as Client
    await new Promise<void>((resolve) =>
      auth.authenticate(device, 'dev-1', Buffer.from('s'), () => resolve()),
    )
    const subscribe = (client: Client, topic: string) =>
      new Promise<unknown>((resolve) =>
        auth.authorizeSubscribe(client, { topic, qos: 1 } as never, (err, sub) => {
          expect(err).toBeNull()
          resolve(sub)
        }),
      )
    expect(await subscribe(device, 'sensors/dev-1/#')).toEqual({ topic: 'sensors/dev-1/#', qos: 1 })
    expect(await subscribe(device, 'sensors/#')).toBeNull()
    // No principal: a client let in while no credentials existed keeps the old, open behaviour.
    expect(await subscribe(anonymous, '#')).toEqual({ topic: '#', qos: 1 })

    const packet = (topic: string) => ({ topic, payload: Buffer.from('1') }) as never
    expect(auth.authorizeForward(device, packet('devices/dev-1/status'))).toEqual(
      packet('devices/dev-1/status'),
    )
    expect(auth.authorizeForward(device, packet('sensors/dev-2/temperature'))).toBeNull()
    expect(auth.authorizeForward(anonymous, packet('sensors/dev-2/temperature'))).not.toBeNull()
  })
})
