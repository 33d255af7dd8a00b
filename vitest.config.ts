import { defineConfig } from 'vitest/config'

/**
 * Tests that load both cores on purpose (a benchmark smoke run, the fuzz and soak runs) run in a
 * group of their own, after everything else: beside them, a browser test's or a restart test's
 * bounds measure the crowd, not the code.
 */
const CPU_HEAVY = ['test/integration/bench.test.ts', 'test/integration/fuzz-soak.test.ts']

const shared = {
  testTimeout: 20_000,
  hookTimeout: 30_000,
}

export default defineConfig({
  test: {
    // Integration tests start real brokers and processes; two cores do not like a crowd.
    maxWorkers: 2,
    projects: [
      {
        test: {
          ...shared,
          name: 'tests',
          include: ['test/**/*.test.ts'],
          exclude: CPU_HEAVY,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: 'cpu-heavy',
          include: CPU_HEAVY,
          sequence: { groupOrder: 1 },
          // One at a time: each of them already keeps both cores busy.
          maxWorkers: 1,
        },
      },
    ],
  },
})
