import { readFile, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { loadDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { verifySecret } from '../../../src/security/credentials.ts'
import { runToEnd } from '../../helpers/processes.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const SCRIPT = path.resolve('scripts/device-add.ts')

function run(kind: 'device' | 'app', ...args: string[]) {
  return runToEnd('node', ['--import', 'tsx', SCRIPT, kind, ...args], {}, 30_000)
}

/** The secret printed on the "MQTT password:" line. */
function printedSecret(stdout: string): string {
  const secret = /MQTT password: (\S+)/.exec(stdout)?.[1]
  if (secret === undefined) throw new Error(`no secret in: ${stdout}`)
  return secret
}

describe('npm run device:add / app:add', () => {
  let dir: TempDir
  let file: string
  beforeEach(async () => {
    dir = await createTempDir('device-add-')
    file = path.join(dir.path, 'devices.yaml')
  })
  afterEach(async () => {
    await dir.remove()
  })

  it('adds a device with tags and metrics: the secret is printed once, only its hash stored', async () => {
    await writeFile(file, '# my fleet\ndevices:\n  - id: old\n    tags: { site: x }\n')
    const result = await run(
      'device',
      'dev-7',
      '--tags',
      'site=lab,floor=2',
      '--metrics',
      'temperature',
      '--file',
      file,
    )
    expect(result.code, result.stderr).toBe(0)
    const secret = printedSecret(result.stdout)
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(result.stdout.split(secret)).toHaveLength(2) // exactly once
    expect(result.stdout).toContain('MQTT username: dev-7')

    const text = await readFile(file, 'utf8')
    expect(text).not.toContain(secret)
    expect(text.startsWith('# my fleet\n')).toBe(true) // comments and order kept
    const registry = await loadDeviceRegistry(file)
    expect(registry.ids()).toEqual(['old', 'dev-7'])
    const entry = registry.device('dev-7')
    expect(entry?.tags).toEqual({ site: 'lab', floor: '2' })
    expect(entry?.metrics).toEqual(['temperature'])
    expect(entry?.secret?.text).toMatch(/^scrypt\$16384\$8\$1\$/)
    expect(entry?.secret && (await verifySecret(secret, entry.secret))).toBe(true)
    expect(registry.hasCredentials()).toBe(true)
  })

  it('refuses an id that already has a secret; --rotate gives it a new one', async () => {
    expect((await run('device', 'dev-7', '--file', file)).code).toBe(0)
    const before = await readFile(file, 'utf8')
    const again = await run('device', 'dev-7', '--file', file)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('device "dev-7" already has a secret')
    expect(again.stderr).toContain('--rotate replaces it')
    expect(again.stdout).not.toContain('MQTT password')
    expect(await readFile(file, 'utf8')).toBe(before)

    const rotated = await run('device', 'dev-7', '--rotate', '--file', file)
    expect(rotated.code, rotated.stderr).toBe(0)
    const secret = printedSecret(rotated.stdout)
    const entry = (await loadDeviceRegistry(file)).device('dev-7')
    expect(entry?.secret && (await verifySecret(secret, entry.secret))).toBe(true)
  })

  it('gives a device listed with tags only a secret, keeping its tags (the shipped fleet)', async () => {
    await writeFile(file, 'devices:\n  - id: sim-001\n    tags: { site: office, floor: 1 }\n')
    const result = await run('device', 'sim-001', '--file', file)
    expect(result.code, result.stderr).toBe(0)
    const entry = (await loadDeviceRegistry(file)).device('sim-001')
    expect(entry?.tags).toEqual({ site: 'office', floor: '1' })
    expect(entry?.secret).toBeDefined()
  })

  it('creates the file when it is missing, readable by its owner only', async () => {
    const result = await run('device', 'dev-1', '--file', file)
    expect(result.code, result.stderr).toBe(0)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('adds an app with roles and prints its HTTP token once', async () => {
    const result = await run(
      'app',
      'dashboard',
      '--roles',
      'read-alerts,read-readings',
      '--file',
      file,
    )
    expect(result.code, result.stderr).toBe(0)
    const secret = printedSecret(result.stdout)
    expect(result.stdout).toContain(`Authorization: Bearer dashboard.${secret}`)
    const registry = await loadDeviceRegistry(file)
    const app = registry.app('dashboard')
    expect(app?.roles).toEqual(['read-alerts', 'read-readings'])
    expect(app && (await verifySecret(secret, app.secret))).toBe(true)
    expect(await readFile(file, 'utf8')).not.toContain(secret)
  })

  it.each([
    [['app', 'ops'], 'app "ops" needs --roles'],
    [['app', 'ops', '--roles', 'root'], '--roles: "root" is not a role'],
    [['device', 'dev 1'], '"dev 1" is not a valid id'],
    [['device'], 'name an id'],
    [['device', 'd', '--roles', 'admin'], '--roles is for apps'],
    [['device', 'd', '--tags', 'site'], '--tags: expected name=value pairs'],
    [['device', 'd', '--bogus'], "Unknown option '--bogus'"],
  ])('refuses %j: %s', async (args, message) => {
    const [kind, ...rest] = args as ['device' | 'app', ...string[]]
    const result = await run(kind, ...rest, '--file', file)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
  })

  it('refuses an id used by the other kind: one namespace for usernames', async () => {
    expect((await run('app', 'ops', '--roles', 'admin', '--file', file)).code).toBe(0)
    const result = await run('device', 'ops', '--file', file)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('"ops" is already an app')
  })

  it('provisions a simulator fleet, writing the secrets to a private file', async () => {
    const fleet = path.join(dir.path, 'fleet.yaml')
    await writeFile(fleet, 'devices: 3\nprefix: t\ngroups:\n  - name: gh\n    count: 1\n')
    const secretsFile = path.join(dir.path, 'secrets.yaml')
    const result = await run(
      'device',
      '--fleet',
      fleet,
      '--secrets-out',
      secretsFile,
      '--file',
      file,
    )
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).not.toContain('MQTT password')
    const secrets = parseYaml(await readFile(secretsFile, 'utf8')) as Record<string, string>
    expect(Object.keys(secrets).sort()).toEqual(['gh-t-001', 't-001', 't-002'])
    expect((await stat(secretsFile)).mode & 0o777).toBe(0o600)
    const registry = await loadDeviceRegistry(file)
    for (const [id, secret] of Object.entries(secrets)) {
      const entry = registry.device(id)
      expect(entry?.secret && (await verifySecret(secret, entry.secret))).toBe(true)
      expect(result.stdout).not.toContain(secret)
    }
  })

  it('runs as the npm script named in package.json', async () => {
    const result = await runToEnd(
      'npm',
      ['run', '--silent', 'app:add', '--', 'grafana', '--roles', 'read-readings', '--file', file],
      {},
      30_000,
    )
    expect(result.code, result.stderr).toBe(0)
    expect((await loadDeviceRegistry(file)).app('grafana')?.roles).toEqual(['read-readings'])
  })
})
