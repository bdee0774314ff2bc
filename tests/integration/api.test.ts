// The API over real HTTP: auth, OpenAI-shaped errors, and the files round trip.
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { batchLines, uploadBatchFile, waitForBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('the API', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack.stop();
  });

  const raw = (path: string, init: RequestInit = {}, key: string | null = stack.apiKey): Promise<Response> =>
    fetch(`${stack.apiUrl}${path}`, {
      ...init,
      headers: {
        ...(key === null ? {} : { authorization: `Bearer ${key}` }),
        ...(init.headers as Record<string, string> | undefined),
      },
    });

  describe('auth', () => {
    it('answers 401 in OpenAI shape without a key or with a wrong one', async () => {
      const missing = await raw('/v1/batches', {}, null);
      expect(missing.status).toBe(401);
      expect(await missing.json()).toEqual({
        error: {
          message: expect.stringContaining("You didn't provide an API key") as unknown,
          type: 'authentication_error',
          param: null,
          code: null,
        },
      });
      const wrong = await raw('/v1/files', {}, 'sk-wrong-key-123456');
      expect(wrong.status).toBe(401);
      expect(((await wrong.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'invalid_api_key',
        message: 'Incorrect API key provided: sk-w…3456.',
      });

      const sdk = new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: 'sk-nope', maxRetries: 0 });
      await expect(sdk.batches.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    });

    it('serves the OpenAPI document without a key', async () => {
      const res = await raw('/openapi.json', {}, null);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as {
        paths: Record<string, unknown>;
        components: { schemas: Record<string, unknown> };
      };
      expect(Object.keys(doc.paths)).toEqual(
        expect.arrayContaining([
          '/v1/files',
          '/v1/files/{file_id}',
          '/v1/files/{file_id}/content',
          '/v1/batches',
          '/v1/batches/{batch_id}',
          '/v1/batches/{batch_id}/cancel',
          '/v1/batches/{batch_id}/retry',
          '/v1/models',
        ]),
      );
      expect(Object.keys(doc.components.schemas)).toEqual(
        expect.arrayContaining(['Batch', 'FileObject', 'ErrorResponse', 'CreateBatchRequest', 'RetryBatchRequest']),
      );
      // Generated from the same zod schemas that validate requests: the limits are in the document.
      expect(JSON.stringify(doc.components.schemas.Metadata)).toContain('512');
    });
  });

  describe('errors', () => {
    it('answers unknown ids and URLs with 404 in OpenAI shape', async () => {
      const batch = await raw('/v1/batches/batch_missing');
      expect(batch.status).toBe(404);
      expect(await batch.json()).toEqual({
        error: {
          message: 'No such Batch object: batch_missing',
          type: 'invalid_request_error',
          param: 'id',
          code: null,
        },
      });
      await expect(stack.openai.files.retrieve('file-missing')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      const unknown = await raw('/v1/nothing-here');
      expect(unknown.status).toBe(404);
      expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unknown_url');
    });

    it('refuses bad uploads with a clear error and keeps nothing', async () => {
      const notJsonl = stack.openai.files.create({
        file: await toFile(Buffer.from('a,b\n'), 'data.csv'),
        purpose: 'batch',
      });
      await expect(notJsonl).rejects.toMatchObject({ status: 400, code: 'invalid_file_format', param: 'file' });

      const form = new FormData();
      form.append('file', new Blob(['{}\n']), 'x.jsonl');
      const noPurpose = await raw('/v1/files', { method: 'POST', body: form });
      expect(noPurpose.status).toBe(400);
      expect(((await noPurpose.json()) as { error: { param: string; code: string } }).error).toMatchObject({
        param: 'purpose',
        code: 'missing_required_parameter',
      });

      const notMultipart = await raw('/v1/files', {
        method: 'POST',
        body: '{}',
        headers: { 'content-type': 'application/json' },
      });
      expect(notMultipart.status).toBe(415);

      expect((await stack.openai.files.list()).data.filter((f) => f.filename !== 'input.jsonl')).toEqual([]);
    });

    it('refuses a batch for a missing file or an unknown endpoint', async () => {
      await expect(
        stack.openai.batches.create({
          input_file_id: 'file-nope',
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        }),
      ).rejects.toMatchObject({ status: 400, param: 'input_file_id', code: 'invalid_request' });
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 1 }));
      const res = await raw('/v1/batches', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/images/generations', completion_window: '24h' }),
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string; type: string } }).error).toMatchObject({
        param: 'endpoint',
        type: 'invalid_request_error',
      });
      const malformed = await raw('/v1/batches', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"input_file_id": ',
      });
      expect(malformed.status).toBe(400);
      expect(((await malformed.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    });

    it('refuses to cancel a finished batch with 409', async () => {
      const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 2 }));
      const created = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      await waitForBatch(stack.openai, created.id);
      await expect(stack.openai.batches.cancel(created.id)).rejects.toMatchObject({
        status: 409,
        code: 'batch_not_cancellable',
      });
    });
  });

  describe('uploads', () => {
    it('survives a client that hangs up half-way through an upload, keeping nothing of it', async () => {
      const { request } = await import('node:http');
      const boundary = 'xyzBOUNDARY';
      const head = `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n`;
      await new Promise<void>((resolve) => {
        const req = request(`${stack.apiUrl}/v1/files`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${stack.apiKey}`,
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'content-length': String(10_000_000),
          },
        });
        req.on('error', () => {
          resolve();
        });
        req.write(head);
        req.write('x'.repeat(200_000));
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
      await new Promise((r) => setTimeout(r, 300));
      // Still up, and nothing half-written left behind.
      expect((await stack.openai.files.list()).data.some((f) => f.filename === 'cut.jsonl')).toBe(false);
      const { readdir } = await import('node:fs/promises');
      const left = await readdir(`${stack.config.paths.fileStoreDir}/uploads`);
      expect(left.filter((f) => f.includes('.partial'))).toEqual([]);
    });

    it('keeps any file name, and serves it back in a valid header', async () => {
      const name = 'données ✓ (v2).jsonl';
      const file = await stack.openai.files.create({
        file: await toFile(Buffer.from(batchLines({ model, count: 1 })), name),
        purpose: 'batch',
      });
      expect(file.filename).toBe(name);
      const res = await raw(`/v1/files/${file.id}/content`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-disposition')).toBe(
        `attachment; filename="donn_es _ (v2).jsonl"; filename*=UTF-8''${encodeURIComponent(name)}`,
      );
    });
  });

  describe('files', () => {
    it('stores, lists, retrieves, downloads and deletes a file', async () => {
      const content = batchLines({ model, count: 3 });
      const file = await uploadBatchFile(stack.openai, content, 'round-trip.jsonl');
      expect(file.bytes).toBe(Buffer.byteLength(content));
      expect(file.expires_at! - file.created_at).toBe(30 * 86400);
      expect(await stack.openai.files.retrieve(file.id)).toEqual(file);
      expect(await (await stack.openai.files.content(file.id)).text()).toBe(content);
      expect((await stack.openai.files.list()).data.map((f) => f.id)).toContain(file.id);
      expect(await stack.openai.files.delete(file.id)).toEqual({ id: file.id, object: 'file', deleted: true });
      await expect(stack.openai.files.retrieve(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    });
  });
});
