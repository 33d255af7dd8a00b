import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { runToEnd } from './processes.ts'
import { createTempDir } from './temp-dir.ts'

export interface TestCerts {
  dir: string
  /** Paths, as TLS_CA, TLS_CERT and TLS_KEY take them. */
  caFile: string
  certFile: string
  keyFile: string
  /** PEM contents, as clients take them. */
  ca: Buffer
  /** A device's client certificate and key (CN = the id), signed by the CA. */
  device(id: string): { cert: Buffer; key: Buffer }
  /** A client certificate for the first device id, signed by another CA. */
  stranger: { cert: Buffer; key: Buffer }
  remove(): Promise<void>
}

/** Runs scripts/make-certs.sh into a fresh temp dir, as a user would (bounded time). */
export async function makeTestCerts(deviceIds: string[]): Promise<TestCerts> {
  const dir = await createTempDir('certs-')
  const run = await runToEnd('bash', ['scripts/make-certs.sh', dir.path, ...deviceIds], {}, 30_000)
  if (run.code !== 0) {
    await dir.remove()
    throw new Error(`make-certs.sh exited ${run.code}: ${run.stderr}`)
  }
  const read = (...parts: string[]) => readFileSync(join(dir.path, ...parts))
  const first = deviceIds[0] ?? 'sim-001'
  return {
    dir: dir.path,
    caFile: join(dir.path, 'ca.crt'),
    certFile: join(dir.path, 'server.crt'),
    keyFile: join(dir.path, 'server.key'),
    ca: read('ca.crt'),
    device: (id) => ({ cert: read('devices', `${id}.crt`), key: read('devices', `${id}.key`) }),
    stranger: {
      cert: read('devices', `other-ca-${first}.crt`),
      key: read('devices', `other-ca-${first}.key`),
    },
    remove: () => dir.remove(),
  }
}
