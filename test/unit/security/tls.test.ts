import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { GatewayConfig } from '../../../src/config/schema.ts'
import { GatewayError } from '../../../src/errors.ts'
import { loadGatewayTls } from '../../../src/security/tls.ts'
import { makeTestCerts, type TestCerts } from '../../helpers/certs.ts'

type TlsConfig = Pick<GatewayConfig, 'tls' | 'http'>

describe('loadGatewayTls', () => {
  let certs: TestCerts

  beforeAll(async () => {
    certs = await makeTestCerts(['dev-tls'])
  })
  afterAll(async () => {
    await certs.remove()
  })

  const config = (tls: Partial<GatewayConfig['tls']>, httpTls = false): TlsConfig => ({
    tls: { certFile: '', keyFile: '', caFile: '', clientCert: 'off', ...tls },
    http: {
      host: '127.0.0.1',
      port: 0,
      tls: httpTls,
      corsOrigins: '',
      requestTimeoutMs: 30_000,
      headersTimeoutMs: 10_000,
      maxConnections: 1_000,
      maxConnectionsPerAddress: 100,
    },
  })
  const files = () => ({ certFile: certs.certFile, keyFile: certs.keyFile })

  /** The GatewayError message, so each case can say which variable and file it names. */
  const failure = (c: TlsConfig): string => {
    try {
      loadGatewayTls(c)
    } catch (err) {
      expect(err).toBeInstanceOf(GatewayError)
      expect((err as GatewayError).code).toBe('GW_ERR_CONFIG')
      return (err as Error).message
    }
    throw new Error('expected loadGatewayTls to throw')
  }

  it('is off when no certificate is configured', () => {
    expect(loadGatewayTls(config({}))).toBeNull()
  })

  it('gives the mqtts listener the server certificate, and HTTPS when HTTP_TLS is on', () => {
    const plain = loadGatewayTls(config(files()))
    expect(plain?.https).toBeNull()
    expect(plain?.mqtts).toMatchObject({ requestCert: false, rejectUnauthorized: false })
    expect(plain?.mqtts.ca).toBeUndefined()
    const https = loadGatewayTls(config(files(), true))
    expect(https?.https?.cert.toString()).toContain('BEGIN CERTIFICATE')
    expect(https?.https?.key.toString()).toContain('PRIVATE KEY')
  })

  it('asks for client certificates under optional, and insists under required', () => {
    const optional = loadGatewayTls(
      config({ ...files(), caFile: certs.caFile, clientCert: 'optional' }),
    )
    expect(optional?.mqtts).toMatchObject({ requestCert: true, rejectUnauthorized: false })
    expect(optional?.mqtts.ca).toEqual(certs.ca)
    const required = loadGatewayTls(
      config({ ...files(), caFile: certs.caFile, clientCert: 'required' }),
    )
    expect(required?.mqtts).toMatchObject({ requestCert: true, rejectUnauthorized: true })
  })

  it('names the variable and the file of a missing file', () => {
    const missing = join(certs.dir, 'nope.crt')
    expect(failure(config({ ...files(), certFile: missing }))).toBe(
      `TLS_CERT (tls.certFile): cannot read ${missing}: no such file`,
    )
    expect(failure(config({ ...files(), keyFile: missing }))).toBe(
      `TLS_KEY (tls.keyFile): cannot read ${missing}: no such file`,
    )
    expect(failure(config({ ...files(), caFile: missing, clientCert: 'required' }))).toBe(
      `TLS_CA (tls.caFile): cannot read ${missing}: no such file`,
    )
    expect(failure(config({ ...files(), certFile: certs.dir }))).toContain('is a directory')
  })

  it('refuses files that are not PEM, and a key that is not the certificate key', () => {
    const junk = join(certs.dir, 'junk.pem')
    writeFileSync(junk, 'not a certificate\n')
    expect(failure(config({ ...files(), certFile: junk }))).toBe(
      `TLS_CERT (tls.certFile): ${junk} is not a PEM file (no -----BEGIN line)`,
    )
    // A key given as the certificate: PEM, but no certificate in it.
    expect(failure(config({ ...files(), certFile: certs.keyFile }))).toBe(
      `TLS_CERT (tls.certFile): ${certs.keyFile} holds no PEM certificate`,
    )
    expect(failure(config({ ...files(), keyFile: certs.certFile }))).toMatch(
      /^TLS_KEY \(tls\.keyFile\): .*server\.crt is not a usable private key/,
    )
    const deviceKey = join(certs.dir, 'devices', 'dev-tls.key')
    expect(failure(config({ ...files(), keyFile: deviceKey }))).toMatch(
      /^TLS_KEY \(tls\.keyFile\) .*dev-tls\.key is not the private key of the certificate in TLS_CERT \(tls\.certFile\) .*server\.crt/,
    )
  })

  it('refuses settings that cannot work together, naming the variables', () => {
    expect(failure(config({ certFile: certs.certFile }))).toBe(
      'TLS_KEY (tls.keyFile) is not set, but TLS_CERT is',
    )
    expect(failure(config({ keyFile: certs.keyFile }))).toBe(
      'TLS_CERT (tls.certFile) is not set, but TLS_KEY is',
    )
    expect(failure(config({}, true))).toBe(
      'HTTP_TLS (http.tls) is true but TLS_CERT and TLS_KEY are not set',
    )
    expect(failure(config({ ...files(), clientCert: 'required' }))).toMatch(
      /^TLS_CA \(tls\.caFile\) is not set, but TLS_CLIENT_CERT \(tls\.clientCert\) is required/,
    )
    expect(failure(config({ clientCert: 'optional' }))).toMatch(
      /^TLS_CLIENT_CERT \(tls\.clientCert\) is optional but TLS_CERT and TLS_KEY are not set/,
    )
  })
})
