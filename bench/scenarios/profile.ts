/**
 * `--profile`: the gateway under the ingest QoS 1 load once more, this time started with
 * `node --cpu-prof --cpu-prof-dir=DIR`, outside the measured rounds (profiling slows it down).
 * The profile is written when the gateway exits (SIGTERM); bench/top-functions.ts summarises it.
 * Worker threads inherit --cpu-prof: the SQLite writer thread's profile (the one that ran
 * src/store/sqlite/writes.ts) is summarised beside the main thread's.
 */
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { runLoad } from '../lib/load-run.ts'
import { wallNow } from '../lib/stats.ts'
import { startGateway } from '../targets/targets.ts'
import { formatSummary, readProfile, summarise } from '../top-functions.ts'
import { type BenchContext, int } from './context.ts'

export async function profile(ctx: BenchContext, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  const before = new Set(await readdir(dir))
  ctx.progress(`profile: gateway with --cpu-prof under ingest QoS 1, profile in ${dir}`)
  const gateway = await startGateway({ cpuProfileDir: dir })
  let outcome: Awaited<ReturnType<typeof runLoad>>
  try {
    outcome = await runLoad({
      target: gateway,
      warmupMs: ctx.warmupMs,
      durationMs: ctx.durationMs * 2,
      devices: {
        workers: ctx.generators,
        count: ctx.devices,
        qos: 1,
        mode: 'closed',
        window: Math.max(1, Math.round(ctx.inFlight / ctx.devices)),
      },
    })
  } finally {
    await gateway.stop()
  }
  // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader
  // runs in a worker thread and writes a profile of its own).
  const mine = (await readdir(dir)).filter(
    (f) => f.endsWith('.cpuprofile') && !before.has(f) && f.includes(`.${gateway.pid}.0.`),
  )
  if (mine.length === 0) {
    throw new Error(`the profiled gateway (PID ${gateway.pid}) wrote no .cpuprofile into ${dir}`)
  }
  const file = join(dir, mine[0] as string)
  // The load's window on the profile's clock (CLOCK_MONOTONIC, as process.hrtime): start-up
  // (tsx compiling, modules loading) and shutdown are left out.
  const monoOffsetUs = Number(process.hrtime.bigint() / 1_000n) - wallNow() * 1_000
  const window = {
    fromUs: outcome.timing.measureFrom * 1_000 + monoOffsetUs,
    toUs: outcome.timing.measureTo * 1_000 + monoOffsetUs,
  }
  const profileData = readProfile(file)
  const inProfile = window.fromUs >= profileData.startTime && window.toUs <= profileData.endTime
  const summary = await summarise(profileData, 20, inProfile ? window : undefined)
  ctx.progress(`profile summary (${file}):\n${formatSummary(summary)}`)
  const writerFile = (await readdir(dir))
    .filter((f) => f.endsWith('.cpuprofile') && !before.has(f) && f.includes(`.${gateway.pid}.`))
    .map((f) => join(dir, f))
    .filter((f) => f !== file)
    .find((f) =>
      readProfile(f).nodes.some((n) => n.callFrame.url.includes('src/store/sqlite/writes.ts')),
    )
  const writer = writerFile
    ? await summarise(readProfile(writerFile), 10, inProfile ? window : undefined, 'cjs')
    : undefined
  if (writer) ctx.progress(`writer thread (${writerFile}):\n${formatSummary(writer)}`)
  ctx.emit({
    bench: 'profile',
    scenario: 'ingest',
    qos: 1,
    file,
    storedPerSec: int((outcome.storedInWindow ?? Number.NaN) / outcome.windowSec),
    storedEqualsAcked: outcome.storedRows === outcome.devices?.acked,
    samples: inProfile ? 'the measured window only' : 'the whole process (window not found)',
    busyMs: summary.busyMs,
    idleMs: summary.idleMs,
    top: summary.top,
    areas: summary.areas,
    ...(writer
      ? {
          writerThread: {
            file: writerFile,
            busyMs: writer.busyMs,
            idleMs: writer.idleMs,
            top: writer.top,
          },
        }
      : {}),
  })
}
