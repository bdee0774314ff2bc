// GPU workers killed with SIGKILL mid-chunk: the batch completes, every custom_id appears exactly
// once across the output and error files, and finished lines are not sent to the engine again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, runDisruptedBatch, submitBatch, waitForBatch } from '../support/batches.js';
import { spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { expectHistoriesReplay } from '../support/replay.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const IN_FLIGHT = 8;

describe('GPU workers killed mid-chunk', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const workers: ChildUnderTest[] = [];
  const model = 'kill-model';
  const workerEnv = { GPU_MAX_INFLIGHT: String(IN_FLIGHT) };

  beforeAll(async () => {
    // About 200 ms a request, so chunks are mid-flight when a worker dies.
    engine = await startTestSimulator({
      models: [model],
      tokenLatencyMs: 12.5,
      outputTokens: { min: 40, max: 40 },
      recordRequests: true,
    });
    // No in-process GPU worker: all of them are processes this test can kill. Kills cost attempts,
    // so allow plenty; the batch must not lose a line however often its workers die.
    stack = await startTestStack({ engines: [], env: { CHUNK_MAX_ATTEMPTS: '50' } });
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.kill9()));
    await stack.stop();
    await engine.close();
  });

  const duplicatesSent = (): number => [...engine.state.requestCounts.values()].reduce((sum, n) => sum + (n - 1), 0);

  it('finishes a batch after one of two workers is killed, resending at most what was in flight', async () => {
    workers.push(await spawnGpuWorker(stack, engine.url, { ...workerEnv, GPU_INDEX: '0' }));
    workers.push(await spawnGpuWorker(stack, engine.url, { ...workerEnv, GPU_INDEX: '1' }));
    const count = 400;
    const batch = await runDisruptedBatch(
      stack,
      batchLines({ model, count }),
      { after: 100, timeoutMs: 120_000 },
      async () => {
        await workers[0]!.kill9();
      },
    );
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(stack.openai, batch, count);
    // Only requests that were in flight, or finished but not yet persisted (the flush being written —
    // a segment with its fsync and a transaction — and those waiting behind it), go out again.
    expect(duplicatesSent()).toBeLessThanOrEqual(3 * IN_FLIGHT);
  });

  it('accounts for every custom_id exactly once while workers are killed at random moments', async () => {
    engine.state.requestCounts.clear();
    while (workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).length < 3) {
      workers.push(await spawnGpuWorker(stack, engine.url, { ...workerEnv, GPU_INDEX: String(workers.length) }));
    }
    const count = 1200;
    const created = await submitBatch(stack, batchLines({ model, count }));
    let kills = 0;
    const state = { finished: false };
    const finished = (): boolean => state.finished;
    const chaos = (async () => {
      while (!finished()) {
        await new Promise((r) => setTimeout(r, 1000 + Math.random() * 2000));
        if (finished()) break;
        const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
        const victim = live[Math.floor(Math.random() * live.length)];
        if (victim === undefined) continue;
        await victim.kill9();
        kills++;
        workers.push(await spawnGpuWorker(stack, engine.url, { ...workerEnv, GPU_INDEX: String(workers.length) }));
      }
    })();
    const batch = await waitForBatch(stack.openai, created.id, 300_000).finally(() => {
      state.finished = true;
    });
    await chaos;
    expect(kills).toBeGreaterThanOrEqual(2);
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(stack.openai, batch, count);
    expect(duplicatesSent()).toBeLessThanOrEqual(kills * 3 * IN_FLIGHT);
  }, 360_000);

  it('leaves histories that replay deterministically', async () => {
    await expectHistoriesReplay(stack, 2);
  });
});
