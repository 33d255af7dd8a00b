import { describe, expect, it } from 'vitest'
import { parseDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { hashSecret } from '../../../src/security/credentials.ts'

const FILE = 'devices.yaml'
const HASH = await hashSecret('s3cret-for-tests', { N: 1024, r: 8, p: 1 })

function errorsOf(text: string): string[] {
  const result = parseDeviceRegistry(text, FILE)
  if (result.ok) throw new Error('expected errors')
  return result.errors
}

describe('the registry of devices and apps', () => {
  it('reads device secrets and metric allow-lists, and apps with roles', () => {
    const result = parseDeviceRegistry(
      [
        'devices:',
        '  - id: dev-1',
        `    secret: ${HASH}`,
        '    metrics: [temperature, humidity]',
        '  - id: dev-2',
        '    tags: { site: lab }',
        'apps:',
        '  - id: dashboard',
        `    secret: ${HASH}`,
        '    roles: [read-alerts, read-readings]',
      ].join('\n'),
      FILE,
    )
    expect(result.ok).toBe(true)
    if (!result.ok) return
    const { registry } = result
    expect(registry.hasCredentials()).toBe(true)
    expect(registry.ids()).toEqual(['dev-1', 'dev-2'])
    expect(registry.appIds()).toEqual(['dashboard'])
    expect(registry.device('dev-1')?.secret?.text).toBe(HASH)
    expect(registry.device('dev-1')?.metrics).toEqual(['temperature', 'humidity'])
    expect(registry.device('dev-2')?.secret).toBeUndefined()
    expect(registry.device('dev-2')?.metrics).toBeUndefined()
    expect(registry.app('dashboard')?.roles).toEqual(['read-alerts', 'read-readings'])
    expect(registry.app('dev-1')).toBeUndefined()
    expect(registry.device('dashboard')).toBeUndefined()
  })

  it('an app alone is a credential too: authentication is then required', () => {
    const result = parseDeviceRegistry(
      `apps:\n  - id: ops\n    secret: ${HASH}\n    roles: [admin]\n`,
      FILE,
    )
    expect(result.ok && result.registry.hasCredentials()).toBe(true)
  })

  it.each([
    {
      text: 'devices:\n  - id: a\n    secret: hunter2\n',
      want: `${FILE}: device "a": field "secret": must be a hash written by npm run device:add or app:add`,
    },
    {
      text: 'devices:\n  - id: a\n    roles: [admin]\n',
      want: `${FILE}: device "a": field "roles": devices have no roles`,
    },
    {
      text: 'devices:\n  - id: a\n    metrics: []\n',
      want: `${FILE}: device "a": field "metrics": must be a non-empty list of metric names`,
    },
    {
      text: 'devices:\n  - id: a\n    metrics: ["bad metric"]\n',
      want: `${FILE}: device "a": field "metrics": must hold metric names`,
    },
    {
      text: `apps:\n  - id: ops\n    roles: [admin]\n`,
      want: `${FILE}: app "ops": field "secret": is required (npm run app:add writes it)`,
    },
    {
      text: `apps:\n  - id: ops\n    secret: ${HASH}\n`,
      want: `${FILE}: app "ops": field "roles": is required: a list of read-alerts, write-alerts, read-readings, admin`,
    },
    {
      text: `apps:\n  - id: ops\n    secret: ${HASH}\n    roles: [superuser]\n`,
      want: `${FILE}: app "ops": field "roles": must be one of read-alerts, write-alerts, read-readings, admin, got "superuser"`,
    },
    {
      text: `apps:\n  - id: ops\n    secret: ${HASH}\n    roles: [admin]\n    tags: { a: b }\n`,
      want: `${FILE}: app "ops": field "tags": unknown field; known: id, secret, roles`,
    },
    {
      text: `devices:\n  - id: x\napps:\n  - id: x\n    secret: ${HASH}\n    roles: [admin]\n`,
      want: `${FILE}: app "x" (apps[0]): field "id": duplicate id, already used by devices[0]`,
    },
    { text: 'apps: {}\n', want: `${FILE}: field "apps": must be a list of apps` },
  ])('$want', ({ text, want }) => {
    const errors = errorsOf(text)
    expect(
      errors.some((e) => e.startsWith(want)),
      errors.join('\n'),
    ).toBe(true)
  })

  it('never repeats a plain secret found in the file', () => {
    const errors = errorsOf('devices:\n  - id: a\n    secret: correct-horse-battery-staple\n')
    expect(errors.join('\n')).not.toContain('correct-horse')
  })
})
