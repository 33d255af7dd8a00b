import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES, GatewayError } from '../../../src/errors.ts'
import { loadDeviceRegistry, parseDeviceRegistry } from '../../../src/rules/device-registry.ts'
import { createTempDir, type TempDir } from '../../helpers/temp-dir.ts'

const FILE = 'config/devices.yaml'
const SHIPPED = fileURLToPath(new URL('../../../config/devices.yaml', import.meta.url))

function errorsOf(text: string): string[] {
  const result = parseDeviceRegistry(text, FILE)
  if (result.ok) throw new Error('expected errors')
  return result.errors
}

describe('parseDeviceRegistry', () => {
  it('reads ids and tags; numbers and booleans become text', () => {
    const result = parseDeviceRegistry(
      'devices:\n  - id: a\n    tags: { site: greenhouse, floor: 2, indoor: true }\n  - id: b\n',
      FILE,
    )
    expect(result.ok).toBe(true)
    if (!result.ok) return
    expect(result.registry.ids()).toEqual(['a', 'b'])
    expect(result.registry.tagsOf('a')).toEqual({ site: 'greenhouse', floor: '2', indoor: 'true' })
    expect(result.registry.tagsOf('b')).toEqual({})
    expect(result.registry.tagsOf('c')).toBeUndefined()
    expect(Object.isFrozen(result.registry.tagsOf('a'))).toBe(true)
  })

  it.each([
    ['an empty file', ''],
    ['only comments', '# nothing yet\n'],
    ['an empty list', 'devices: []\n'],
    ['devices with every entry commented out', 'devices:\n#  - id: a\n'],
  ])('accepts %s as an empty registry', (_name, text) => {
    const result = parseDeviceRegistry(text, FILE)
    expect(result.ok && result.registry.ids()).toEqual([])
  })

  it('a registry with tags only has no credentials', () => {
    const result = parseDeviceRegistry('devices:\n  - id: a\n    tags: { site: x }\n', FILE)
    expect(result.ok && result.registry.hasCredentials()).toBe(false)
  })

  it.each([
    {
      text: 'devices:\n  - id: a\n    tag: { site: x }\n',
      want: `${FILE}: device "a": field "tag": unknown field; known: id, tags, secret, metrics`,
    },
    { text: 'devices:\n  - tags: {}\n', want: `${FILE}: devices[0]: field "id": is required` },
    {
      text: 'devices:\n  - id: "a b"\n',
      want: `${FILE}: devices[0]: field "id": must be a device id ([A-Za-z0-9_.-]{1,64}), got "a b"`,
    },
    {
      text: 'devices:\n  - id: a\n  - id: a\n',
      want: `${FILE}: device "a" (devices[1]): field "id": duplicate id, already used by devices[0]`,
    },
    {
      text: 'devices:\n  - id: a\n    tags: [site]\n',
      want: `${FILE}: device "a": field "tags": must be a mapping of tag name to value, got a list of 1`,
    },
    {
      text: 'devices:\n  - id: a\n    tags: { site: [x] }\n',
      want: `${FILE}: device "a": field "tags.site": must be a text of 1-128 characters, a number or a boolean, got a list of 1`,
    },
    {
      text: 'devices:\n  - id: a\n    tags: { "bad name": x }\n',
      want: `${FILE}: device "a": field "tags.bad name": tag name must be an identifier`,
    },
    { text: 'devices:\n  - a\n', want: `${FILE}: devices[0]: must be a mapping, got "a"` },
    { text: 'devices: { a: 1 }\n', want: `${FILE}: field "devices": must be a list of devices` },
    {
      text: 'device: []\n',
      want: `${FILE}: field "device": unknown top-level field; known: devices, apps`,
    },
    { text: 'devices:\n  - id: a\n    id: b\n', want: `${FILE}:3:5: Map keys must be unique` },
  ])('$want', ({ text, want }) => {
    const errors = errorsOf(text)
    expect(
      errors.some((e) => e.startsWith(want)),
      errors.join('\n'),
    ).toBe(true)
  })
})

describe('loadDeviceRegistry', () => {
  let dir: TempDir
  beforeAll(async () => {
    dir = await createTempDir('devices-')
  })
  afterAll(async () => {
    await dir.remove()
  })

  it('a missing file is an empty registry', async () => {
    const registry = await loadDeviceRegistry(path.join(dir.path, 'none.yaml'))
    expect(registry.ids()).toEqual([])
  })

  it('an invalid file throws GW_ERR_CONFIG naming file and field', async () => {
    const file = path.join(dir.path, 'bad.yaml')
    await writeFile(file, 'devices:\n  - id: a\n    tags: { site: {} }\n')
    const err = await loadDeviceRegistry(file).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    expect((err as GatewayError).code).toBe(ERROR_CODES.config)
    expect((err as GatewayError).message).toBe(
      `${file}: device "a": field "tags.site": must be a text of 1-128 characters, a number or a boolean, got a mapping`,
    )
  })

  it('the shipped file tags every simulator device', async () => {
    const registry = await loadDeviceRegistry(SHIPPED)
    expect(registry.ids()).toEqual([
      'greenhouse-sim-001',
      'greenhouse-sim-002',
      ...Array.from({ length: 8 }, (_, i) => `sim-00${i + 1}`),
    ])
    expect(registry.tagsOf('greenhouse-sim-001')).toEqual({ site: 'greenhouse', zone: 'north' })
    // The demo runs anonymously on loopback: the shipped file must stay without secrets.
    expect(registry.hasCredentials()).toBe(false)
  })
})
