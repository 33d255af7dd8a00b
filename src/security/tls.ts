import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createSecureContext, type TlsOptions } from 'node:tls'
import type { GatewayConfig } from '../config/schema.ts'
import { ERROR_CODES, GatewayError } from '../errors.ts'

/** PEM contents of the TLS files, read once at start-up. */
export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  /** The CA that signs device client certificates; present when client certificates are on. */
  ca?: Buffer
}

export interface GatewayTls {
  /** Options of the mqtts listener (server certificate, client certificates as configured). */
  mqtts: TlsOptions
  /** Options of Fastify's `https` when HTTP_TLS is on (server certificate only). */
  https: { key: Buffer; cert: Buffer } | null
}

/** Where each file comes from, so every message names the variable to change. */
const VARIABLES = {
  certFile: 'TLS_CERT (tls.certFile)',
  keyFile: 'TLS_KEY (tls.keyFile)',
  caFile: 'TLS_CA (tls.caFile)',
  clientCert: 'TLS_CLIENT_CERT (tls.clientCert)',
  httpTls: 'HTTP_TLS (http.tls)',
} as const

/**
 * Reads and checks the TLS files named by the configuration (DESIGN §8). Returns null when TLS is
 * not configured (no TLS_CERT and TLS_KEY, HTTP_TLS off). Every problem is a GatewayError naming
 * the variable and the file: a missing or unreadable file, one that is not PEM, a key that does
 * not belong to the certificate, client certificates asked for without a CA, HTTPS without a
 * certificate.
 */
export function loadGatewayTls(
  config: Pick<GatewayConfig, 'tls' | 'http'>,
  readFile: (path: string) => Buffer = readFileSync,
): GatewayTls | null {
  const { certFile, keyFile, caFile, clientCert } = config.tls
  if (certFile === '' && keyFile === '') {
    if (config.http.tls) {
      throw configError(`${VARIABLES.httpTls} is true but TLS_CERT and TLS_KEY are not set`)
    }
    if (clientCert !== 'off') {
      throw configError(
        `${VARIABLES.clientCert} is ${clientCert} but TLS_CERT and TLS_KEY are not set: client certificates need the mqtts listener`,
      )
    }
    return null
  }
  if (certFile === '') throw configError(`${VARIABLES.certFile} is not set, but TLS_KEY is`)
  if (keyFile === '') throw configError(`${VARIABLES.keyFile} is not set, but TLS_CERT is`)
  if (clientCert !== 'off' && caFile === '') {
    throw configError(
      `${VARIABLES.caFile} is not set, but ${VARIABLES.clientCert} is ${clientCert}: client certificates are verified against this CA`,
    )
  }

  const cert = readPem(readFile, VARIABLES.certFile, certFile)
  checkCertificates(cert, VARIABLES.certFile, certFile)
  const key = readPem(readFile, VARIABLES.keyFile, keyFile)
  checkKey(key, keyFile)
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    throw configError(
      `${VARIABLES.keyFile} ${keyFile} is not the private key of the certificate in ${VARIABLES.certFile} ${certFile}: ${(err as Error).message}`,
      err,
    )
  }
  let ca: Buffer | undefined
  if (caFile !== '') {
    ca = readPem(readFile, VARIABLES.caFile, caFile)
    checkCertificates(ca, VARIABLES.caFile, caFile)
  }

  const requestCert = clientCert !== 'off'
  const mqtts: TlsOptions = {
    cert,
    key,
    minVersion: 'TLSv1.2',
    // optional: a certificate is asked for, and one that does not verify gives no identity (the
    // socket's `authorized` is false) but the connection goes on to CONNECT and its credentials.
    // required: no certificate signed by TLS_CA, no handshake.
    requestCert,
    rejectUnauthorized: clientCert === 'required',
    ...(requestCert && ca ? { ca } : {}),
  }
  return { mqtts, https: config.http.tls ? { cert, key } : null }
}

function readPem(readFile: (path: string) => Buffer, variable: string, file: string): Buffer {
  let bytes: Buffer
  try {
    bytes = readFile(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message
    throw configError(`${variable}: cannot read ${file}: ${why}`, err)
  }
  if (!bytes.includes('-----BEGIN ')) {
    throw configError(`${variable}: ${file} is not a PEM file (no -----BEGIN line)`)
  }
  return bytes
}

/** Every certificate in the file must parse; a chain file holds several. */
function checkCertificates(pem: Buffer, variable: string, file: string): void {
  const blocks = pem
    .toString('latin1')
    .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
  if (!blocks) throw configError(`${variable}: ${file} holds no PEM certificate`)
  for (const block of blocks) {
    try {
      new X509Certificate(block)
    } catch (err) {
      throw configError(
        `${variable}: ${file} holds a certificate that cannot be read: ${(err as Error).message}`,
        err,
      )
    }
  }
}

function checkKey(pem: Buffer, file: string): void {
  try {
    createPrivateKey(pem)
  } catch (err) {
    const message = (err as Error).message
    const hint = /passphrase/i.test(message)
      ? 'the key is encrypted; give the gateway an unencrypted key (openssl pkey -in KEY -out KEY.plain)'
      : message
    throw configError(`${VARIABLES.keyFile}: ${file} is not a usable private key: ${hint}`, err)
  }
}

function configError(message: string, cause?: unknown): GatewayError {
  return new GatewayError(ERROR_CODES.config, message, cause === undefined ? {} : { cause })
}
