import type { Alert } from '../contract/types.ts'
import { compileDeviceMatcher, compileGlob, type IdMatcher } from '../rules/glob.ts'
import {
  type AlertMatchers,
  type NotificationsConfig,
  type NotifyTransition,
  type Route,
  transitionOf,
} from './types.ts'

/** Matchers as routes and silences hold them: a silence may leave `metric` out (any metric). */
export type AlertMatchersLike = Omit<AlertMatchers, 'metric'> & {
  metric?: readonly string[] | null
}

interface CompiledMatchers {
  severity: ReadonlySet<string> | null
  rule: IdMatcher | null
  device: IdMatcher | null
  metric: IdMatcher | null
  tags: ReadonlyArray<readonly [name: string, value: IdMatcher]> | null
}

/**
 * Compiled once per matchers object: a route's matchers are frozen with the file, a silence's
 * with the silence, so every alert after the first costs set lookups and precompiled globs.
 */
const compiled = new WeakMap<AlertMatchersLike, CompiledMatchers>()

function compile(matchers: AlertMatchersLike): CompiledMatchers {
  let found = compiled.get(matchers)
  if (found === undefined) {
    const list = (patterns: readonly string[] | null | undefined) =>
      patterns === null || patterns === undefined ? null : compileDeviceMatcher(patterns)
    found = {
      severity: matchers.severity === null ? null : new Set(matchers.severity),
      rule: list(matchers.rule),
      device: list(matchers.device),
      metric: list(matchers.metric),
      tags:
        matchers.tags === null
          ? null
          : Object.entries(matchers.tags).map(([name, glob]) => [name, compileGlob(glob)] as const),
    }
    compiled.set(matchers, found)
  }
  return found
}

/**
 * Whether `alert` is one `matchers` take: every matcher set must match (null is any). Rule, device
 * and metric are globs as in rules (`greenhouse-*`); each tag named must be on the device (`tags`,
 * from the device registry) with a value its glob matches. Pure; shared by routes and silences.
 */
export function alertMatches(
  matchers: AlertMatchersLike,
  alert: Pick<Alert, 'severity' | 'ruleId' | 'deviceId' | 'metric'>,
  tags: Readonly<Record<string, string>>,
): boolean {
  const m = compile(matchers)
  if (m.severity !== null && !m.severity.has(alert.severity)) return false
  if (m.rule !== null && !m.rule(alert.ruleId)) return false
  if (m.device !== null && !m.device(alert.deviceId)) return false
  if (m.metric !== null && !m.metric(alert.metric)) return false
  if (m.tags !== null) {
    for (const [name, matches] of m.tags) {
      const value = tags[name]
      if (value === undefined || !matches(value)) return false
    }
  }
  return true
}

export interface RouteTarget {
  route: Route
  channel: string
  kind: NotifyTransition
}

/**
 * Where an alert transition goes: each route, in file order, whose matchers take the alert and
 * whose `on` lists its transition, once per channel of the route. A channel two matching routes
 * name is notified once, by the first of them (its templates, grouping and repeat apply), so
 * overlapping routes never send one receiver the same alert twice. Pure.
 */
export function routeAlert(
  config: Pick<NotificationsConfig, 'routes'>,
  alert: Alert,
  tags: Readonly<Record<string, string>>,
): RouteTarget[] {
  const kind = transitionOf(alert)
  const targets: RouteTarget[] = []
  let taken: Set<string> | null = null
  for (const route of config.routes) {
    if (!route.on.includes(kind) || !alertMatches(route.match, alert, tags)) continue
    for (const channel of route.channels) {
      taken ??= new Set()
      if (taken.has(channel)) continue
      taken.add(channel)
      targets.push({ route, channel, kind })
    }
  }
  return targets
}
