// How the GPUs are shared between batches and projects: a small batch of one project is not stuck
// behind another project's large one.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addKey } from '../../api/services/keys.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEachLineOnce, submitBatch, waitForBatch, waitForProgress } from '../support/batches.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const done = (b: OpenAI.Batches.Batch): number => (b.request_counts?.completed ?? 0) + (b.request_counts?.failed ?? 0);

describe('fairness between projects', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let other: TestStack;
  const model = 'fairness-model';

  beforeAll(async () => {
    // 16 tokens at 5 ms: 80 ms a request, 8 in flight, 100 a second. A large batch's chunks hold
    // 400 lines (4 s with the whole engine), so a batch waiting for one of them to end would wait seconds.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 5 });
    stack = await startTestStack({
      engines: [engine.url],
      env: {
        GPU_MAX_INFLIGHT: '8',
        BATCH_CHUNK_SIZE: '400',
        BATCH_CHUNKS_PER_WORKER: '1',
        SMALL_BATCH_MAX_REQUESTS: '100',
      },
    });
    await addKey(stack, 'small-tenant', 'sk-small-tenant');
    other = {
      ...stack,
      openai: new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: 'sk-small-tenant', maxRetries: 0 }),
    };
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it("runs a small batch of one project at once beside another project's large batch", async () => {
    const large = await submitBatch(stack, batchLines({ model, count: 2000 }));
    // Under way: its chunks hold both of the worker's chunk slots for large batches.
    await waitForProgress(stack.openai, large.id, 100);
    const small = await submitBatch(other, batchLines({ model, count: 40 }));
    const largeAtSubmit = done(await stack.openai.batches.retrieve(large.id));
    // Until every request of the small batch is answered: how far did the large one get meanwhile?
    let largeWhenSmallAnswered: number;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [s, l] = await Promise.all([
        other.openai.batches.retrieve(small.id),
        stack.openai.batches.retrieve(large.id),
      ]);
      if (done(s) === 40) {
        largeWhenSmallAnswered = done(l);
        break;
      }
      expect(['validating', 'in_progress']).toContain(s.status);
      expect(Date.now(), 'the small batch answered within a minute').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Waiting for a slot behind the large batch's chunks would have let at least one of its chunks
    // (400 lines, both running at once) finish first. With a lane of its own and half the engine, the
    // small batch is done while the large one answers about as many (plus what ran while it validated).
    const meanwhile = largeWhenSmallAnswered - largeAtSubmit;
    expect(meanwhile).toBeLessThan(200);
    expect((await waitForBatch(other.openai, small.id)).status).toBe('completed');
    expect(done(await stack.openai.batches.retrieve(large.id))).toBeLessThan(2000);

    const finished = await waitForBatch(stack.openai, large.id, 120_000);
    expect(finished.request_counts).toMatchObject({ total: 2000, completed: 2000, failed: 0 });
    await expectEachLineOnce(stack.openai, finished, 2000);
  });
});
