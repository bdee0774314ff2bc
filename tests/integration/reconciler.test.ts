// The reconciler ends batches the database says are live but whose workflow is gone: terminated by
// an operator mid-run (finalized from what is stored), or never started at all (failed, saying why).
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { persistResults } from '../../activities/results.js';
import { NEW_BATCH } from '../../api/services/batches.js';
import { newId, nowSeconds } from '../../lib/ids.js';
import type { RunningSimulator } from '../../simulator/server.js';
import {
  answeredRow,
  batchLines,
  expectEachLineOnce,
  insertRunningBatch,
  outputsByCustomId,
  submitBatch,
  uploadBatchFile,
  waitForBatch,
  waitForProgress,
} from '../support/batches.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('the reconciler', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const model = 'reconcile-model';

  beforeAll(async () => {
    // About 100 ms a request and 8 in flight: a 300-line batch runs for seconds.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 10, outputTokens: { min: 10, max: 10 } });
    stack = await startTestStack({
      engines: [engine.url],
      env: { RECONCILE_INTERVAL_MS: '500', RECONCILE_GRACE_SECONDS: '1', GPU_MAX_INFLIGHT: '8' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
  });

  it('finalizes a batch whose workflow was terminated mid-run: finished lines kept, the rest failed once', async () => {
    const count = 300;
    const created = await submitBatch(stack, batchLines({ model, count }));
    await waitForProgress(stack.openai, created.id, 40);
    await stack.temporal.workflow.getHandle(created.id).terminate('an operator pressed terminate');

    const batch = await waitForBatch(stack.openai, created.id, 30_000);
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data?.[0]).toMatchObject({ code: 'batch_aborted', line: null });
    expect(batch.errors?.data?.[0]?.message).toContain('its workflow is terminated');
    const { ok, failed } = await expectEachLineOnce(stack.openai, batch, count);
    expect(ok.length).toBeGreaterThanOrEqual(40);
    expect(failed.length).toBeGreaterThan(0);
    for (const line of failed) expect(line.error?.code).toBe('batch_aborted');
    expect(batch.request_counts).toEqual({ total: count, completed: ok.length, failed: failed.length });
    // It ran, so its unfinished lines can be retried: exactly those, in a new batch that runs them.
    const retried = (await stack.openai.post(`/batches/${batch.id}/retry`, { body: {} })) as OpenAI.Batches.Batch;
    const input = await (await stack.openai.files.content(retried.input_file_id)).text();
    const retriedIds = input
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
    expect(retriedIds.sort()).toEqual(failed.map((l) => l.custom_id).sort());
    expect((await waitForBatch(stack.openai, retried.id, 60_000)).request_counts).toEqual({
      total: failed.length,
      completed: failed.length,
      failed: 0,
    });
    // Its input is no longer held by a live batch.
    await expect(stack.openai.files.delete(batch.input_file_id)).resolves.toMatchObject({ deleted: true });
  });

  it('fails a batch that has no workflow at all, saying so', async () => {
    const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 3 }));
    const project = await stack.db
      .selectFrom('projects')
      .select('id')
      .where('name', '=', 'default')
      .executeTakeFirstOrThrow();
    const id = newId('batch_');
    // As if the API recorded it and died before starting its workflow.
    await stack.db
      .insertInto('batches')
      .values({
        ...NEW_BATCH,
        id,
        project_id: project.id,
        endpoint: '/v1/chat/completions',
        input_file_id: file.id,
        completion_window: '24h',
        created_at: nowSeconds() - 10,
        expires_at: nowSeconds() + 86_400,
      })
      .execute();
    const batch = await waitForBatch(stack.openai, id, 30_000);
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data).toEqual([
      {
        code: 'batch_aborted',
        message: 'The batch stopped before its requests ran: its workflow does not exist.',
        param: null,
        line: null,
      },
    ]);
  });

  it('completes a batch whose every request ran when its workflow ended before it could finalize', async () => {
    const count = 20;
    // As if the workflow had failed in finalize: every result stored, the batch still live, no files.
    const { batchId } = await insertRunningBatch(stack, { model, count, status: 'finalizing' });
    const created = { id: batchId };
    const answered = await persistResults(
      stack.db,
      stack.store,
      batchId,
      Array.from({ length: count }, (_, i) => answeredRow(batchId, i + 1, { choices: [] })),
    );
    expect(answered).toBe(count);
    const batch = await waitForBatch(stack.openai, created.id, 30_000);
    expect(batch.status).toBe('completed');
    expect(batch.errors).toBeNull();
    const { ok, counts } = await outputsByCustomId(stack.openai, batch);
    expect(ok).toHaveLength(20);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  });

  it('ends a cancelling batch whose workflow was terminated as cancelled', async () => {
    const created = await submitBatch(stack, batchLines({ model, count: 300 }));
    await waitForProgress(stack.openai, created.id, 10);
    await stack.temporal.workflow.getHandle(created.id).terminate('gone before it could cancel');
    await stack.db
      .updateTable('batches')
      .set({ status: 'cancelling', cancelling_at: nowSeconds() })
      .where('id', '=', created.id)
      .execute();
    const batch = await waitForBatch(stack.openai, created.id, 30_000);
    expect(batch.status).toBe('cancelled');
    const { counts } = await outputsByCustomId(stack.openai, batch);
    expect(counts.size).toBe(300);
  });
});
