// One batch through every layer, driven by the official openai SDK: upload → create → BatchWorkflow
// → chunk activities on the GPU worker → simulator → output file → retrieve and download.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { batchLines, fileLines, uploadBatchFile, waitForBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('a batch end to end with the openai SDK', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('completes with correct counts, usage and OpenAI-format output lines in input order', async () => {
    const count = 120;
    const file = await uploadBatchFile(stack.openai, batchLines({ model, count }));
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'input.jsonl', status: 'processed' });

    const created = await stack.openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { suite: 'e2e' },
    });
    expect(created.status).toBe('validating');
    expect(created.expires_at! - created.created_at).toBe(86400);

    const batch = await waitForBatch(stack.openai, created.id);
    expect(batch.status).toBe('completed');
    expect(batch.model).toBe(model);
    expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
    expect(batch.error_file_id).toBeNull();
    expect(batch.completed_at).toBeGreaterThanOrEqual(batch.in_progress_at!);
    expect(batch.metadata).toEqual({ suite: 'e2e' });
    expect(batch.usage!.input_tokens).toBeGreaterThan(0);
    expect(batch.usage!.total_tokens).toBe(batch.usage!.input_tokens + batch.usage!.output_tokens);

    const lines = await fileLines(stack.openai, batch.output_file_id);
    expect(lines.map((l) => l.custom_id)).toEqual(Array.from({ length: count }, (_, i) => `req-${i}`));
    for (const line of lines) {
      expect(line.id).toMatch(/^batch_req_/);
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(200);
      expect(line.response?.body).toMatchObject({ object: 'chat.completion', model });
    }
    const outputTokens = lines.reduce(
      (sum, l) => sum + (l.response?.body.usage as { completion_tokens: number }).completion_tokens,
      0,
    );
    expect(batch.usage!.output_tokens).toBe(outputTokens);

    const output = await stack.openai.files.retrieve(batch.output_file_id!);
    expect(output.purpose).toBe('batch_output');
  });

  it('puts requests the engine refuses in the error file with the engine status and body', async () => {
    const lines = batchLines({
      model,
      count: 6,
      // The simulator's context is 4096 tokens: odd lines ask for more output than the whole context,
      // which vLLM refuses (a prompt + max_tokens over it would be served, cut to the room left).
      body: (i) => ({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: i % 2 === 1 ? 100_000 : 8 }),
    });
    const file = await uploadBatchFile(stack.openai, lines);
    const created = await stack.openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const batch = await waitForBatch(stack.openai, created.id);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 6, completed: 3, failed: 3 });

    const errors = await fileLines(stack.openai, batch.error_file_id);
    expect(errors.map((l) => l.custom_id)).toEqual(['req-1', 'req-3', 'req-5']);
    for (const line of errors) {
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(400);
      expect(line.response?.body).toMatchObject({ error: { type: 'BadRequestError', param: 'max_tokens', code: 400 } });
      expect(JSON.stringify(line.response?.body)).toContain(
        'max_tokens=100000 cannot be greater than max_model_len=4096',
      );
    }
    expect((await fileLines(stack.openai, batch.output_file_id)).map((l) => l.custom_id)).toEqual([
      'req-0',
      'req-2',
      'req-4',
    ]);

    // Each refused request is also a dead letter, with the engine's answer to every attempt.
    const letters = await stack.db
      .selectFrom('dead_letters')
      .selectAll()
      .where('batch_id', '=', batch.id)
      .orderBy('line')
      .execute();
    expect(letters.map((l) => [l.custom_id, l.attempts])).toEqual([
      ['req-1', 1],
      ['req-3', 1],
      ['req-5', 1],
    ]);
    expect(letters[0]?.errors).toEqual([
      { at: expect.any(String), status: 400, message: expect.stringContaining('cannot be greater than max_model_len') },
    ]);
  });

  it('lists the live models', async () => {
    const models = await stack.openai.models.list();
    expect(models.data.map((m) => m.id)).toContain(model);
  });
});
