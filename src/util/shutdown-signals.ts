/**
 * Ctrl-C reaches both npm and the program it runs, and npm forwards it once more: a repeat within
 * this window is that echo, not an impatient user asking to skip the clean shutdown.
 */
export const DUPLICATE_SIGNAL_WINDOW_MS = 1_000

/**
 * Calls `onFirst` on the first SIGINT/SIGTERM and `onForced` on a later one (outside the echo
 * window). Entry points use it so `npm start` and `npm run simulate` stop cleanly on one Ctrl-C.
 */
export function onShutdownSignals(
  onFirst: (signal: NodeJS.Signals) => void,
  onForced: (signal: NodeJS.Signals) => void,
): void {
  let signalledAt = 0
  const handle = (signal: NodeJS.Signals) => {
    if (signalledAt > 0) {
      if (Date.now() - signalledAt >= DUPLICATE_SIGNAL_WINDOW_MS) onForced(signal)
      return
    }
    signalledAt = Date.now()
    onFirst(signal)
  }
  process.on('SIGINT', handle)
  process.on('SIGTERM', handle)
}
