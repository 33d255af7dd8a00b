/**
 * The fuzz and soak runs (scripts/fuzz.ts, scripts/soak.ts) in short mode, each as a real child
 * process through its npm script, exactly as a user runs them: each starts its own gateway
 * process, stops it with SIGTERM, and prints one final JSON line that must reconcile. Bounded in
 * time (runToEnd kills the whole process group, gateway included, when the bound passes); nothing
 * here asserts on speed.
 */
import { describe, expect, it } from 'vitest'
import { runToEnd } from '../helpers/processes.ts'

const RUN_BOUND_MS = 150_000
const TEST_TIMEOUT_MS = 180_000

/** The last JSON line a run printed on stdout. */
function finalLine(stdout: string): Record<string, unknown> {
  const lines = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
  const last = lines.at(-1)
  if (last === undefined) throw new Error(`no JSON line in the output:\n${stdout}`)
  return JSON.parse(last) as Record<string, unknown>
}

describe('fuzz and soak runs (npm run fuzz / npm run soak, short)', () => {
  it(
    'npm run fuzz -- --count 20000: every generated publish is a reading or a dead letter, as the parser says, and the gateway survives',
    async () => {
      const run = await runToEnd(
        'npm',
        ['run', 'fuzz', '--silent', '--', '--count', '20000', '--seed', '20261126'],
        {},
        RUN_BOUND_MS,
      )
      const result = finalLine(run.stdout)
      const context = `${JSON.stringify(result)}\n${run.stderr.slice(-4_000)}`
      expect(result.scenario, context).toBe('fuzz')
      expect(result.ok, context).toBe(true)
      expect(run.code, context).toBe(0)
      expect(result.messages).toBe(20_000)
      expect(result.readingsAccepted).toBe(result.readingsExpected)
      expect(result.deadLettersCounted).toBe(result.deadLettersExpected)
      expect(result.messagesIn).toBe(20_000)
      // The generators reach both outcomes, and every parser reason but the rare ones.
      expect(result.readingsExpected as number).toBeGreaterThan(0)
      expect(result.deadLettersExpected as number).toBeGreaterThan(0)
      const byReason = result.deadLettersByReason as Record<string, number>
      for (const reason of ['bad_topic', 'bad_identifier', 'not_json', 'bad_value', 'bad_senml']) {
        expect(byReason[reason], reason).toBeGreaterThan(0)
      }
      expect(byReason.rate_limited).toBe(0)
      expect(result.gatewayExit).toBe(0)
      expect(result.peakRssMiB as number).toBeGreaterThan(0)
    },
    TEST_TIMEOUT_MS,
  )

  it(
    'npm run soak -- --duration 15s --rate 200: every acknowledged reading is stored once, malformed ones are dead-lettered',
    async () => {
      const run = await runToEnd(
        'npm',
        ['run', 'soak', '--silent', '--', '--duration', '15s', '--rate', '200'],
        {},
        RUN_BOUND_MS,
      )
      const result = finalLine(run.stdout)
      const context = `${JSON.stringify(result)}\n${run.stderr.slice(-4_000)}`
      expect(result.scenario, context).toBe('soak')
      expect(result.ok, context).toBe(true)
      expect(run.code, context).toBe(0)
      expect(result.published as number).toBeGreaterThan(0)
      expect(result.acked).toBe(result.published)
      expect(result.stored).toBe(result.readingsAcked)
      expect(result.storedRows).toBe(result.stored)
      expect(result.duplicates).toBe(0)
      expect(result.deadLettered).toBe(result.malformedSent)
      expect(result.malformedSent as number).toBeGreaterThan(0)
      expect(result.gatewayExit).toBe(0)
      // The periodic lines came first, each with the fields the README names.
      const periodic = run.stdout
        .split('\n')
        .filter((l) => l.startsWith('{"t":'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(periodic.length).toBeGreaterThan(0)
      for (const line of periodic) {
        expect(Object.keys(line)).toEqual(
          expect.arrayContaining(['t', 'published', 'acked', 'stored', 'deadLettered', 'rssMiB']),
        )
      }
    },
    TEST_TIMEOUT_MS,
  )
})
