import { Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import type { Client } from 'aedes'
import { afterEach, describe, expect, it } from 'vitest'
import { createEventBus } from '../../../src/bus/event-bus.ts'
import { DEFAULT_PARSE_OPTIONS } from '../../../src/ingest/parse-publish.ts'
import { createDeviceRegistry, type DeviceRegistry } from '../../../src/rules/device-registry.ts'
import { CONNACK, certificateIdentity, createMqttAuth } from '../../../src/security/auth.ts'
import { hashSecret, parseSecretHash, type SecretHash } from '../../../src/security/credentials.ts'
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
