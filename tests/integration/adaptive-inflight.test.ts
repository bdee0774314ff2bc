// A GPU worker's in-flight limit follows its engine: down to what the engine runs when requests queue
// there, back up when it takes more, down on rate limits; chunks never stall while it moves, and every
// request is answered once. Batch requests reach the engine at a low vLLM priority (online first).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { inflightLimit, inflightLimitChangesTotal } from '../../lib/metrics.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEachLineOnce, submitBatch, waitForBatch, waitForProgress } from '../support/batches.js';
import { setCapacity, setFaults, startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/** The GPU worker's limit as its /metrics publish it. */
async function publishedLimit(): Promise<number> {
  const { values } = await inflightLimit.get();
  return values[0]?.value ?? Number.NaN;
}

async function cuts(reason: string): Promise<number> {
  const { values } = await inflightLimitChangesTotal.get();
  return values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
}

async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('adaptive in-flight limit', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const model = 'adaptive-model';

  beforeAll(async () => {
    // The engine runs 8 sequences at a time; the worker may send 32.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 4, maxNumSeqs: 8 });
    stack = await startTestStack({
      engines: [engine.url],
      env: {
        GPU_MAX_INFLIGHT: '32',
        GPU_MIN_INFLIGHT: '2',
        GPU_ADAPTIVE_INTERVAL_MS: '100',
        GPU_ADAPTIVE_HOLD_MS: '500',
        GPU_ADAPTIVE_MAX_WAITING: '2',
        GPU_ADAPTIVE_INCREASE: '2',
        BATCH_CHUNK_SIZE: '500',
      },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it('follows the engine down and up, and every request is answered once', async () => {
    expect(await publishedLimit()).toBe(32);
    const batch = await submitBatch(stack, batchLines({ model, count: 4000 }));
    await waitForProgress(stack.openai, batch.id, 50);

    // 24 of 32 would wait in the engine's queue: the limit comes down to what it runs, plus the tolerance.
    await eventually('the limit down to what the engine runs', async () => (await publishedLimit()) <= 10);
    expect(await cuts('queue')).toBeGreaterThan(0);
    // Sent at the batch floor plus the batch's Temporal priority (3): online requests (0) go first.
    const running = engine.state.engine.scheduler.running;
    expect(running.length).toBeGreaterThan(0);
    expect(running.map((r) => r.priority)).toEqual(running.map(() => 103));

    // The engine takes more: the limit grows to it.
    await setCapacity(engine, { maxNumSeqs: 24 });
    await eventually('the limit up to the larger engine', async () => (await publishedLimit()) >= 24);

    // Rate limited: cut by the factor; the requests refused are retried, not failed.
    await setFaults(engine, { errorRates: { '429': 0.3 }, retryAfterSeconds: 0 });
    await eventually('a cut on 429s', async () => (await cuts('rate_limited')) > 0);
    await setFaults(engine, {});

    const finished = await waitForBatch(stack.openai, batch.id, 180_000);
    expect(finished.request_counts).toMatchObject({ total: 4000, completed: 4000, failed: 0 });
    await expectEachLineOnce(stack.openai, finished, 4000);
  });
});
