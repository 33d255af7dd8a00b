/**
 * `alert-latency`: a steady background of 5,000 readings/s (QoS 1, open loop, the devices of the
 * other scenarios) and, in their own processes, probes that publish and wait for the answer:
 *
 * - gateway, alert probe: `temperature` 35 then 20 on `sensors/{probe}/temperature`, repeated;
 *   the shipped rule high-temperature (above 30, hysteresis 1) fires and resolves; latency is
 *   from the probe's publish to the transition arriving on `alerts/#` (one process, one clock).
 *   The path: ingest, SQLite group commit, PUBACK, bus, rule engine, alert publish.
 * - gateway, the same crossings notified: the gateway runs with a notifications file (one webhook
 *   channel, signed, `group: 0` so nothing waits for a window, a route for high-temperature
 *   firing and resolved) whose receiver runs in the alert probe's process; each crossing also
 *   waits for its webhook, timed from the same publish to the request's arrival. The path adds:
 *   the notifier's outbox write (SQLite, DATA_DIR/outbox.db), delivery, the signed POST.
 * - every target, echo probe: a reading on the probe's own topic, received back by a subscriber
 *   in the probe's process: the pass-through latency at that load. On the gateway it runs beside
 *   the alert probe.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newWebhookSecret } from '../../src/demo/webhook-receiver.ts'
import type { LoadOutcome } from '../lib/load-run.ts'
import { ratio } from '../lib/stats.ts'
import type { WebhookReceiverResult } from '../load/jobs.ts'
import type { TargetName } from '../targets/targets.ts'
import {
  type BenchContext,
  int,
  medianOf,
  num,
  perSec,
  pushTo,
  readingsPerCommit,
  rotate,
  roundsLatency,
  runOn,
  TargetSet,
} from './context.ts'

export const BACKGROUND_PER_SEC = 5_000
const QOS = 1 as const
/** Pause between probes: 10-20 ms, so probes are a sample of the load, not a load of their own. */
const PROBE_GAP_MS = 10
const PROBE_TIMEOUT_MS = 2_000

/**
 * The gateway's notifications file (README "Notifications"): a signed webhook to `url`, every
 * high-temperature transition at once (group 0), no repeats.
 */
function notificationsYaml(url: string, secret: string): string {
  return [
    'channels:',
    '  - name: bench-webhook',
    '    kind: webhook',
    `    url: ${JSON.stringify(url)}`,
    `    secret: ${JSON.stringify(secret)}`,
    `    timeout: ${PROBE_TIMEOUT_MS}ms`,
    'routes:',
    '  - name: bench-alerts',
    '    channels: [bench-webhook]',
    '    match: { rule: high-temperature }',
    '    on: [firing, resolved]',
    '    group: 0',
    '',
  ].join('\n')
}

export async function alertLatency(ctx: BenchContext): Promise<void> {
  // The receiver lives in the alert probe's worker (one clock with the probe), for every round.
  const receiverWorker = ctx.sideWorkers[0]
  const configDir = await mkdtemp(join(tmpdir(), 'bench-notifications-'))
  const notificationsFile = join(configDir, 'notifications.yaml')
  if (ctx.notifications) {
    const secret = newWebhookSecret()
    const { url } = await receiverWorker.startWebhookReceiver(secret)
    await writeFile(notificationsFile, notificationsYaml(url, secret), { mode: 0o600 })
  }
  const set = new TargetSet(
    ctx.targets,
    ctx.notifications ? { env: { NOTIFICATIONS_FILE: notificationsFile } } : {},
    ctx.progress,
  )
  const runs: Partial<Record<TargetName, LoadOutcome[]>> = {}
  const durationMs = Math.round(ctx.durationMs * 1.5)
  let received: WebhookReceiverResult | null = null
  try {
    await set.start()
    for (let r = 0; r < ctx.rounds; r++) {
      for (const name of rotate(ctx.targets, r)) {
        ctx.progress(`alert-latency, round ${r + 1}/${ctx.rounds}: ${name}`)
        const probe = (worker: (typeof ctx.sideWorkers)[number], mode: 'alert' | 'echo') => ({
          worker,
          mode,
          qos: QOS,
          gapMs: PROBE_GAP_MS,
          timeoutMs: PROBE_TIMEOUT_MS,
          ...(mode === 'alert' && ctx.notifications ? { webhook: true } : {}),
        })
        const outcome = await runOn(set, name, {
          warmupMs: ctx.warmupMs,
          durationMs,
          devices: {
            workers: ctx.generators,
            count: ctx.devices,
            qos: QOS,
            mode: 'open',
            ratePerSec: BACKGROUND_PER_SEC,
          },
          probes:
            name === 'gateway'
              ? [probe(receiverWorker, 'alert'), probe(ctx.sideWorkers[1], 'echo')]
              : [probe(receiverWorker, 'echo')],
        })
        if (outcome) pushTo(runs, name, outcome)
      }
    }
  } finally {
    await set.stop()
    if (ctx.notifications) received = await receiverWorker.stopWebhookReceiver().catch(() => null)
    await rm(configDir, { recursive: true, force: true })
  }

  const p99: Partial<Record<string, number | null>> = {}
  let gatewayWebhook: Record<string, number | null> = {}
  for (const name of ctx.targets) {
    const r = runs[name] ?? []
    const probesOf = (mode: 'alert' | 'echo') =>
      r.flatMap((o) => o.probes.filter((p) => p.mode === mode))
    const alert =
      name === 'gateway'
        ? roundsLatency(
            probesOf('alert').map((p) => p.latencyMs),
            'alert',
          )
        : {}
    // The same crossings as `alert`, to the webhook's arrival instead of the MQTT alert's.
    const webhook =
      name === 'gateway' && ctx.notifications
        ? roundsLatency(
            probesOf('alert').map((p) => p.webhookLatencyMs),
            'webhook',
          )
        : {}
    const echo = roundsLatency(
      probesOf('echo').map((p) => p.latencyMs),
      'passthrough',
    )
    p99[`${name}Alert`] = (alert.alertP99Ms as number | null | undefined) ?? null
    if (name === 'gateway') {
      gatewayWebhook = {
        alertP50Ms: (alert.alertP50Ms as number | null) ?? null,
        webhookP50Ms: (webhook.webhookP50Ms as number | null) ?? null,
        webhookP99Ms: (webhook.webhookP99Ms as number | null) ?? null,
      }
    }
    p99[`${name}Passthrough`] = echo.passthroughP99Ms as number | null
    ctx.emit({
      bench: 'alert-latency',
      target: name,
      qos: QOS,
      backgroundPerSec: BACKGROUND_PER_SEC,
      achievedPerSec: int(medianOf(r, (o) => perSec(o.devices?.sentInWindow, o))),
      ...(name === 'gateway'
        ? {
            ...alert,
            alertTimeouts: probesOf('alert').reduce((n, p) => n + p.timeouts, 0),
            notifications: ctx.notifications,
            ...(ctx.notifications
              ? {
                  ...webhook,
                  webhookTimeouts: probesOf('alert').reduce(
                    (n, p) => n + (p.webhookTimeouts ?? 0),
                    0,
                  ),
                  // Every request of the scenario at the receiver (all rounds): none refused.
                  webhooksVerified: received?.verified ?? null,
                  webhooksRefused: received?.refused ?? null,
                }
              : {}),
            readingsPerCommit: readingsPerCommit(r),
          }
        : {}),
      ...echo,
      passthroughTimeouts: probesOf('echo').reduce((n, p) => n + p.timeouts, 0),
      targetCpu: num(
        medianOf(r, (o) => o.targetCpu),
        2,
      ),
      disconnects: r.reduce((n, o) => n + (o.devices?.disconnects ?? 0), 0),
      rounds: r.length,
      durationSec: durationMs / 1_000,
      crashes: set.crashCount(name),
      failedRuns: set.failureCount(name),
    })
  }
  const alertP99 = p99.gatewayAlert ?? undefined
  const vsMosquitto = ratio(alertP99, p99.mosquittoPassthrough ?? undefined)
  ctx.emit({
    bench: 'alert-latency',
    summary: true,
    qos: QOS,
    backgroundPerSec: BACKGROUND_PER_SEC,
    alertP50Ms: gatewayWebhook.alertP50Ms ?? null,
    alertP99Ms: alertP99 ?? null,
    webhookP50Ms: gatewayWebhook.webhookP50Ms ?? null,
    webhookP99Ms: gatewayWebhook.webhookP99Ms ?? null,
    gatewayPassthroughP99Ms: p99.gatewayPassthrough ?? null,
    mosquittoPassthroughP99Ms: p99.mosquittoPassthrough ?? null,
    aedesPassthroughP99Ms: p99.aedesPassthrough ?? null,
    alertP99VsMosquitto: vsMosquitto,
    alertP99VsAedes: ratio(alertP99, p99.aedesPassthrough ?? undefined),
    goal: 'alert p99 <= 5 ms and <= 1.2x Mosquitto pass-through p99 at 5,000 readings/s',
    ...(Object.keys(set.crashes).length ? { crashes: set.crashes } : {}),
    ...(Object.keys(set.failures).length ? { failures: set.failures } : {}),
    met:
      alertP99 === undefined || vsMosquitto === null ? null : alertP99 <= 5 && vsMosquitto <= 1.2,
  })
}
