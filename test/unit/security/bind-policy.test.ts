import { describe, expect, it } from 'vitest'
import { checkBindPolicy, FIX_HINT, isLoopbackHost } from '../../../src/security/bind-policy.ts'

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['127.255.255.254', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.10', false],
    ['10.0.0.1', false],
    ['128.0.0.1', false],
    ['::2', false],
    ['::ffff:10.0.0.1', false],
    ['gateway.example.com', false],
    ['127.0.0.1.example.com', false],
    ['', false],
  ])('%s: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback)
  })
})

describe('checkBindPolicy', () => {
  const listeners = (mqtt: string, http: string) => [
    { variable: 'MQTT_HOST', host: mqtt },
    { variable: 'HTTP_HOST', host: http },
  ]

  it.each([
    // mqtt, http, credentials, allowAnonymousPublic -> mode or refusal naming the variables
    ['127.0.0.1', '127.0.0.1', false, false, 'anonymous-loopback'],
    ['localhost', '::1', false, false, 'anonymous-loopback'],
    ['127.0.0.1', '127.0.0.1', true, false, 'authentication-required'],
    ['0.0.0.0', '0.0.0.0', true, false, 'authentication-required'],
    ['0.0.0.0', '127.0.0.1', false, true, 'anonymous-public'],
    ['0.0.0.0', '127.0.0.1', false, false, 'refused: MQTT_HOST=0.0.0.0'],
    ['127.0.0.1', '::', false, false, 'refused: HTTP_HOST=::'],
    ['0.0.0.0', '192.168.1.2', false, false, 'refused: MQTT_HOST=0.0.0.0, HTTP_HOST=192.168.1.2'],
  ])(
    'MQTT %s, HTTP %s, credentials %s, ALLOW_ANONYMOUS_PUBLIC %s: %s',
    (mqtt, http, hasCredentials, allowAnonymousPublic, want) => {
      const decision = checkBindPolicy({
        listeners: listeners(mqtt, http),
        hasCredentials,
        allowAnonymousPublic,
      })
      if (want.startsWith('refused: ')) {
        expect(decision.ok).toBe(false)
        if (decision.ok) return
        expect(decision.message.startsWith(`${want.slice('refused: '.length)}: `)).toBe(true)
        expect(decision.message).toContain(FIX_HINT)
        expect(FIX_HINT).toBe(
          'configure device credentials (npm run device:add) or set ALLOW_ANONYMOUS_PUBLIC=true',
        )
      } else {
        expect(decision.ok && decision.mode).toBe(want)
      }
    },
  )

  it('says which mode is active in words for the start-up log', () => {
    const say = (hasCredentials: boolean, host = '127.0.0.1', allowAnonymousPublic = false) => {
      const decision = checkBindPolicy({
        listeners: listeners(host, '127.0.0.1'),
        hasCredentials,
        allowAnonymousPublic,
      })
      return decision.message
    }
    expect(say(false)).toBe('anonymous clients allowed: loopback only')
    expect(say(true)).toBe('authentication required')
    expect(say(false, '0.0.0.0', true)).toMatch(
      /^anonymous clients allowed on a non-loopback address \(MQTT_HOST=0\.0\.0\.0\) because ALLOW_ANONYMOUS_PUBLIC=true/,
    )
  })

  it('holds extra listeners (TLS) to the same policy', () => {
    const decision = checkBindPolicy({
      listeners: [
        ...listeners('127.0.0.1', '127.0.0.1'),
        { variable: 'MQTTS_HOST', host: '0.0.0.0' },
      ],
      hasCredentials: false,
      allowAnonymousPublic: false,
    })
    expect(decision.ok).toBe(false)
    expect(!decision.ok && decision.message).toMatch(/^MQTTS_HOST=0\.0\.0\.0: /)
  })
})
