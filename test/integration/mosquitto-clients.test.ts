import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts'
import { runToEnd, startProcess } from '../helpers/processes.ts'

/** Interoperability with Eclipse Mosquitto's own command-line clients, as the README shows them. */
describe('mosquitto_pub / mosquitto_sub against the gateway', () => {
  let gw: TestGateway
  let port: string

  beforeAll(async () => {
    gw = await startTestGateway()
    port = String(new URL(gw.mqttUrl).port)
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  const pub = async (topic: string, message: string) => {
    const result = await runToEnd('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-q',
      '1',
      '-i',
      'dev-1',
      '-t',
      topic,
      '-m',
      message,
    ])
    expect(result, result.stderr).toMatchObject({ code: 0 })
  }
  /** Reads `count` retained or live messages, bounded to 10 s by mosquitto_sub itself. */
  const sub = async (topic: string, count: number) => {
    const result = await runToEnd('mosquitto_sub', [
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-t',
      topic,
      '-v',
      '-C',
      String(count),
      '-W',
      '10',
    ])
    expect(result.code, result.stderr).toBe(0)
    return result.stdout.trim().split('\n')
  }

  it('stores a reading published by mosquitto_pub and serves it over HTTP', async () => {
    await pub('sensors/dev-1/temperature', '21.5')
    const res = await fetch(`${gw.httpUrl}/api/readings?device=dev-1&metric=temperature`)
    const body = (await res.json()) as { readings: Array<{ value: number }> }
    expect(body.readings.map((r) => r.value)).toEqual([21.5])
  })

  it('delivers the retained firing and then resolved alert to mosquitto_sub', async () => {
    await pub('sensors/dev-1/temperature', '35')
    const [firing] = await sub('alerts/#', 1)
    expect(firing).toMatch(/^alerts\/major\/dev-1\/high-temperature \{/)
    expect(JSON.parse(firing?.slice(firing.indexOf('{')) ?? '{}')).toMatchObject({
      state: 'firing',
      value: 35,
      threshold: 30,
    })

    await pub('sensors/dev-1/temperature', '20')
    const [resolved] = await sub('alerts/#', 1)
    expect(JSON.parse(resolved?.slice(resolved.indexOf('{')) ?? '{}')).toMatchObject({
      state: 'resolved',
      value: 20,
    })
  })

  it('shows a malformed payload on gateway/deadletter/#', async () => {
    // -d prints the SUBACK, so the test publishes only once the subscription is in place;
    // stdbuf makes mosquitto_sub write each line as it happens rather than when it exits.
    const watcher = startProcess(
      'stdbuf',
      [
        '-oL',
        'mosquitto_sub',
        '-h',
        '127.0.0.1',
        '-p',
        port,
        '-t',
        'gateway/deadletter/#',
        '-v',
        '-C',
        '1',
        '-W',
        '10',
        '-d',
      ],
      {},
    )
    await vi.waitFor(() => expect(watcher.stdout()).toContain('SUBACK'))
    await pub('sensors/dev-1/temperature', 'hot!')
    expect(await watcher.exited).toBe(0)
    const line = watcher
      .stdout()
      .split('\n')
      .find((l) => l.startsWith('gateway/deadletter/dev-1 '))
    expect(JSON.parse(line?.slice(line.indexOf('{')) ?? '{}')).toMatchObject({
      topic: 'sensors/dev-1/temperature',
      reason: 'bad_value',
      payload: 'hot!',
    })
  })
})
