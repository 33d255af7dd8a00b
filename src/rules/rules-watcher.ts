import { type FSWatcher, watch } from 'node:fs'
import path from 'node:path'
import type { Logger } from '../telemetry/logger.ts'

export interface RulesWatcher {
  /** Loads and applies the file now; resolves false (old rules kept) when it is invalid. */
  reload(): Promise<boolean>
  close(): void
}

/**
 * Applies edits of the rules file without a restart. It watches the folder, not the file, because
 * editors save by writing a new file and renaming it over the old one, which ends a watch on the
 * file itself. Events are debounced (one save is several events). An invalid file is reported with
 * every problem and the rules in force stay as they are.
 */
export function watchRulesFile<Rules>(
  deps: { log: Logger; load: () => Promise<Rules>; apply: (rules: Rules) => void },
  options: { file: string; debounceMs?: number; subject?: string },
): RulesWatcher {
  // The same watcher serves the notifications file (src/notify/load-notifications.ts): `subject`
  // names what the log lines are about.
  const subject = options.subject ?? 'rules'
  const log = deps.log.child({ module: `${subject}-watcher` })
  const file = path.resolve(options.file)
  const debounceMs = options.debounceMs ?? 100
  let timer: NodeJS.Timeout | undefined
  let running: Promise<boolean> = Promise.resolve(true)
  let closed = false

  const reload = (): Promise<boolean> => {
    // Reloads run one after another, so an older file can never win over a newer one.
    running = running.then(async () => {
      if (closed) return false
      try {
        const rules = await deps.load()
        if (closed) return false
        deps.apply(rules)
        log.info({ file }, `${subject} reloaded`)
        return true
      } catch (err) {
        log.error(
          { file, problems: (err as Error).message },
          `${subject} file rejected; the ${subject} in force are kept`,
        )
        return false
      }
    })
    return running
  }

  let watcher: FSWatcher | null = null
  try {
    watcher = watch(path.dirname(file), { persistent: false }, (_event, name) => {
      if (name !== null && name !== path.basename(file)) return
      clearTimeout(timer)
      timer = setTimeout(() => void reload(), debounceMs)
    })
    watcher.on('error', (err) =>
      log.warn({ err, file }, `${subject} file watch failed; edits need a restart`),
    )
  } catch (err) {
    log.warn({ err, file }, `cannot watch the ${subject} file; edits need a restart`)
  }

  return {
    reload,
    close() {
      closed = true
      clearTimeout(timer)
      watcher?.close()
    },
  }
}
