import { defineConfig } from 'vitest/config';

// `npm run test:cluster`: the batch paths that lean on Temporal, against a production-shaped cluster
// (tests/cluster/global-setup.ts starts one, or TEMPORAL_ADDRESS names one), and the faults a
// cluster adds (tests/cluster/, each file with a cluster of its own to kill services of).
export default defineConfig({
  test: {
    include: [
      'tests/cluster/**/*.test.ts',
      'tests/e2e/openai-sdk.test.ts',
      'tests/e2e/chaos.test.ts',
      'tests/integration/execution-kill.test.ts',
      'tests/integration/execution-lifecycle.test.ts',
      'tests/workflow/large-batch.test.ts',
    ],
    // The cluster first: the main setup then finds it in TEMPORAL_ADDRESS instead of starting a dev server.
    globalSetup: ['tests/cluster/global-setup.ts', 'tests/support/global-setup.ts'],
    pool: 'forks',
    // One file at a time: several files here start a cluster, a Postgres and a stack of processes of
    // their own, which two at once on two cores would slow past the bounds the tests keep.
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
