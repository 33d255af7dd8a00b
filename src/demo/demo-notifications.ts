import { chmod, writeFile } from 'node:fs/promises'
import path from 'node:path'

/** The notifications file `npm run demo` writes into DATA_DIR (rewritten at every start). */
export const DEMO_NOTIFICATIONS_FILE = 'demo-notifications.yaml'
export const DEMO_CHANNEL = 'demo-webhook'
export const DEMO_ROUTE = 'demo-major'
/** Alerts of the route firing within this window of the first are one notification. */
export const DEMO_GROUP_WINDOW = '2s'

/**
 * The demo's notifications file (README "Notifications"): one webhook channel to the receiver the
 * demo runs, signed with `secret`, and one route for major and critical alerts, firing and
 * resolved, grouped over a short window. The file holds the secret: only its owner may read it.
 */
export async function writeDemoNotificationsFile(
  dataDir: string,
  receiver: { url: string; secret: string },
): Promise<string> {
  const file = path.join(dataDir, DEMO_NOTIFICATIONS_FILE)
  const yaml = [
    '# Written by `npm run demo` at each start (README "Notifications"): the webhook receiver the',
    '# demo runs, with a secret made for this run. Set NOTIFICATIONS_FILE to use a file of your own.',
    'channels:',
    `  - name: ${DEMO_CHANNEL}`,
    '    kind: webhook',
    `    url: ${JSON.stringify(receiver.url)}`,
    `    secret: ${JSON.stringify(receiver.secret)}`,
    '    timeout: 5s',
    'routes:',
    `  - name: ${DEMO_ROUTE}`,
    `    channels: [${DEMO_CHANNEL}]`,
    '    match: { severity: major+ }',
    '    on: [firing, resolved]',
    `    group: ${DEMO_GROUP_WINDOW}`,
    '',
  ].join('\n')
  await writeFile(file, yaml, { mode: 0o600 })
  // A file left by an older run keeps its mode on rewrite: narrow it too.
  await chmod(file, 0o600)
  return file
}
