// A batch at OpenAI's size limit: 50,000 requests must stay well under 1,000 history events.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { batchLines, submitBatch, waitForBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('a 50,000-request batch', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    // The production chunk size, so the history is what a real batch of this size would make.
    stack = await startTestStack({ env: { BATCH_CHUNK_SIZE: '500' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('completes, with fewer than 1,000 events in its workflow history', async () => {
    const count = 50_000;
    const created = await submitBatch(stack, batchLines({ model, count }));
    // Room to spare: this checks the history's size, not speed (a loaded CI machine is slower).
    const batch = await waitForBatch(stack.openai, created.id, 540_000);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
    const history = await stack.temporal.workflow.getHandle(created.id).fetchHistory();
    const events = history.events?.length ?? 0;
    expect(events).toBeLessThan(1000);
    console.log(`50,000 requests: ${events} history events`);
  }, 600_000);
});
