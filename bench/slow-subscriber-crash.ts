/**
 * Reproduction (not a benchmark): a subscriber on `sensors/#` that stops reading its socket while
 * devices publish, then goes away, kills an Aedes-based broker with
 * `RangeError: Maximum call stack size exceeded` (node_modules/mqemitter/mqemitter.js, `released`
 * -> `_do` -> fastparallel -> `released`, once per message queued behind Aedes' mqemitter
 * concurrency of 100; upstream: https://github.com/mcollina/mqemitter/pull/204).
 *
 *   node --import tsx bench/slow-subscriber-crash.ts [--target gateway|aedes|mosquitto]
 *        [--publish-sec 3] [--wait-drain]
 *
 * Without --wait-drain the subscriber's connection is closed by the client after publishing;
 * with it the client does nothing and the gateway's own DRAIN_TIMEOUT (10 s) disconnects it.
 * Prints one JSON line: {"repro":"slow-subscriber","target":..,"published":..,"crashed":..,
 * "error":..}. The target runs as in `npm run bench` (bench/targets/targets.ts), stopped by PID.
 */
import { parseArgs } from 'node:util'
import { connectAsync } from 'mqtt'
import { sleep } from './lib/stats.ts'
import { encodeSubscribe, rawConnect } from './load/mqtt-raw.ts'
import { HOST, startTarget, type TargetName } from './targets/targets.ts'

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'gateway' },
    'publish-sec': { type: 'string', default: '3' },
    'wait-drain': { type: 'boolean', default: false },
  },
})
const DEVICES = 20
const target = await startTarget(values.target as TargetName)
let published = 0
try {
  // Subscribes at QoS 1, then never reads again: the broker's writes to it stop draining.
  const subscriber = await rawConnect(HOST, target.port, 'slow-subscriber', 600, 10_000)
  subscriber.on('error', () => {})
  subscriber.write(encodeSubscribe(1, 'sensors/#', 1))
  await sleep(200)
  subscriber.pause()

  const devices = await Promise.all(
    Array.from({ length: DEVICES }, (_, i) =>
      connectAsync(target.url, { clientId: `repro-d${i}`, reconnectPeriod: 0 }),
    ),
  )
  for (const d of devices) d.on('error', () => {})
  const until = Date.now() + Number(values['publish-sec']) * 1_000
  const ts0 = Date.now() - 86_400_000
  while (Date.now() < until && target.alive()) {
    for (const [i, device] of devices.entries()) {
      for (let k = 0; k < 50; k++) {
        device.publish(
          `sensors/repro-d${i}/temperature`,
          `{"value":20.5,"ts":${ts0 + published}}`,
          {
            qos: 0,
          },
        )
        published++
      }
    }
    await sleep(1)
  }
  if (!values['wait-drain']) subscriber.destroy()
  // Long enough for DRAIN_TIMEOUT (10 s) to act when the subscriber is left alone.
  const deadline = Date.now() + (values['wait-drain'] ? 20_000 : 3_000)
  while (Date.now() < deadline && target.alive()) await sleep(100)
  const crashed = !target.alive()
  const error = crashed
    ? target
        .output()
        .split('\n')
        .find((l) => /Error/.test(l))
    : undefined
  process.stdout.write(
    `${JSON.stringify({ repro: 'slow-subscriber', target: target.name, published, waitDrain: values['wait-drain'], crashed, exit: target.exitStatus(), ...(error ? { error: error.trim() } : {}) })}\n`,
  )
  subscriber.destroy()
  await Promise.all(devices.map((d) => d.endAsync(true).catch(() => {})))
} finally {
  await target.stop()
}
