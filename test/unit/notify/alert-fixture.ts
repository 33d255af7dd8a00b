import type { Alert } from '../../../src/contract/types.ts'

/** An alert of the shipped kind of rule, as the router and the templates take it. */
export function alert(overrides: Partial<Alert> = {}): Alert {
  return {
    id: 'high-temp:gh-1',
    ruleId: 'high-temp',
    kind: 'threshold',
    deviceId: 'gh-1',
    metric: 'temperature',
    severity: 'major',
    state: 'firing',
    value: 31.5,
    threshold: 30,
    since: 1_000,
    ts: 1_000,
    message: '31.5 above 30',
    flapping: false,
    ...overrides,
  }
}
