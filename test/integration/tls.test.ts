import { writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { join } from 'node:path'
import mqtt, { connectAsync, type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { hashSecret } from '../../src/security/credentials.ts'
import { makeTestCerts, type TestCerts } from '../helpers/certs.ts'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { endAll } from '../helpers/mqtt.ts'
import { allReadings } from '../helpers/store.ts'

/**
 * TLS (DESIGN §8) with certificates made by scripts/make-certs.sh, real TLS handshakes, MQTT.js
 * over mqtts and wss, and node's https client.
 */

const T0 = Date.now() - 60_000

/** GET over HTTPS, trusting `ca`. */
function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: 'GET' }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * Tries to connect without retries and reports what the client saw: CONNACK or not, and the
 * error, if any. A refused TLS handshake shows as no CONNACK and a closed connection.
 */
async function attempt(url: string, options: IClientOptions) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options })
  const errors: Error[] = []
  client.on('error', (err) => errors.push(err))
  // TLS alerts and resets surface on the socket; MQTT.js passes only some of them on.
  client.stream?.on('error', (err: Error) => errors.push(err))
  const connacked = await new Promise<boolean>((resolve) => {
    client.once('connect', () => resolve(true))
    client.once('close', () => resolve(false))
  })
  client.end(true)
  return { connacked, errors: errors.map((e) => e.message) }
}

describe('TLS: mqtts, client certificates, HTTPS and WSS', () => {
  let certs: TestCerts
  let gw: TestGateway | null = null
  const clients = new Set<MqttClient>()

  beforeAll(async () => {
    certs = await makeTestCerts(['dev-tls', 'dev-tls-2'])
  })
  afterAll(async () => {
    await certs?.remove()
  })
  afterEach(async () => {
    await endAll(clients)
    clients.clear()
    await gw?.cleanup()
    gw = null
  })

  const start = async (env: Record<string, string> = {}) => {
    gw = await startTestGateway({
      MQTTS_PORT: '0',
      TLS_CERT: certs.certFile,
      TLS_KEY: certs.keyFile,
      ...env,
    })
    return gw
  }
  const mqttsUrl = () => `mqtts://127.0.0.1:${gw?.gateway.addresses().mqtts?.port}`
  const connect = async (url: string, options: IClientOptions) => {
    const client = await connectAsync(
      url,
      { reconnectPeriod: 0, connectTimeout: 5_000, ...options },
      false,
    )
    clients.add(client)
    return client
  }
  const publishReadings = async (client: MqttClient, deviceId: string, count: number, from = 0) => {
    for (let i = from; i < from + count; i++) {
      await client.publishAsync(
        `sensors/${deviceId}/temperature`,
        JSON.stringify({ value: i, ts: T0 + i }),
        { qos: 1 },
      )
    }
  }
  const storedValues = async (deviceId: string) =>
    (await allReadings((gw as TestGateway).gateway.store, deviceId)).map((r) => r.value)
  const tlsFailures = () => (gw?.logs ?? []).filter((l) => l.msg === 'MQTT TLS handshake failed')

  it('serves mqtts on an OS-chosen port with the server certificate, beside plain MQTT', async () => {
    await start()
    const { mqtts } = gw?.gateway.addresses() ?? {}
    expect(mqtts?.port).toBeGreaterThan(0)
    expect(
      gw?.logs.find((l) => l.msg === `MQTT over TLS listening on 127.0.0.1:${mqtts?.port}`),
    ).toBeDefined()

    const secure = await connect(mqttsUrl(), { clientId: 'dev-tls', ca: certs.ca })
    await publishReadings(secure, 'dev-tls', 3)
    const plain = await connect(gw?.mqttUrl ?? '', { clientId: 'dev-plain' })
    await publishReadings(plain, 'dev-plain', 3)

    // A client that does not trust the gateway's CA refuses the server certificate itself.
    const untrusting = await attempt(mqttsUrl(), { clientId: 'dev-untrusting' })
    expect(untrusting.connacked).toBe(false)
    expect(untrusting.errors.join(' ')).toMatch(/unable to verify the first certificate/)

    expect(await storedValues('dev-tls')).toEqual([0, 1, 2])
    expect(await storedValues('dev-plain')).toEqual([0, 1, 2])
  })

  it('under TLS_CLIENT_CERT=required refuses the handshake without a certificate from TLS_CA', async () => {
    await start({ TLS_CA: certs.caFile, TLS_CLIENT_CERT: 'required' })
    const good = await connect(mqttsUrl(), {
      clientId: 'dev-tls',
      ca: certs.ca,
      ...certs.device('dev-tls'),
    })

    // Same CN, another CA: the handshake fails; the client never gets a CONNACK.
    const stranger = await attempt(mqttsUrl(), {
      clientId: 'dev-tls-impostor',
      ca: certs.ca,
      ...certs.stranger,
    })
    expect(stranger.connacked).toBe(false)
    const none = await attempt(mqttsUrl(), { clientId: 'dev-no-cert', ca: certs.ca })
    expect(none.connacked).toBe(false)
    expect(none.errors.join(' ')).toMatch(/certificate required/)
    await expect(
      connectAsync(mqttsUrl(), { ca: certs.ca, reconnectPeriod: 0, ...certs.stranger }, false),
    ).rejects.toThrow()

    // The gateway says why, once per interval: the stranger's certificate did not verify.
    await vi.waitFor(() => expect(tlsFailures()).toHaveLength(1))
    expect(tlsFailures()[0]).toMatchObject({
      level: 40,
      certificateError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    })
    // No MQTT session was ever opened for them.
    expect(gw?.gateway.stats().connectedClients).toBe(1)

    await publishReadings(good, 'dev-tls', 3)
    expect(await storedValues('dev-tls')).toEqual([0, 1, 2])
    expect(await storedValues('dev-tls-impostor')).toEqual([])
  })

  it('authenticates a verified client certificate as the device its CN names', async () => {
    // Credentials in the registry: every client must authenticate; the certificate is enough.
    const devicesFile = join(certs.dir, 'devices.yaml')
    await writeFile(
      devicesFile,
      [
        'devices:',
        '  - id: dev-tls',
        '  - id: dev-tls-2',
        '  - id: dev-password',
        `    secret: ${await hashSecret('not used here', { N: 1024, r: 8, p: 1 })}`,
        '',
      ].join('\n'),
    )
    await start({ TLS_CA: certs.caFile, TLS_CLIENT_CERT: 'optional', DEVICES_FILE: devicesFile })

    const device = await connect(mqttsUrl(), {
      clientId: 'dev-tls',
      ca: certs.ca,
      ...certs.device('dev-tls'),
    })
    await publishReadings(device, 'dev-tls', 3)

    // Under optional, a certificate that does not verify gives no identity: the client is
    // anonymous, and anonymous clients are refused here (CONNACK 5, not authorized).
    const stranger = connectAsync(
      mqttsUrl(),
      { clientId: 'dev-tls', ca: certs.ca, reconnectPeriod: 0, ...certs.stranger },
      false,
    )
    await expect(stranger).rejects.toMatchObject({ code: 5 })
    const noCertificate = connectAsync(
      mqttsUrl(),
      { clientId: 'someone', ca: certs.ca, reconnectPeriod: 0 },
      false,
    )
    await expect(noCertificate).rejects.toMatchObject({ code: 5 })

    // The identity is the CN: publishing as another device is refused by the ACL (acknowledged,
    // dead-lettered as not_authorized, not stored), and the connection stays.
    const other = await connect(mqttsUrl(), {
      clientId: 'dev-tls-2',
      ca: certs.ca,
      ...certs.device('dev-tls-2'),
    })
    await publishReadings(other, 'dev-tls-2', 2)
    await other.publishAsync('sensors/dev-tls/temperature', '99', { qos: 1 })
    expect(other.connected).toBe(true)
    expect(gw?.gateway.stats().rejectedByReason.not_authorized).toBe(1)

    await publishReadings(device, 'dev-tls', 1, 3)
    expect(await storedValues('dev-tls')).toEqual([0, 1, 2, 3])
    expect(await storedValues('dev-tls-2')).toEqual([0, 1])
  })

  it('serves HTTPS and MQTT over WSS on the HTTP port when HTTP_TLS=true', async () => {
    await start({ HTTP_TLS: 'true' })
    const port = gw?.gateway.addresses().http.port
    expect(
      gw?.logs.find((l) => l.msg === `HTTP listening on https://127.0.0.1:${port}`),
    ).toBeDefined()

    const health = await httpsGet(`https://127.0.0.1:${port}/healthz`, certs.ca)
    expect(health).toEqual({ status: 200, body: '{"status":"ok"}' })

    const wss = await connect(`wss://127.0.0.1:${port}/mqtt`, { clientId: 'dev-wss', ca: certs.ca })
    await publishReadings(wss, 'dev-wss', 3)
    const readings = await httpsGet(
      `https://127.0.0.1:${port}/api/readings?device=dev-wss&from=0&order=asc`,
      certs.ca,
    )
    expect(readings.status).toBe(200)
    expect(
      (JSON.parse(readings.body) as { readings: Array<{ value: number }> }).readings.map(
        (r) => r.value,
      ),
    ).toEqual([0, 1, 2])
    expect(await storedValues('dev-wss')).toEqual([0, 1, 2])
  })

  it('refuses to start with a missing or unusable TLS file, naming the variable and the file', async () => {
    const missing = join(certs.dir, 'missing.crt')
    // The data dir is ours: the gateway never gets as far as creating anything in it.
    const DATA_DIR = join(certs.dir, 'data')
    await expect(
      startTestGateway({ DATA_DIR, TLS_CERT: missing, TLS_KEY: certs.keyFile }),
    ).rejects.toMatchObject({
      code: 'GW_ERR_CONFIG',
      message: `TLS_CERT (tls.certFile): cannot read ${missing}: no such file`,
    })
    await expect(
      startTestGateway({
        DATA_DIR,
        TLS_CERT: certs.certFile,
        TLS_KEY: join(certs.dir, 'devices', 'dev-tls.key'),
      }),
    ).rejects.toMatchObject({
      code: 'GW_ERR_CONFIG',
      message: expect.stringMatching(
        /^TLS_KEY \(tls\.keyFile\) .*dev-tls\.key is not the private key/,
      ),
    })
  })
})
