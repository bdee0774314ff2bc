// A corpus of malformed batch files and requests, each with the answer OpenAI's contract calls for:
// the right status, code, line and param, always in OpenAI's error shape, never a 500.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { batchLines, runBatch, waitForBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const chat = (
  id: string,
  over: Record<string, unknown> = {},
  body: Record<string, unknown> = {},
  model = 'sim-test',
): string =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content: 'hi' }], ...body },
    ...over,
  });

type Expected = [code: string, line: number | null, param: string | null];

const BAD_FILES: { name: string; content: string | Buffer; endpoint?: '/v1/embeddings'; errors: Expected[] }[] = [
  {
    name: 'a line that is not JSON',
    content: `${chat('a')}\n{"custom_id": "b",\n`,
    errors: [['invalid_json_line', 2, null]],
  },
  { name: 'JSON followed by garbage', content: `${chat('a')} trailing\n`, errors: [['invalid_json_line', 1, null]] },
  { name: 'a JSON array instead of an object', content: '[1, 2, 3]\n', errors: [['invalid_json_line', 1, null]] },
  {
    name: 'bytes that are not UTF-8 text',
    content: Buffer.from([0xff, 0xfe, 0x7b, 0x7d, 0x0a]),
    errors: [['invalid_json_line', 1, null]],
  },
  {
    name: 'a repeated custom_id',
    content: [chat('a'), chat('b'), chat('a')].join('\n'),
    errors: [['duplicate_custom_id', 3, 'custom_id']],
  },
  {
    name: 'a missing custom_id',
    content: JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'sim-test' } }),
    errors: [['missing_required_parameter', 1, 'custom_id']],
  },
  { name: 'an empty custom_id', content: chat(''), errors: [['missing_required_parameter', 1, 'custom_id']] },
  { name: 'a NUL character in a custom_id', content: chat('a\u0000b'), errors: [['invalid_request', 1, 'custom_id']] },
  {
    name: 'a NUL character in the model',
    content: chat('a', {}, {}, 'sim\u0000test'),
    errors: [['invalid_request', 1, 'body.model']],
  },
  {
    name: 'a url other than the endpoint',
    content: chat('a', { url: '/v1/completions' }),
    errors: [['invalid_url', 1, 'url']],
  },
  { name: 'a missing url', content: chat('a', { url: undefined }), errors: [['missing_required_parameter', 1, 'url']] },
  {
    name: 'a method other than POST',
    content: chat('a', { method: 'GET' }),
    errors: [['invalid_request', 1, 'method']],
  },
  {
    name: 'a missing body',
    content: chat('a', { body: undefined }),
    errors: [['missing_required_parameter', 1, 'body']],
  },
  {
    name: 'a body that is not an object',
    content: chat('a', { body: 'hello' }),
    errors: [['missing_required_parameter', 1, 'body']],
  },
  {
    name: 'a missing model',
    content: chat('a', {}, { model: undefined }),
    errors: [['missing_required_parameter', 1, 'body.model']],
  },
  {
    name: 'two models in one file',
    content: [chat('a'), chat('b', {}, {}, 'other-model')].join('\n'),
    errors: [['mismatched_model', 2, 'body.model']],
  },
  {
    name: 'a streaming request',
    content: [chat('a'), chat('b', {}, { stream: true })].join('\n'),
    errors: [['streaming_unsupported', 2, 'body.stream']],
  },
  {
    name: 'a model no GPU worker serves',
    content: [chat('a', {}, {}, 'gpt-9'), chat('b', {}, {}, 'gpt-9')].join('\n'),
    errors: [['model_not_found', 1, 'body.model']],
  },
  { name: 'an empty file', content: '', errors: [['empty_batch', null, null]] },
  { name: 'a file of blank lines', content: '\n   \n\t\n', errors: [['empty_batch', null, null]] },
  {
    name: 'more requests than the limit',
    content: Array.from({ length: 21 }, (_, i) => chat(`r${i}`)).join('\n'),
    errors: [['too_many_tasks', 21, null]],
  },
  {
    name: 'more embedding inputs than the limit',
    endpoint: '/v1/embeddings',
    content: [0, 1, 2]
      .map((i) =>
        JSON.stringify({
          custom_id: `e${i}`,
          method: 'POST',
          url: '/v1/embeddings',
          body: { model: 'sim-test', input: Array(8).fill('x') },
        }),
      )
      .join('\n'),
    errors: [['too_many_tasks', 3, null]],
  },
  {
    name: 'many problems at once, each reported',
    content: ['nope', chat('a'), chat('a'), chat('b', { url: '/v1/x' }), chat('c', {}, { stream: true })].join('\n'),
    errors: [
      ['invalid_json_line', 1, null],
      ['duplicate_custom_id', 3, 'custom_id'],
      ['invalid_url', 4, 'url'],
      ['streaming_unsupported', 5, 'body.stream'],
    ],
  },
];

const GOOD_FILES: { name: string; content: string | Buffer }[] = [
  { name: 'Windows line endings', content: [chat('a'), chat('b')].join('\r\n') },
  {
    name: 'a byte-order mark and no final newline',
    content: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(chat('a'))]),
  },
  { name: 'blank lines between requests', content: `\n${chat('a')}\n\n\n${chat('b')}\n\n` },
];

describe('bad input', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    stack = await startTestStack({ env: { BATCH_MAX_REQUESTS: '20', API_RATE_LIMIT_PER_MINUTE: '0' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  describe('batch files that fail validation with line-numbered errors', () => {
    it.each(BAD_FILES)('$name', async ({ content, endpoint, errors }) => {
      const file = await stack.openai.files.create({ file: new File([content], 'bad.jsonl'), purpose: 'batch' });
      const created = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: endpoint ?? '/v1/chat/completions',
        completion_window: '24h',
      });
      expect(created.status).toBe('validating');
      const batch = await waitForBatch(stack.openai, created.id);
      expect(batch.status).toBe('failed');
      expect(batch.failed_at).not.toBeNull();
      expect(batch.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
      expect(batch.output_file_id).toBeNull();
      expect(batch.errors?.object).toBe('list');
      expect(batch.errors?.data?.map((e) => [e.code, e.line ?? null, e.param ?? null])).toEqual(errors);
      for (const e of batch.errors?.data ?? []) expect(e.message?.length).toBeGreaterThan(10);
    });
  });

  describe('batch files that look odd but are fine', () => {
    it.each(GOOD_FILES)('$name', async ({ content }) => {
      const file = await stack.openai.files.create({ file: new File([content], 'fine.jsonl'), purpose: 'batch' });
      const batch = await waitForBatch(
        stack.openai,
        (
          await stack.openai.batches.create({
            input_file_id: file.id,
            endpoint: '/v1/chat/completions',
            completion_window: '24h',
          })
        ).id,
      );
      expect(batch.status).toBe('completed');
      expect(batch.request_counts?.failed).toBe(0);
    });
  });

  describe('requests refused with OpenAI errors', () => {
    let fileId: string;
    beforeAll(async () => {
      fileId = (
        await stack.openai.files.create({
          file: new File([batchLines({ model, count: 1 })], 'ok.jsonl'),
          purpose: 'batch',
        })
      ).id;
    });

    const json = (body: unknown): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const create = (over: Record<string, unknown>): RequestInit =>
      json({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', ...over });
    const form = (parts: Record<string, string | [string, string]>): RequestInit => {
      const data = new FormData();
      for (const [k, v] of Object.entries(parts)) {
        if (Array.isArray(v)) data.append(k, new Blob([v[1]]), v[0]);
        else data.append(k, v);
      }
      return { method: 'POST', body: data };
    };

    type Case = {
      name: string;
      path: string;
      init?: () => RequestInit;
      auth?: string | null;
      status: number;
      code?: string | null;
      param?: string | null;
    };
    const cases: Case[] = [
      { name: 'no API key', path: '/v1/files', auth: null, status: 401, code: null },
      { name: 'a non-Bearer Authorization', path: '/v1/files', auth: 'Basic dXNlcjpwYXNz', status: 401, code: null },
      { name: 'an unknown key', path: '/v1/files', auth: 'Bearer sk-unknown', status: 401, code: 'invalid_api_key' },
      { name: 'a body that is not JSON', path: '/v1/batches', init: () => json('{"input_file_id": '), status: 400 },
      { name: 'a JSON array body', path: '/v1/batches', init: () => json([]), status: 400 },
      {
        name: 'an empty JSON object',
        path: '/v1/batches',
        init: () => json({}),
        status: 400,
        code: 'missing_required_parameter',
        param: 'input_file_id',
      },
      {
        name: 'a numeric input_file_id',
        path: '/v1/batches',
        init: () => create({ input_file_id: 5 }),
        status: 400,
        code: 'invalid_value',
        param: 'input_file_id',
      },
      {
        name: 'an unknown file',
        path: '/v1/batches',
        init: () => create({ input_file_id: 'file-none' }),
        status: 400,
        code: 'invalid_request',
        param: 'input_file_id',
      },
      {
        name: 'an unsupported endpoint',
        path: '/v1/batches',
        init: () => create({ endpoint: '/v1/moderations' }),
        status: 400,
        param: 'endpoint',
      },
      {
        name: 'a zero completion window',
        path: '/v1/batches',
        init: () => create({ completion_window: '0h' }),
        status: 400,
        param: 'completion_window',
      },
      {
        name: 'a numeric completion window',
        path: '/v1/batches',
        init: () => create({ completion_window: 24 }),
        status: 400,
        param: 'completion_window',
      },
      {
        name: 'metadata that is a list',
        path: '/v1/batches',
        init: () => create({ metadata: ['a'] }),
        status: 400,
        param: 'metadata',
      },
      {
        name: 'a metadata value that is a number',
        path: '/v1/batches',
        init: () => create({ metadata: { a: 1 } }),
        status: 400,
        param: 'metadata.a',
      },
      {
        name: 'a priority out of range',
        path: '/v1/batches',
        init: () => create({ priority: 9 }),
        status: 400,
        param: 'priority',
      },
      {
        name: 'a priority that is a word',
        path: '/v1/batches',
        init: () => create({ priority: 'high' }),
        status: 400,
        param: 'priority',
      },
      {
        name: 'output_expires_after too short',
        path: '/v1/batches',
        init: () => create({ output_expires_after: { anchor: 'created_at', seconds: 5 } }),
        status: 400,
        param: 'output_expires_after.seconds',
      },
      {
        name: 'a NUL character in metadata',
        path: '/v1/batches',
        init: () => create({ metadata: { a: 'x\u0000y' } }),
        status: 400,
        param: 'metadata.a',
      },
      {
        name: 'a NUL character in input_file_id',
        path: '/v1/batches',
        init: () => create({ input_file_id: 'file-\u0000' }),
        status: 400,
        param: 'input_file_id',
      },
      { name: 'a NUL character in a cursor', path: '/v1/files?after=%00', status: 400, param: 'after' },
      { name: 'a NUL character in a purpose filter', path: '/v1/files?purpose=%00', status: 400, param: 'purpose' },
      {
        name: 'a huge metadata value',
        path: '/v1/batches',
        init: () => create({ metadata: { a: 'x'.repeat(1_000_000) } }),
        status: 400,
        param: 'metadata.a',
      },
      {
        name: 'an over-long Idempotency-Key',
        path: '/v1/batches',
        init: () => ({
          ...create({}),
          headers: { 'content-type': 'application/json', 'idempotency-key': 'k'.repeat(300) },
        }),
        status: 400,
        param: 'Idempotency-Key',
      },
      { name: 'a batch page of zero', path: '/v1/batches?limit=0', status: 400, param: 'limit' },
      { name: 'a batch page over 100', path: '/v1/batches?limit=101', status: 400, param: 'limit' },
      { name: 'a page size that is a word', path: '/v1/files?limit=many', status: 400, param: 'limit' },
      { name: 'an unknown order', path: '/v1/files?order=sideways', status: 400, param: 'order' },
      {
        name: 'a cursor that is not a file',
        path: '/v1/files?after=file-none',
        status: 400,
        code: 'invalid_value',
        param: 'after',
      },
      {
        name: 'a cursor that is not a batch',
        path: '/v1/batches?after=batch_none',
        status: 400,
        code: 'invalid_value',
        param: 'after',
      },
      { name: 'an unknown batch', path: '/v1/batches/batch_none', status: 404, param: 'id' },
      { name: 'a very long batch id', path: `/v1/batches/${'b'.repeat(10_000)}`, status: 404 },
      { name: 'an id with a NUL byte', path: '/v1/batches/%00', status: 404 },
      {
        name: 'cancelling an unknown batch',
        path: '/v1/batches/batch_none/cancel',
        init: () => ({ method: 'POST' }),
        status: 404,
      },
      {
        name: 'retrying an unknown batch',
        path: '/v1/batches/batch_none/retry',
        init: () => ({ method: 'POST' }),
        status: 404,
      },
      { name: 'an unknown file', path: '/v1/files/file-none/content', status: 404 },
      {
        name: 'a method the route does not have',
        path: '/v1/batches/batch_none',
        init: () => ({ method: 'DELETE' }),
        status: 404,
        code: 'unknown_url',
      },
      {
        name: 'an upload that is not multipart',
        path: '/v1/files',
        init: () => json({ purpose: 'batch' }),
        status: 415,
      },
      {
        name: 'an upload without a file',
        path: '/v1/files',
        init: () => form({ purpose: 'batch' }),
        status: 400,
        code: 'missing_required_parameter',
        param: 'file',
      },
      {
        name: 'an upload without a purpose',
        path: '/v1/files',
        init: () => form({ file: ['x.jsonl', '{}'] }),
        status: 400,
        code: 'missing_required_parameter',
        param: 'purpose',
      },
      {
        name: 'an upload for fine-tuning',
        path: '/v1/files',
        init: () => form({ purpose: 'fine-tune', file: ['x.jsonl', '{}'] }),
        status: 400,
        code: 'invalid_value',
        param: 'purpose',
      },
      {
        name: 'an upload that is not .jsonl',
        path: '/v1/files',
        init: () => form({ purpose: 'batch', file: ['x.txt', '{}'] }),
        status: 400,
        code: 'invalid_file_format',
        param: 'file',
      },
      {
        name: 'an upload expiring too soon',
        path: '/v1/files',
        init: () =>
          form({
            purpose: 'batch',
            'expires_after[anchor]': 'created_at',
            'expires_after[seconds]': '10',
            file: ['x.jsonl', '{}'],
          }),
        status: 400,
        param: 'expires_after[seconds]',
      },
      {
        name: 'a multipart body with a broken boundary',
        path: '/v1/files',
        init: () => ({
          method: 'POST',
          headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
          body: '--abc\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch',
        }),
        status: 400,
      },
    ];

    it.each(cases)('$name → $status', async ({ path, init, auth, status, code, param }) => {
      const request = init?.() ?? {};
      const authorization = auth === undefined ? `Bearer ${stack.apiKey}` : auth;
      const headers = {
        ...(request.headers as Record<string, string> | undefined),
        ...(authorization === null ? {} : { authorization }),
      };
      const res = await fetch(`${stack.apiUrl}${path}`, { ...request, headers });
      const body = (await res.json()) as {
        error: { message: string; type: string; param: string | null; code: string | null };
      };
      expect(res.status).toBe(status);
      expect(Object.keys(body)).toEqual(['error']);
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(body.error.message.length).toBeGreaterThan(5);
      expect(typeof body.error.type).toBe('string');
      if (code !== undefined) expect(body.error.code).toBe(code);
      if (param !== undefined) expect(body.error.param).toBe(param);
    });

    it('answers randomly mangled create requests with 200 or a 400 in OpenAI shape, never a 500', async () => {
      let seed = 42;
      const random = (): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      const values: unknown[] = [
        null,
        true,
        0,
        -1,
        1.5,
        1e308,
        '',
        'x',
        '24h',
        '/v1/chat/completions',
        fileId,
        [],
        [1],
        {},
        { a: 'b' },
        { a: { b: 'c' } },
        '\u0000',
        '🙂'.repeat(100),
      ];
      const fields = [
        'input_file_id',
        'endpoint',
        'completion_window',
        'metadata',
        'output_expires_after',
        'priority',
        'extra',
      ];
      const created: string[] = [];
      for (let i = 0; i < 150; i++) {
        const body: Record<string, unknown> = {
          input_file_id: fileId,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        };
        for (const field of fields) if (random() < 0.3) body[field] = values[Math.floor(random() * values.length)];
        const res = await fetch(`${stack.apiUrl}/v1/batches`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.apiKey}` },
          body: JSON.stringify(body),
        });
        const answer = (await res.json()) as { id?: string; error?: { type: string } };
        expect([200, 400], JSON.stringify(body)).toContain(res.status);
        if (res.status === 400) expect(answer.error?.type).toBe('invalid_request_error');
        else created.push(answer.id!);
      }
      await Promise.all(created.map((id) => waitForBatch(stack.openai, id)));
    }, 120_000);
  });
});

describe('validation of a large file', () => {
  let stack: TestStack;
  const model = inject('services').simulatorModel;
  beforeAll(async () => {
    stack = await startTestStack({ env: { VALIDATION_MAX_ERRORS: '100' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('reports errors deep in a 50,000-line file with their line numbers, up to the cap', async () => {
    const lines = batchLines({ model, count: 50_000 }).trimEnd().split('\n');
    const broken = [1234, 25_000, 49_999];
    for (const n of broken) lines[n - 1] = '{"custom_id": broken';
    const batch = await runBatch(stack, `${lines.join('\n')}\n`, 60_000);
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data?.map((e) => [e.code, e.line])).toEqual(broken.map((n) => ['invalid_json_line', n]));
  });
});
