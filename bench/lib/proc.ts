/** What Linux says about a process: resident memory and CPU time, from /proc (bench/run.ts). */
import { readFileSync } from 'node:fs'

/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on Linux everywhere it runs). */
const TICKS_PER_SEC = 100

export interface ProcSample {
  /** Resident set size, KiB (VmRSS). */
  rssKiB: number
  /** Peak resident set size since the process started, KiB (VmHWM). */
  hwmKiB: number
  /** User + system CPU time, seconds. */
  cpuSec: number
}

/** null once the process is gone (or on a system without /proc). */
export function sampleProc(pid: number): ProcSample | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at state, field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return {
      rssKiB: kib(status, 'VmRSS'),
      hwmKiB: kib(status, 'VmHWM'),
      cpuSec: (utime + stime) / TICKS_PER_SEC,
    }
  } catch {
    return null
  }
}

function kib(status: string, key: string): number {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
  return match ? Number(match[1]) : Number.NaN
}

/** Samples a process's RSS every `everyMs` until stopped. */
export function watchProc(
  pid: number,
  everyMs = 100,
): { stop(): { peakRssKiB: number; samples: Array<{ at: number; rssKiB: number }> } } {
  const samples: Array<{ at: number; rssKiB: number }> = []
  const take = () => {
    const s = sampleProc(pid)
    if (s) samples.push({ at: performance.timeOrigin + performance.now(), rssKiB: s.rssKiB })
  }
  take()
  const timer = setInterval(take, everyMs)
  return {
    stop() {
      clearInterval(timer)
      take()
      return { peakRssKiB: Math.max(0, ...samples.map((s) => s.rssKiB)), samples }
    },
  }
}

export function machine(): Record<string, string | number> {
  let cpuModel = 'unknown'
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8')
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpuModel
  } catch {
    // Not Linux: the model stays unknown.
  }
  return { cpuModel }
}
