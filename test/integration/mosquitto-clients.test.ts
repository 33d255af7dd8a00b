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

/** Issue 14 point 4 with Mosquitto's client: over PUBLISH_RATE a QoS 1 PUBACK still means stored. */
describe('mosquitto_pub faster than PUBLISH_RATE', () => {
  let gw: TestGateway

  beforeAll(async () => {
    gw = await startTestGateway({ PUBLISH_RATE: '50', PUBLISH_BURST: '20' })
  })
  afterAll(async () => {
    await gw.cleanup()
  })

  it('is paced, not dropped: every line it sends at QoS 1 is acknowledged and stored', async () => {
    const lines = 200
    // Within the API's default range (the last hour).
    const t0 = Date.now() - 600_000
    // One JSON reading a line, each with its own ts (a reading's identity), sent as fast as
    // mosquitto_pub can (-l: one message per line of stdin; it waits for every PUBACK to exit 0).
    // %.0f: mawk's %d stops at 2^31.
    const script =
      `awk 'BEGIN { for (i = 0; i < ${lines}; i++) printf "{\\"value\\":%d,\\"ts\\":%.0f}\\n", i, ${t0} + i }' | ` +
      `mosquitto_pub -h 127.0.0.1 -p ${new URL(gw.mqttUrl).port} -q 1 -i dev-lines -t sensors/dev-lines/temperature -l`
    const result = await runToEnd('sh', ['-c', script], {}, 30_000)
    expect(result, result.stderr).toMatchObject({ code: 0 })

    const res = await fetch(
      `${gw.httpUrl}/api/readings?device=dev-lines&metric=temperature&limit=1000&order=asc`,
    )
    const body = (await res.json()) as { readings: Array<{ value: number }> }
    expect(body.readings.map((r) => r.value)).toEqual(Array.from({ length: lines }, (_, i) => i))
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    // 200 publishes against a burst of 20: the rest waited for their tokens.
    const paced = /gateway_publishes_rate_limited_total\{qos="1"\} (\d+)/.exec(metrics)?.[1]
    expect(Number(paced)).toBeGreaterThanOrEqual(lines - 20 - 5)
    expect(metrics).not.toMatch(/gateway_publishes_rejected_total\{reason="rate_limited"\} [1-9]/)
    expect(gw.gateway.stats().publishesRejected).toBe(0)
  })
})
