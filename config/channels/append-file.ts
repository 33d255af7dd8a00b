import { appendFile } from 'node:fs/promises'
import path from 'node:path'
import type { ChannelKind, DeliveryResult } from '../../src/notify/types.ts'

/**
 * Custom channel kind `append-file`, referenced from config/notifications.yaml as
 *
 *   channels:
 *     - name: audit
 *       kind: custom
 *       module: ./config/channels/append-file.ts
 *       path: ./data/notifications.jsonl   # relative to the working directory
 *
 * It is written against the same ChannelKind interface as the built-in kinds: the default export
 * is the kind; parse() validates its own fields (pushing [field, message] problems), create()
 * returns the channel. Each notification becomes one JSON line; deliver() never throws: a
 * failure is a result, retryable unless retrying cannot help. At least once: a retried line may
 * appear twice, with the same `id`.
 */
interface AppendFileConfig {
  file: string
}

/** Errors a retry cannot fix until someone changes the file system. */
const PERMANENT_CODES = new Set(['EACCES', 'EPERM', 'EISDIR', 'EROFS'])

const appendFileKind: ChannelKind<AppendFileConfig> = {
  kind: 'append-file',
  secretFields: [],
  parse(raw, problems) {
    if (typeof raw.path !== 'string' || raw.path.trim() === '') {
      problems.push([
        'path',
        `is required: the file to append to, got ${JSON.stringify(raw.path) ?? 'nothing'}`,
      ])
      return null
    }
    return { file: path.resolve(raw.path) }
  },
  create(name, config, deps) {
    const log = deps.log.child({ module: 'notify', channel: name, kind: 'append-file' })
    return {
      name,
      kind: 'append-file',
      async deliver(notification, attempt, signal): Promise<DeliveryResult> {
        const line = `${JSON.stringify({ ...notification, attempt })}\n`
        // A local append is quick: the signal (timeout, shutdown) is only checked before it.
        if (signal.aborted)
          return { ok: false, permanent: false, error: 'aborted before appending' }
        try {
          await appendFile(config.file, line)
          return { ok: true }
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? ''
          log.debug({ err, notificationId: notification.id }, 'append failed')
          return {
            ok: false,
            permanent: PERMANENT_CODES.has(code),
            error: `cannot append to ${config.file}: ${(err as Error).message}`,
          }
        }
      },
      async close() {},
    }
  },
}

export default appendFileKind
