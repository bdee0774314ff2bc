import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Real vLLM on the CPU has a run of its own: `npm run test:vllm` (vitest.vllm.config.ts); so do
    // the faults of a Temporal cluster: `npm run test:cluster` (vitest.cluster.config.ts).
    exclude: ['tests/vllm/**', 'tests/cluster/**', 'node_modules/**'],
    // Started once per run: a real Temporal dev server, embedded Postgres and the vLLM simulator.
    globalSetup: ['tests/support/global-setup.ts'],
    // Temporal's native worker wants a process of its own; two match this machine's two cores.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
