import { describe, expect, it } from 'vitest'
import { captureLogs } from '../../helpers/log-capture.ts'

describe('log redaction', () => {
  it('censors fields that may hold a secret, wherever a log call puts them', () => {
    const { log, lines } = captureLogs('info')
    log.info(
      {
        password: 'p-top',
        secret: 's-top',
        authorization: 'Bearer a.b',
        packet: { password: 'p-packet', username: 'dev-1' },
        req: { headers: { authorization: 'Bearer app.s-req', host: 'x' } },
        client: { secret: 's-nested' },
      },
      'something happened',
    )
    const [line] = lines
    expect(line).toMatchObject({
      password: '[redacted]',
      secret: '[redacted]',
      authorization: '[redacted]',
      packet: { password: '[redacted]', username: 'dev-1' },
      req: { headers: { authorization: '[redacted]', host: 'x' } },
      client: { secret: '[redacted]' },
    })
    expect(JSON.stringify(lines)).not.toMatch(/p-top|s-top|a\.b|p-packet|s-req|s-nested/)
  })
})
