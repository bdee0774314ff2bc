// How a running batch ends other than by finishing: cancel and expiry. And priority between batches.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import {
  batchLines,
  expectEachLineOnce,
  outputsByCustomId,
  submitBatch,
  waitForBatch,
  waitForProgress,
} from '../support/batches.js';
import { expectHistoriesReplay } from '../support/replay.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';
import { startWebhookReceiver, verified, type WebhookReceiver } from '../support/webhook-receiver.js';

describe('ending a running batch', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let receiver: WebhookReceiver;
  let secret: string;
  const model = 'lifecycle-model';

  /** The project's webhook hears how the batch ended, signed. */
  const announced = async (batchId: string): Promise<string | undefined> => {
    await receiver.waitFor(() => receiver.about(batchId).length > 0);
    return verified(secret, receiver.about(batchId)[0]!).type;
  };

  beforeAll(async () => {
    // Lines ask for 16 tokens: at 12.5 ms each, 200 ms a request, and with 8 in flight 40 a second.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 12.5, outputTokens: { min: 40, max: 40 } });
    stack = await startTestStack({ engines: [engine.url], env: { GPU_MAX_INFLIGHT: '8' } });
    receiver = await startWebhookReceiver();
    secret = ((await stack.openai.post('/webhooks', { body: { url: receiver.url } })) as { secret: string }).secret;
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
    await receiver.close();
  });

  it('cancels: cancelling at once, in-flight chunks stop within seconds, partial results kept', async () => {
    const count = 400;
    const created = await submitBatch(stack, batchLines({ model, count }));
    await waitForProgress(stack.openai, created.id, 60);
    const asked = Date.now();
    const cancelling = await stack.openai.batches.cancel(created.id);
    expect(cancelling.status).toBe('cancelling');
    expect(cancelling.cancelling_at).not.toBeNull();

    const batch = await waitForBatch(stack.openai, created.id);
    const stoppedAfter = Date.now() - asked;
    expect(batch.status).toBe('cancelled');
    expect(stoppedAfter).toBeLessThan(10_000);
    expect(batch.cancelled_at! - batch.cancelling_at!).toBeLessThanOrEqual(10);
    const sentAtEnd = engine.state.snapshot().received;
    await new Promise((r) => setTimeout(r, 1500));
    expect(engine.state.snapshot().received).toBe(sentAtEnd);

    const { ok, failed } = await expectEachLineOnce(stack.openai, batch, count);
    expect(batch.request_counts).toEqual({ total: count, completed: ok.length, failed: failed.length });
    expect(ok.length).toBeGreaterThanOrEqual(60);
    expect(ok.length).toBeLessThan(count);
    for (const line of failed) {
      expect(line.response).toBeNull();
      expect(line.error?.code).toBe('batch_cancelled');
    }
    // Cancelling again is harmless, and says where the batch is.
    expect((await stack.openai.batches.cancel(created.id)).status).toBe('cancelled');
    expect(await announced(created.id)).toBe('batch.cancelled');
  });

  it('ends a batch cancelled while validating a file that fails validation', async () => {
    // Big enough that validation is still reading when the cancel arrives.
    const lines = batchLines({ model, count: 50_000 }).trimEnd().split('\n');
    lines.push('not json');
    const created = await submitBatch(stack, `${lines.join('\n')}\n`);
    const cancel = await stack.openai.batches.cancel(created.id).catch((err: unknown) => err);
    const batch = await waitForBatch(stack.openai, created.id, 60_000);
    expect(['failed', 'cancelled']).toContain(batch.status);
    // The cancel was taken while validating, or refused because validation had already failed it.
    if (cancel instanceof Error) expect(cancel).toBeInstanceOf(OpenAI.ConflictError);
    else expect((cancel as { status: string }).status).toBe('cancelling');
    expect(batch.errors?.data?.at(-1)).toMatchObject({ code: 'invalid_json_line', line: 50_001 });
  });

  it('expires when the completion window closes, keeping what finished', async () => {
    const count = 2000;
    const created = await submitBatch(stack, batchLines({ model, count }), { completionWindow: '30s' });
    expect(created.expires_at! - created.created_at).toBe(30);
    const batch = await waitForBatch(stack.openai, created.id, 90_000);
    expect(batch.status).toBe('expired');
    expect(batch.expired_at).toBeGreaterThanOrEqual(created.expires_at!);
    expect(batch.expired_at! - created.expires_at!).toBeLessThanOrEqual(10);
    const { ok, failed, counts } = await outputsByCustomId(stack.openai, batch);
    expect(batch.request_counts).toEqual({ total: count, completed: ok.length, failed: failed.length });
    expect(ok.length).toBeGreaterThan(0);
    expect(counts.size).toBe(count);
    expect(new Set(failed.map((l) => l.error?.code))).toEqual(new Set(['batch_expired']));
    expect(await announced(created.id)).toBe('batch.expired');
  }, 120_000);

  it('leaves histories that replay deterministically', async () => {
    await expectHistoriesReplay(stack, 2);
  });
});

describe('priority between batches', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const model = 'priority-model';
  // The dev server's task queues have one partition, which orders all their tasks by priority. A
  // cluster's keep Temporal's four (deploy/temporal-cluster.yaml), each ordering its own: there the
  // urgent batch still ends first, but chunks of the other queued in other partitions run meanwhile,
  // so how far the other got is not bounded.
  const onePartition = !inject('services').temporalExternal;
  /** Requests the backlog batch had finished when the urgent one ended: far from all of them. */
  const expectBacklogWaited = (done: number): void => {
    expect(done).toBeGreaterThanOrEqual(0);
    expect(done).toBeLessThan(onePartition ? 200 : 300);
  };

  beforeAll(async () => {
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 5, outputTokens: { min: 20, max: 20 } });
    // One chunk at a time, and every chunk of a batch scheduled at once, so the others wait in the
    // task queue where priority orders them (with the default window, a batch of 3 chunks would
    // finish before one of 12 in any order).
    stack = await startTestStack({
      engines: [engine.url],
      // Large batches' lane (small batches have slots of their own).
      env: {
        GPU_MAX_INFLIGHT: '8',
        GPU_CONCURRENT_CHUNKS: '1',
        BATCH_MAX_PENDING_CHUNKS: '16',
        SMALL_BATCH_MAX_REQUESTS: '0',
      },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it('runs the chunks of a higher-priority batch before a backlog of lower-priority ones', async () => {
    const low = await submitBatch(stack, batchLines({ model, count: 300 }), { priority: 5 });
    await waitForProgress(stack.openai, low.id, 25);
    const high = await submitBatch(stack, batchLines({ model, count: 75 }), { priority: 1 });
    expect((high as unknown as { priority: number }).priority).toBe(1);
    const finished: string[] = [];
    let lowWhenHighEnded = -1;
    await Promise.all(
      [low, high].map(async (b) => {
        await waitForBatch(stack.openai, b.id);
        finished.push(b.id);
        if (b.id === high.id) {
          const counts = (await stack.openai.batches.retrieve(low.id)).request_counts;
          lowWhenHighEnded = (counts?.completed ?? 0) + (counts?.failed ?? 0);
        }
      }),
    );
    expect(finished).toEqual([high.id, low.id]);
    // And the low batch was still far from done when the high one finished: its backlog waited.
    expectBacklogWaited(lowWhenHighEnded);
  });

  it('runs a batch with a short completion window before 24 h batches queued earlier, without a priority of its own', async () => {
    const late = await submitBatch(stack, batchLines({ model, count: 300 }));
    await waitForProgress(stack.openai, late.id, 25);
    const soon = await submitBatch(stack, batchLines({ model, count: 75 }), { completionWindow: '1h' });
    // Its own priority stays unset: the window is what made it urgent.
    expect((soon as unknown as { priority: number | null }).priority).toBeNull();
    await waitForBatch(stack.openai, soon.id);
    const counts = (await stack.openai.batches.retrieve(late.id)).request_counts;
    expectBacklogWaited((counts?.completed ?? 0) + (counts?.failed ?? 0));
    await waitForBatch(stack.openai, late.id);
  });
});
