import * as crypto from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createSecretVerifier,
  DEFAULT_SCRYPT,
  generateSecret,
  hashSecret,
  parseSecretHash,
  type SecretHash,
  verifySecret,
} from '../../../src/security/credentials.ts'

/** Cheap parameters for tests that hash a lot; the format and the code path are the same. */
const FAST = { N: 1024, r: 8, p: 1 }

function parsed(text: string): SecretHash {
  const result = parseSecretHash(text)
  if (!result.ok) throw new Error(result.message)
  return result.hash
}

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>()
  return {
    ...actual,
    scrypt: vi.fn(actual.scrypt),
    timingSafeEqual: vi.fn(actual.timingSafeEqual),
  }
})

describe('secrets', () => {
  afterEach(() => vi.mocked(crypto.timingSafeEqual).mockClear())

  it('are 32 random bytes in base64url: 43 characters, no dot, never the same twice', () => {
    const a = generateSecret()
    const b = generateSecret()
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(Buffer.from(a, 'base64url')).toHaveLength(32)
    expect(a).not.toBe(b)
  })

  it('are stored as scrypt$N$r$p$salt$hash with the default cost, a fresh salt each time', async () => {
    const secret = generateSecret()
    const one = await hashSecret(secret)
    const two = await hashSecret(secret)
    expect(one).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/)
    expect(one).not.toBe(two)
    expect(one).not.toContain(secret)
    expect(parsed(one)).toMatchObject({ ...DEFAULT_SCRYPT })
  })

  it('verify the right secret and refuse any other, comparing with timingSafeEqual', async () => {
    const secret = generateSecret()
    const hash = parsed(await hashSecret(secret, FAST))
    expect(await verifySecret(secret, hash)).toBe(true)
    expect(await verifySecret(`${secret}x`, hash)).toBe(false)
    expect(await verifySecret('', hash)).toBe(false)
    expect(await verifySecret(Buffer.from(secret), hash)).toBe(true)
    // Every answer, right or wrong, came from the constant-time comparison of derived keys.
    expect(vi.mocked(crypto.timingSafeEqual)).toHaveBeenCalledTimes(4)
    for (const [a, b] of vi.mocked(crypto.timingSafeEqual).mock.calls) {
      expect((a as Buffer).length).toBe((b as Buffer).length)
    }
  })

  it('keep working with the parameters written in the string, not the current defaults', async () => {
    const secret = 'chosen-by-an-older-version'
    const hash = await hashSecret(secret, { N: 2048, r: 4, p: 2 })
    expect(hash.startsWith('scrypt$2048$4$2$')).toBe(true)
    expect(await verifySecret(secret, parsed(hash))).toBe(true)
  })

  it.each([
    ['a plain secret', 'hunter2'],
    ['another algorithm', '$argon2id$v=19$m=65536,t=3,p=4$abc$def'],
    ['too few fields', 'scrypt$16384$8$1$c2FsdHNhbHQ'],
    ['N not a power of two', 'scrypt$1000$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'],
    ['N absurdly large', 'scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'],
    ['r zero', 'scrypt$16384$0$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'],
    ['salt not base64url', 'scrypt$16384$8$1$c2Fsd+Nh/HRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'],
    ['a short hash', 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0$aGFzaA'],
    ['not a string', 12345],
  ])('refuse %s as a stored hash, without repeating it', (_name, text) => {
    const result = parseSecretHash(text)
    expect(result.ok).toBe(false)
    if (!result.ok && typeof text === 'string') expect(result.message).not.toContain(text)
  })
})

describe('createSecretVerifier', () => {
  it('checks with scrypt once, then remembers what was proven as a keyed digest', async () => {
    const secret = generateSecret()
    const hash = parsed(await hashSecret(secret, FAST))
    const verifier = createSecretVerifier()
    const scrypt = vi.mocked(crypto.scrypt)
    scrypt.mockClear()
    expect(await verifier.verify('dev-1', secret, hash)).toBe(true)
    expect(scrypt).toHaveBeenCalledTimes(1)
    expect(await verifier.verify('dev-1', secret, hash)).toBe(true)
    expect(scrypt).toHaveBeenCalledTimes(1)
    // A wrong secret is never taken from the cache: it costs a full check, and fails.
    expect(await verifier.verify('dev-1', 'wrong', hash)).toBe(false)
    expect(scrypt).toHaveBeenCalledTimes(2)
    // The proven secret still works after a wrong one.
    expect(await verifier.verify('dev-1', secret, hash)).toBe(true)
    expect(scrypt).toHaveBeenCalledTimes(2)
    // Another principal is checked on its own, whatever the first one proved.
    expect(await verifier.verify('dev-2', secret, hash)).toBe(true)
    expect(scrypt).toHaveBeenCalledTimes(3)
  })

  it('spends a scrypt run on an unknown principal too, and says no', async () => {
    const verifier = createSecretVerifier()
    vi.mocked(crypto.scrypt).mockClear()
    vi.mocked(crypto.timingSafeEqual).mockClear()
    expect(await verifier.verify('nobody', generateSecret(), undefined)).toBe(false)
    // The dummy check went through the same derivation, at the default cost, and comparison.
    expect(vi.mocked(crypto.scrypt)).toHaveBeenCalledTimes(1)
    expect(vi.mocked(crypto.scrypt).mock.calls[0]?.[3]).toMatchObject(DEFAULT_SCRYPT)
    expect(vi.mocked(crypto.timingSafeEqual)).toHaveBeenCalledTimes(1)
  })
})
