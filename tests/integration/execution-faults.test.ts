// Batch execution when engines misbehave: several GPU workers, transient errors, an outage that
// ends, and one that does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import {
  batchLines,
  expectEachLineOnce,
  expectEveryLineDone,
  outputsByCustomId,
  runBatch,
  runDisruptedBatch,
  submitBatch,
  waitForBatch,
} from '../support/batches.js';
import { spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { expectHistoriesReplay } from '../support/replay.js';
import { setFaults, startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('batch execution with two GPU workers', () => {
  let stack: TestStack;
  let engines: RunningSimulator[];
  let second: ChildUnderTest;
  const model = 'gpu-model';

  beforeAll(async () => {
    engines = await Promise.all([startTestSimulator({ models: [model] }), startTestSimulator({ models: [model] })]);
    stack = await startTestStack({ engines: [engines[0]!.url] });
    second = await spawnGpuWorker(stack, engines[1]!.url, { GPU_INDEX: '1' });
  });
  afterAll(async () => {
    await second.stop();
    await stack.stop();
    await Promise.all(engines.map((e) => e.close()));
  });

  it('spreads the chunks of one batch over both GPUs', async () => {
    const count = 400;
    const batch = await runBatch(stack, batchLines({ model, count }));
    expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
    const served = engines.map((e) => e.state.snapshot().served);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
    expect(served[0]! + served[1]!).toBe(count);
  });
});

describe('batch execution against a flaky engine', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const model = 'flaky-model';

  beforeAll(async () => {
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 1, outputTokens: { min: 5, max: 10 } });
    // A short request timeout, so hung requests are timed out and retried quickly.
    stack = await startTestStack({
      engines: [engine.url],
      env: { ENGINE_REQUEST_TIMEOUT_MS: '1000', ENGINE_RETRY_MAX_MS: '300' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it('retries 429s (honouring Retry-After), 502s, 503s, timeouts and dropped connections until every request succeeds', async () => {
    await setFaults(engine, {
      errorRates: { '429': 0.15, '502': 0.1, '503': 0.05 },
      retryAfterSeconds: 0.1,
      hangRate: 0.03,
      dropRate: 0.03,
    });
    const count = 300;
    const batch = await runBatch(stack, batchLines({ model, count }), 120_000);
    await setFaults(engine, {});
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
    const faults = engine.state.snapshot().faults;
    expect(faults.error).toBeGreaterThan(20);
    expect(faults.hang + faults.drop).toBeGreaterThan(5);
    await expectEachLineOnce(stack.openai, batch, count);
    expect(await stack.db.selectFrom('dead_letters').selectAll().where('batch_id', '=', batch.id).execute()).toEqual(
      [],
    );
  });

  it("writes vLLM's 500s to the error file at once, without retrying them, while the engine is healthy", async () => {
    await setFaults(engine, { errorRates: { '500': 0.2 } });
    const count = 200;
    const batch = await runBatch(stack, batchLines({ model, count }), 120_000);
    await setFaults(engine, {});
    expect(batch.status).toBe('completed');
    const { failed, counts } = await outputsByCustomId(stack.openai, batch);
    expect(counts.size).toBe(count);
    expect(failed.length).toBeGreaterThan(10);
    for (const line of failed) expect(line.response?.status_code).toBe(500);
    const letters = await stack.db
      .selectFrom('dead_letters')
      .select(['attempts'])
      .where('batch_id', '=', batch.id)
      .execute();
    expect(letters).toHaveLength(failed.length);
    expect(letters.every((l) => l.attempts === 1)).toBe(true);
  });

  it('pauses through a one-minute engine outage and resumes without failing anything', async () => {
    const count = 600;
    // About 20 requests a second, so the batch is still running when the engine goes down.
    await setFaults(engine, { spikeRate: 1, spikeMs: 400 });
    const batch = await runDisruptedBatch(
      stack,
      batchLines({ model, count }),
      { after: 100, timeoutMs: 120_000 },
      async (created) => {
        await setFaults(engine, { down: true });
        await new Promise((r) => setTimeout(r, 3000));
        const during = await stack.openai.batches.retrieve(created.id);
        await new Promise((r) => setTimeout(r, 57_000));
        const later = await stack.openai.batches.retrieve(created.id);
        // Nothing moved, and nothing was written off, while the engine was away.
        expect(later.status).toBe('in_progress');
        expect(later.request_counts).toEqual(during.request_counts);
        expect(later.request_counts?.failed).toBe(0);
        await setFaults(engine, {});
      },
    );
    await expectEveryLineDone(stack.openai, batch, count);
  }, 240_000);
});

describe('a chunk whose engine stays down', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const model = 'doomed-model';

  beforeAll(async () => {
    engine = await startTestSimulator({ models: [model] });
    stack = await startTestStack({
      engines: [engine.url],
      env: { ENGINE_RETRY_BUDGET_MS: '400', CHUNK_MAX_ATTEMPTS: '2' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it('ends cancelled, not as a failed workflow, when cancelled while its chunks are failing', async () => {
    // Depending on timing, Temporal reports such a chunk as failed rather than cancelled; the
    // batch must end cancelled either way. Several rounds, so the bad timing is all but certain.
    for (let round = 0; round < 4; round++) {
      await setFaults(engine, { down: true });
      const count = 200;
      const created = await submitBatch(stack, batchLines({ model, count }));
      await new Promise((r) => setTimeout(r, 300));
      await stack.openai.batches.cancel(created.id);
      const batch = await waitForBatch(stack.openai, created.id, 60_000);
      expect(batch.status).toBe('cancelled');
      expect((await outputsByCustomId(stack.openai, batch)).counts.size).toBe(count);
      // The workflow ends a moment after the database says cancelled; it must end completed, not failed.
      const handle = stack.temporal.workflow.getHandle(created.id);
      await expect(handle.result()).resolves.toMatchObject({ status: 'cancelled' });
      expect((await handle.describe()).status.name).toBe('COMPLETED');
    }
  });

  it('is dead-lettered after its Temporal retries, and the batch still finalizes with every line accounted for', async () => {
    await setFaults(engine, { down: true });
    const count = 60;
    const batch = await runBatch(stack, batchLines({ model, count }), 120_000);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: count, completed: 0, failed: count });
    const { failed, counts } = await outputsByCustomId(stack.openai, batch);
    expect(counts.size).toBe(count);
    expect(new Set(failed.map((l) => l.error?.code))).toEqual(new Set(['chunk_failed']));
    expect(failed[0]?.error?.message).toMatch(/unavailable/);
    const letters = await stack.db
      .selectFrom('dead_letters')
      .select(['line', 'custom_id'])
      .where('batch_id', '=', batch.id)
      .execute();
    expect(letters).toHaveLength(count);
    // The workflow dead-lettered each chunk: it says so in its progress.
    const progress = await stack.temporal.workflow
      .getHandle(batch.id)
      .query<{ chunks: { deadLettered: number; total: number } }>('progress');
    expect(progress.chunks.deadLettered).toBe(progress.chunks.total);
  });

  it('leaves histories that replay deterministically', async () => {
    await expectHistoriesReplay(stack, 1);
  });
});
