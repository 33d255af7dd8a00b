import path from 'node:path'
import type { EventBus } from '../bus/event-bus.ts'
import type { RulesWatcher } from '../rules/rules-watcher.ts'
import type { Logger } from '../telemetry/logger.ts'
import { BUILT_IN_CHANNEL_KINDS } from './channel-kinds.ts'
import {
  type LoadedNotifications,
  loadNotificationsFile,
  type NotificationsDeps,
  watchNotificationsFile,
} from './load-notifications.ts'
import { createNotifier, type Notifier } from './notifier.ts'
import { OUTBOX_FILE, type Outbox, openOutbox } from './outbox.ts'
import { routeAlert } from './router.ts'
import { renderNotification } from './templates.ts'
import type { AlertControls } from './types.ts'

/** The loader's dependencies in the gateway: the built-in kinds (custom modules: its default). */
const LOADER_DEPS: NotificationsDeps = { kinds: BUILT_IN_CHANNEL_KINDS }

const NO_CONTROLS: AlertControls = { ackOf: () => undefined, isSilenced: () => false }

/** Reads and validates NOTIFICATIONS_FILE; throws GW_ERR_NOTIFICATIONS naming every problem. */
export function loadGatewayNotifications(file: string): Promise<LoadedNotifications> {
  return loadNotificationsFile(file, LOADER_DEPS)
}

export interface GatewayNotifications {
  readonly notifier: Notifier
  /** Resumes delivery; with `watch`, applies edits of the file without a restart. */
  start(options: { watch: boolean }): void
  /** Aborts attempts in flight (their notifications stay pending), closes channels and the outbox. */
  stop(): Promise<void>
}

/**
 * The notifications of one gateway (README "Notifications"): the outbox in DATA_DIR, the notifier
 * on the bus, and the file's hot reload. The gateway creates this only when NOTIFICATIONS_FILE is
 * set: without it nothing listens, nothing is opened.
 */
export function createGatewayNotifications(
  deps: {
    bus: EventBus
    log: Logger
    /** Acknowledgements and silences; without them nothing is acknowledged or silenced. */
    controls?: AlertControls
    tagsOf: (deviceId: string) => Readonly<Record<string, string>> | undefined
    /**
     * With REDIS_URL: the outbox as the notifier uses it, its pending notifications mirrored in
     * Redis for a take-over (src/cluster/cluster-outbox.ts).
     */
    wrapOutbox?: (outbox: Outbox) => Outbox
  },
  options: { file: string; dataDir: string; loaded: LoadedNotifications },
): GatewayNotifications {
  const opened: Outbox = openOutbox({ file: path.resolve(options.dataDir, OUTBOX_FILE) })
  const outbox = deps.wrapOutbox ? deps.wrapOutbox(opened) : opened
  // Channels of a reloaded file are created with the kinds that file's load resolved.
  let kinds = options.loaded.kinds
  const notifier = createNotifier(
    {
      bus: deps.bus,
      log: deps.log,
      outbox,
      controls: deps.controls ?? NO_CONTROLS,
      tagsOf: deps.tagsOf,
      routeAlert,
      render: renderNotification,
      createChannel(settings) {
        const kind = kinds.get(settings.kind) ?? BUILT_IN_CHANNEL_KINDS.get(settings.kind)
        if (kind === undefined) throw new Error(`no channel kind "${settings.kind}"`)
        return kind.create(settings.name, settings.config, {
          log: deps.log.child({ module: 'channel', channel: settings.name }),
        })
      },
    },
    options.loaded,
  )
  let watcher: RulesWatcher | undefined
  return {
    notifier,
    start({ watch }) {
      notifier.start()
      if (!watch) return
      watcher = watchNotificationsFile(
        {
          ...LOADER_DEPS,
          log: deps.log,
          apply(next) {
            kinds = next.kinds
            notifier.setConfig(next)
          },
        },
        { file: options.file },
      )
    },
    async stop() {
      watcher?.close()
      await notifier.stop()
      outbox.close()
    },
  }
}
