import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

/**
 * Debian's Chromium (scripts/test.sh installs it), never a downloaded browser: the machine may
 * have no internet, and the flags keep it from trying to reach any.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 20_000 })
}

export interface DashboardPage {
  context: BrowserContext
  page: Page
  /** Console errors, uncaught page errors and HTTP answers >= 400 the page met, in order. */
  problems: string[]
}

export interface OpenOptions {
  viewport?: { width: number; height: number }
  colorScheme?: 'light' | 'dark'
  /** The device to select, as the page's URL fragment. */
  device?: string
  /** Wait until the live link is up (the indicator says `live`). Default true. */
  live?: boolean
}

/**
 * Opens the dashboard in a fresh context (its own cookies, cache and MQTT connection) and
 * records every console error, page error and failed HTTP answer, so a test can assert none
 * happened. Fixed locale and time zone keep the page's number and time formats the same on
 * every machine.
 */
export async function openDashboard(
  browser: Browser,
  baseUrl: string,
  options: OpenOptions = {},
): Promise<DashboardPage> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1366, height: 768 },
    colorScheme: options.colorScheme ?? 'light',
    locale: 'en-US',
    timezoneId: 'UTC',
  })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} ${response.url()}`)
  })
  page.setDefaultTimeout(10_000)
  const hash = options.device ? `#${encodeURIComponent(options.device)}` : ''
  await page.goto(`${baseUrl}/${hash}`)
  if (options.live ?? true) await waitForLive(page)
  return { context, page, problems }
}

export async function waitForLive(page: Page): Promise<void> {
  await page.locator('#live[data-state="live"]').waitFor()
}

/** The little of the page's DOM the in-page predicates touch (the project has no DOM typings). */
interface PageDocument {
  querySelector(selector: string): { textContent: string | null } | null
}

/**
 * Waits until the element's text is `text`, checked in every animation frame: when it resolves,
 * the text is in a frame the page has rendered. A function rather than a string: the page's CSP
 * forbids eval, which string predicates would need.
 */
export async function waitForText(
  page: Page,
  selector: string,
  text: string,
  timeoutMs: number,
): Promise<void> {
  await page.waitForFunction(
    ([selector, text]) =>
      (globalThis as unknown as { document: PageDocument }).document.querySelector(selector)
        ?.textContent === text,
    [selector, text] as const,
    { polling: 'raf', timeout: timeoutMs },
  )
}

/** Resolves after the page has painted one more frame. */
export const NEXT_FRAME = 'new Promise((resolve) => requestAnimationFrame(() => resolve(true)))'
