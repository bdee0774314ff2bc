import { defineConfig } from 'vitest/config';

// `npm run test:vllm`: the tier that runs against real vLLM (its CPU build, a tiny random-weight model).
export default defineConfig({
  test: {
    include: ['tests/vllm/**/*.test.ts'],
    // Both setups, each started once per run: the main test services (Temporal, Postgres, MinIO,
    // Label Studio's template, the simulator) for system tests of this tier, and one real vLLM.
    globalSetup: ['tests/support/global-setup.ts', 'tests/vllm/global-setup.ts'],
    pool: 'forks',
    // Real vLLM on the CPU shares this machine's two cores with everything else: one file at a time.
    maxWorkers: 1,
    testTimeout: 300_000,
    // Installing vLLM the first time takes minutes; starting a second server for a test, one or two.
    hookTimeout: 900_000,
    teardownTimeout: 120_000,
  },
});
