// The Files and Batches API through the official openai SDK: pagination, isolation between
// projects, the extensions (Idempotency-Key, retry, priority), limits, deletion and expiry.
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createKey } from '../../api/services/keys.js';
import { nowSeconds } from '../../lib/ids.js';
import type { RunningSimulator } from '../../simulator/server.js';
import {
  batchLines,
  expectedIds,
  outputsByCustomId,
  runBatch,
  submitBatch,
  uploadBatchFile,
  waitForBatch,
} from '../support/batches.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('the OpenAI Files and Batches API', () => {
  let stack: TestStack;
  let slowEngine: RunningSimulator;
  const model = inject('services').simulatorModel;
  const slowModel = 'slow-contract-model';

  beforeAll(async () => {
    // A second, slow model: four sequences at a time, a quarter second each.
    slowEngine = await startTestSimulator({
      models: [slowModel],
      maxNumSeqs: 4,
      tokenLatencyMs: 15,
      outputTokens: { min: 16, max: 16 },
    });
    stack = await startTestStack({
      engines: [inject('services').simulatorUrl, slowEngine.url],
      env: { SWEEP_INTERVAL_MS: '200', API_RATE_LIMIT_PER_MINUTE: '0' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await slowEngine.close();
  });

  describe('pagination', () => {
    it('pages through more than 100 files and batches with the SDK, newest first, none twice', async () => {
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 1 }), 'page.jsonl');
      const files = [file.id];
      for (let i = 0; i < 104; i++)
        files.push((await uploadBatchFile(stack.openai, batchLines({ model, count: 1 }), `page-${i}.jsonl`)).id);
      const batches: string[] = [];
      for (let i = 0; i < 105; i++) {
        batches.push(
          (
            await stack.openai.batches.create({
              input_file_id: file.id,
              endpoint: '/v1/chat/completions',
              completion_window: '24h',
            })
          ).id,
        );
      }

      const listedBatches: string[] = [];
      for await (const b of stack.openai.batches.list({ limit: 20 })) listedBatches.push(b.id);
      expect(listedBatches.slice(0, 105)).toEqual([...batches].reverse());
      expect(new Set(listedBatches).size).toBe(listedBatches.length);

      const firstPage = await stack.openai.batches.list({ limit: 100 });
      expect(firstPage.data).toHaveLength(100);
      expect(firstPage.has_more).toBe(true);

      const listedFiles: string[] = [];
      for await (const f of stack.openai.files.list({ limit: 30, order: 'asc', purpose: 'batch' }))
        listedFiles.push(f.id);
      const ours = listedFiles.filter((id) => files.includes(id));
      expect(ours).toEqual(files);
      expect(new Set(listedFiles).size).toBe(listedFiles.length);
      const newest = await stack.openai.files.list({ limit: 1, purpose: 'batch' });
      expect(newest.data[0]?.id).toBe(files.at(-1));

      await Promise.all(batches.map((id) => waitForBatch(stack.openai, id)));
    }, 180_000);
  });

  describe('isolation between projects', () => {
    it('lets one key see nothing of another project', async () => {
      const other = await createKey(stack, 'other-team', 'test');
      const them = new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: other.key, maxRetries: 0 });
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 2 }));
      const batch = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });

      await expect(them.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(them.files.content(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(them.files.delete(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(them.batches.retrieve(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(them.batches.cancel(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(
        them.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
      ).rejects.toMatchObject({
        status: 400,
        param: 'input_file_id',
      });
      expect((await them.files.list()).data).toEqual([]);
      expect((await them.batches.list()).data).toEqual([]);
      const done = await waitForBatch(stack.openai, batch.id);
      await expect(them.files.content(done.output_file_id!)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      // Models are the fleet's, not a project's.
      expect((await them.models.list()).data.map((m) => m.id)).toContain(model);
    });
  });

  describe('Idempotency-Key', () => {
    it('returns the same batch for a repeated create, and refuses the key for other parameters', async () => {
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 3 }));
      const params = {
        input_file_id: file.id,
        endpoint: '/v1/chat/completions' as const,
        completion_window: '24h' as const,
      };
      // The SDK sends no key of its own: the header is passed like any other.
      const once = { headers: { 'Idempotency-Key': 'create-once' } };
      const first = await stack.openai.batches.create(params, once);
      const again = await stack.openai.batches.create(params, once);
      expect(again.id).toBe(first.id);
      await expect(stack.openai.batches.create({ ...params, metadata: { x: 'y' } }, once)).rejects.toMatchObject({
        status: 400,
        code: 'idempotency_key_reused',
      });
      const listed = (await stack.openai.batches.list({ limit: 100 })).data.filter((b) => b.input_file_id === file.id);
      expect(listed).toHaveLength(1);
      await waitForBatch(stack.openai, first.id);
    });

    it('returns the same file for a repeated upload', async () => {
      const content = await toFile(Buffer.from(batchLines({ model, count: 1 })), 'once.jsonl');
      const once = { headers: { 'Idempotency-Key': 'upload-once' } };
      const first = await stack.openai.files.create({ file: content, purpose: 'batch' }, once);
      const again = await stack.openai.files.create(
        { file: await toFile(Buffer.from(batchLines({ model, count: 1 })), 'once.jsonl'), purpose: 'batch' },
        once,
      );
      expect(again.id).toBe(first.id);
    });

    it('answers 503 when the file store fails during an upload, and does not remember it for the key', async () => {
      // The store's folder for uploads made a plain file: the store cannot write, whatever the client sends.
      const uploads = path.join(stack.config.paths.fileStoreDir, 'uploads');
      await rm(uploads, { recursive: true, force: true });
      await writeFile(uploads, 'not a folder');
      const upload = () => {
        const form = new FormData();
        form.set('purpose', 'batch');
        form.set('file', new Blob([batchLines({ model, count: 1 })]), 'store-down.jsonl');
        return fetch(`${stack.apiUrl}/v1/files`, {
          method: 'POST',
          body: form,
          headers: { authorization: `Bearer ${stack.apiKey}`, 'idempotency-key': 'store-down' },
        });
      };
      try {
        const refused = await upload();
        expect(refused.status).toBe(503);
        expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('service_unavailable');
      } finally {
        await rm(uploads, { force: true });
      }
      const accepted = await upload();
      expect(accepted.status).toBe(200);
      expect(((await accepted.json()) as { id: string }).id).toMatch(/^file-/);
    });
  });

  describe('retry of failed lines', () => {
    it('makes a new batch of only the lines that failed, in input order, keeping endpoint and window', async () => {
      const count = 10;
      // Odd lines ask for more than the model's context: vLLM refuses them with 400.
      const content = batchLines({
        model,
        count,
        body: (i) => ({ model, messages: [{ role: 'user', content: `q${i}` }], max_tokens: i % 2 === 1 ? 100_000 : 8 }),
      });
      const first = await runBatch(stack, content);
      expect(first.request_counts).toEqual({ total: count, completed: 5, failed: 5 });

      const retried = (await stack.openai.post(`/batches/${first.id}/retry`, {
        body: { metadata: { attempt: '2' } },
      })) as OpenAI.Batches.Batch & { retry_of: string };
      expect(retried.retry_of).toBe(first.id);
      expect(retried.metadata).toEqual({ attempt: '2' });
      const input = await (await stack.openai.files.content(retried.input_file_id)).text();
      const lines = input
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { custom_id: string });
      expect(lines.map((l) => l.custom_id)).toEqual(['req-1', 'req-3', 'req-5', 'req-7', 'req-9']);
      expect(retried.endpoint).toBe(first.endpoint);
      expect(retried.completion_window).toBe(first.completion_window);
      // They ask for too much again, so they fail again: the retry ran exactly those five.
      const second = await waitForBatch(stack.openai, retried.id);
      expect(second.request_counts).toEqual({ total: 5, completed: 0, failed: 5 });

      // A batch with nothing failed has nothing to retry; a validation failure never ran.
      const clean = await runBatch(stack, batchLines({ model, count: 2 }));
      await expect(stack.openai.post(`/batches/${clean.id}/retry`)).rejects.toMatchObject({
        status: 409,
        code: 'nothing_to_retry',
      });
      const invalid = await runBatch(stack, 'not json\n');
      await expect(stack.openai.post(`/batches/${invalid.id}/retry`)).rejects.toMatchObject({
        status: 409,
        code: 'batch_not_retryable',
      });
    });

    it('re-runs the cancelled lines of a cancelled batch', async () => {
      // About four seconds of work: the cancel lands long before the end.
      const slow = await submitBatch(stack, batchLines({ model: slowModel, count: 60 }));
      await stack.openai.batches.cancel(slow.id);
      const cancelled = await waitForBatch(stack.openai, slow.id);
      expect(cancelled.status).toBe('cancelled');
      const failedBefore = cancelled.request_counts!.failed;
      expect(failedBefore).toBeGreaterThan(0);
      const retried = (await stack.openai.post(`/batches/${slow.id}/retry`)) as OpenAI.Batches.Batch;
      const done = await waitForBatch(stack.openai, retried.id);
      expect(done.request_counts).toEqual({ total: failedBefore, completed: failedBefore, failed: 0 });
      const firstRun = await outputsByCustomId(stack.openai, cancelled);
      const secondRun = await outputsByCustomId(stack.openai, done);
      expect([...firstRun.ok.map((l) => l.custom_id), ...secondRun.ok.map((l) => l.custom_id)].sort()).toEqual(
        expectedIds(60).sort(),
      );
    });
  });

  describe('limits and lifecycle of files', () => {
    it('refuses to delete the input of a running batch, and allows it once the batch is done', async () => {
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 100 }));
      const batch = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await expect(stack.openai.files.delete(file.id)).rejects.toMatchObject({ status: 409, code: 'file_in_use' });
      await waitForBatch(stack.openai, batch.id);
      expect((await stack.openai.files.delete(file.id)).deleted).toBe(true);
    });

    it('makes expired files disappear, bytes and all', async () => {
      const file = await stack.openai.files.create({
        file: await toFile(Buffer.from(batchLines({ model, count: 1 })), 'short-lived.jsonl'),
        purpose: 'batch',
        expires_after: { anchor: 'created_at', seconds: 3600 },
      });
      expect(file.expires_at! - file.created_at).toBe(3600);
      const stored = await stack.db
        .selectFrom('files')
        .select('storage_key')
        .where('id', '=', file.id)
        .executeTakeFirstOrThrow();
      // An hour passes.
      await stack.db
        .updateTable('files')
        .set({ expires_at: nowSeconds() - 1 })
        .where('id', '=', file.id)
        .execute();
      await expect(stack.openai.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      for (let i = 0; i < 50 && (await stack.store.size(stored.storage_key)) !== undefined; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(await stack.store.size(stored.storage_key)).toBeUndefined();
      expect(
        await stack.db.selectFrom('files').select('id').where('id', '=', file.id).executeTakeFirst(),
      ).toBeUndefined();
    });
  });

  describe('the batch object', () => {
    it('has every field, null file ids for empty files, and the metadata limits enforced', async () => {
      const created = await submitBatch(stack, batchLines({ model, count: 2 }));
      const batch = await waitForBatch(stack.openai, created.id);
      expect(Object.keys(batch).sort()).toEqual(
        [
          'cancelled_at',
          'cancelling_at',
          'completed_at',
          'completion_window',
          'created_at',
          'endpoint',
          'error_file_id',
          'errors',
          'expired_at',
          'expires_at',
          'failed_at',
          'finalizing_at',
          'id',
          'in_progress_at',
          'input_file_id',
          'metadata',
          'model',
          'object',
          'output_file_id',
          'priority',
          'request_counts',
          'retry_of',
          'status',
          'usage',
        ].sort(),
      );
      expect(batch.error_file_id).toBeNull();
      expect(batch.finalizing_at).not.toBeNull();

      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 1 }));
      const base = {
        input_file_id: file.id,
        endpoint: '/v1/chat/completions' as const,
        completion_window: '24h' as const,
      };
      const seventeen = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
      await expect(stack.openai.batches.create({ ...base, metadata: seventeen })).rejects.toMatchObject({
        status: 400,
        param: 'metadata',
      });
      await expect(stack.openai.batches.create({ ...base, metadata: { ['k'.repeat(65)]: 'v' } })).rejects.toMatchObject(
        { status: 400 },
      );
      await expect(stack.openai.batches.create({ ...base, metadata: { k: 'v'.repeat(513) } })).rejects.toMatchObject({
        status: 400,
        param: 'metadata.k',
      });
      const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 'v'.repeat(512)]));
      const ok = await stack.openai.batches.create({ ...base, metadata: sixteen });
      expect(ok.metadata).toEqual(sixteen);
      await waitForBatch(stack.openai, ok.id);
    });

    it('accepts completion windows other than 24h, and refuses nonsense', async () => {
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 1 }));
      const oneHour = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '1h' as '24h',
      });
      expect(oneHour.expires_at! - oneHour.created_at).toBe(3600);
      const week = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '7d' as '24h',
      });
      expect(week.expires_at! - week.created_at).toBe(7 * 86400);
      for (const bad of ['8d', '1s', 'soon', '']) {
        await expect(
          stack.openai.batches.create({
            input_file_id: file.id,
            endpoint: '/v1/chat/completions',
            completion_window: bad as '24h',
          }),
        ).rejects.toMatchObject({
          status: 400,
          param: 'completion_window',
        });
      }
      await Promise.all([oneHour.id, week.id].map((id) => waitForBatch(stack.openai, id)));
    });
  });
});

describe('rate limits', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack({ env: { API_RATE_LIMIT_PER_MINUTE: '5' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('answers 429 in OpenAI shape with Retry-After once a project exceeds its rate', async () => {
    for (let i = 0; i < 5; i++) await stack.openai.batches.list();
    const res = await fetch(`${stack.apiUrl}/v1/batches`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({ error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    await expect(stack.openai.batches.list()).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });
});

describe('the upload size limit', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;
  beforeAll(async () => {
    stack = await startTestStack({ env: { MAX_UPLOAD_BYTES: '4096' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('refuses a file over the size limit with 413 and keeps none of it', async () => {
    const big = batchLines({ model, count: 100 });
    expect(Buffer.byteLength(big)).toBeGreaterThan(4096);
    await expect(uploadBatchFile(stack.openai, big, 'big.jsonl')).rejects.toMatchObject({
      status: 413,
      code: 'file_too_large',
    });
    expect((await stack.openai.files.list()).data.some((f) => f.filename === 'big.jsonl')).toBe(false);
  });
});
