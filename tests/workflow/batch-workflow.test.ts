// BatchWorkflow against the real Temporal dev server: what lands in history, what operators see,
// and that recorded histories replay deterministically against the current workflow code.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { progressQuery, type BatchProgress } from '../../workflows/messages.js';
import {
  BatchModelKey,
  BatchProjectKey,
  BatchRequestCountKey,
  BatchStatusKey,
} from '../../workflows/search-attributes.js';
import { batchLines, uploadBatchFile, waitForBatch } from '../support/batches.js';
import { expectHistoriesReplay } from '../support/replay.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('BatchWorkflow', () => {
  let stack: TestStack;
  let slowEngine: RunningSimulator;
  const { simulatorModel: model } = inject('services');

  beforeAll(async () => {
    // A second model served by a slow engine, so a batch stays running long enough to watch.
    slowEngine = await startTestSimulator({
      models: ['slow-model'],
      maxNumSeqs: 4,
      tokenLatencyMs: 20,
      outputTokens: { min: 10, max: 10 },
    });
    stack = await startTestStack({ engines: [inject('services').simulatorUrl, slowEngine.url] });
  });
  afterAll(async () => {
    await stack.stop();
    await slowEngine.close();
  });

  async function submit(content: string, window = '24h'): Promise<string> {
    const file = await uploadBatchFile(stack.openai, content);
    return (
      await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        // An extension: any window from 30 s to 7 days.
        completion_window: window as '24h',
      })
    ).id;
  }

  it('keeps request bodies and results out of history, which stays small', async () => {
    const count = 500;
    const id = await submit(
      batchLines({
        model,
        count,
        body: (i) => ({ model, messages: [{ role: 'user', content: `secret-prompt-${i}` }] }),
      }),
    );
    const batch = await waitForBatch(stack.openai, id);
    expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });

    const history = await stack.temporal.workflow.getHandle(id).fetchHistory();
    const events = history.events ?? [];
    const chunks = Math.ceil(count / stack.config.batch.chunkSize);
    // About six events a chunk (scheduled, started, completed, and a workflow task) plus a fixed few,
    // and as many for each time the files are written ahead (an activity, often its own workflow task).
    expect(events.length).toBeLessThan(chunks * 7 + 40 + 6 * stack.config.batch.outputDraftsPerBatch);
    const serialized = JSON.stringify(history);
    expect(serialized).not.toContain('secret-prompt');
    expect(serialized).not.toContain('chat.completion');
  });

  it('shows status, model, project and size as search attributes, and the outcome in its memo', async () => {
    const id = await submit(batchLines({ model, count: 30 }));
    await waitForBatch(stack.openai, id);
    // The API's status is the database's; the workflow records its last upsert a moment later.
    const handle = stack.temporal.workflow.getHandle(id);
    await handle.result();
    const description = await handle.describe();
    const attrs = description.typedSearchAttributes;
    expect(attrs.get(BatchStatusKey)).toBe('completed');
    expect(attrs.get(BatchModelKey)).toBe(model);
    expect(attrs.get(BatchProjectKey)).toBe('default');
    expect(attrs.get(BatchRequestCountKey)).toBe(30);
    expect(description.memo).toMatchObject({ completed: 30, failed: 0 });

    // Visibility is eventually consistent: give the list a moment to catch up.
    let listed: string[] = [];
    for (let i = 0; i < 50 && listed.length === 0; i++) {
      listed = [];
      for await (const wf of stack.temporal.workflow.list({
        query: `BatchStatus = 'completed' AND BatchModel = '${model}' AND WorkflowId = '${id}'`,
      }))
        listed.push(wf.workflowId);
      if (listed.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(listed).toEqual([id]);
  });

  it('answers a progress query while running', async () => {
    const id = await submit(batchLines({ model: 'slow-model', count: 60 }));
    const handle = stack.temporal.workflow.getHandle(id);
    let progress: BatchProgress | undefined;
    for (let i = 0; i < 100; i++) {
      progress = await handle.query(progressQuery);
      if (progress.phase === 'in_progress' && progress.chunks.running > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(progress).toMatchObject({ phase: 'in_progress', requests: 60, chunks: { total: 3 } });
    const running = await stack.openai.batches.retrieve(id);
    expect(running.status).toBe('in_progress');
    expect((await handle.describe()).typedSearchAttributes.get(BatchStatusKey)).toBe('in_progress');
    await waitForBatch(stack.openai, id);
    // The batch is completed in Postgres by the finalize step, a moment before its workflow hears back.
    await handle.result();
    const done = await handle.query(progressQuery);
    expect(done).toMatchObject({
      phase: 'done',
      completed: 60,
      failed: 0,
      chunks: { done: 3, running: 0 },
      late: false,
    });
    // The estimate and the window it is held against, both in time.
    expect(Date.parse(done.eta ?? '')).toBeLessThan(Date.parse(done.expiresAt ?? ''));
    expect(Date.parse(done.expiresAt ?? '') - Date.now()).toBeGreaterThan(23 * 3600 * 1000);
  });

  it('shows early that a batch will not finish within its completion window', async () => {
    // 20 requests a second on the slow engine: 1,200 lines take a minute, the window is 30 s.
    const id = await submit(batchLines({ model: 'slow-model', count: 1200 }), '30s');
    const handle = stack.temporal.workflow.getHandle(id);
    let progress = await handle.query(progressQuery);
    for (let i = 0; i < 400 && progress.eta === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
      progress = await handle.query(progressQuery);
    }
    // Estimated once the first wave of chunks has ended.
    expect(progress.chunks.done).toBeGreaterThan(0);
    expect(progress).toMatchObject({ phase: 'in_progress', late: true });
    expect(Date.parse(progress.eta ?? '')).toBeGreaterThan(Date.parse(progress.expiresAt ?? ''));
    await stack.openai.batches.cancel(id);
    expect((await waitForBatch(stack.openai, id)).status).toBe('cancelled');
  });

  it('ends failed, with the reason searchable, when the file does not validate', async () => {
    const id = await submit('{"custom_id": "a"}\nnot json\n');
    const batch = await waitForBatch(stack.openai, id);
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data?.map((e) => [e.code, e.line])).toEqual([
      ['missing_required_parameter', 1],
      ['missing_required_parameter', 1],
      ['missing_required_parameter', 1],
      ['invalid_json_line', 2],
    ]);
    expect(batch.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
    const handle = stack.temporal.workflow.getHandle(id);
    expect(await handle.result()).toEqual({ status: 'failed', errors: 4 });
    expect((await handle.describe()).typedSearchAttributes.get(BatchStatusKey)).toBe('failed');
  });

  it('replays every recorded history against the current code without non-determinism', async () => {
    await expectHistoriesReplay(stack, 4);
  });
});
