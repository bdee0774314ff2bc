// A corpus of hostile and broken input, sent to the API as a process of its own: each request gets
// its 4xx in OpenAI's error shape (never a 5xx, never a bare status line), each hostile file a batch
// that fails within seconds with line-numbered errors, and afterwards the same process is still up
// and still runs a good batch.
import getPort from 'get-port';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { batchLines, runBatch } from '../support/batches.js';
import { spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { exchange } from '../support/raw-http.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const MODEL = 'sim-test';
const MAX_LINE_BYTES = 64 * 1024;

const chat = (id: unknown, over: Record<string, unknown> = {}, body: Record<string, unknown> = {}): string =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...body },
    ...over,
  });
const deep = (n: number, leaf = '1'): string => `${'['.repeat(n)}${leaf}${']'.repeat(n)}`;

interface RequestCase {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Sent over a raw socket as is (request line and headers included), for what fetch will not send. */
  raw?: (key: string) => string | Buffer;
  status: number;
  code?: string;
}

/** A multipart body by hand: the parts, and whether the closing boundary is there. */
function multipart(
  boundary: string,
  parts: { name: string; filename?: string; content: string }[],
  close = true,
): Buffer {
  let text = '';
  for (const p of parts) {
    text += `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}\r\n\r\n${p.content}\r\n`;
  }
  if (close) text += `--${boundary}--\r\n`;
  return Buffer.from(text);
}

/** What a case sends: its headers and body. */
type Sent = Pick<RequestCase, 'headers' | 'body'>;

/** A POST of `sent` to `path` that must get `status` (and `code`, where given). */
const post = (name: string, path: string, sent: Sent, status = 400, code?: string): RequestCase => ({
  name,
  method: 'POST',
  path,
  ...sent,
  status,
  ...(code === undefined ? {} : { code }),
});
const form = (body: Buffer, boundary = 'B'): Sent => ({
  headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  body,
});
const jsonBody = (value: unknown): Sent => ({
  headers: { 'content-type': 'application/json' },
  body: typeof value === 'string' ? value : JSON.stringify(value),
});
const good = { name: 'file', filename: 'x.jsonl', content: chat('a') };
const purpose = { name: 'purpose', content: 'batch' };

function requestCases(inputFileId: string, outputFileId: string): RequestCase[] {
  const create = (over: Record<string, unknown>): Sent =>
    jsonBody({ input_file_id: inputFileId, endpoint: '/v1/chat/completions', completion_window: '24h', ...over });
  /** Creating a batch from a valid body with `over` changed. */
  const creating = (name: string, over: Record<string, unknown>, status = 400, code?: string): RequestCase =>
    post(name, '/v1/batches', create(over), status, code);
  /** Adding a webhook with this body. */
  const hooking = (name: string, body: unknown, status = 400, code?: string): RequestCase =>
    post(name, '/v1/webhooks', jsonBody(body), status, code);
  return [
    // Uploads
    post(
      'a form cut before its closing boundary',
      '/v1/files',
      form(Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\nabc')),
    ),
    post(
      'a cut form whose part is not the file',
      '/v1/files',
      form(Buffer.from('--B\r\nContent-Disposition: form-data; name="other"; filename="x.jsonl"\r\n\r\nabc')),
    ),
    // busboy fails on the header line without a colon and still opens the next part: the upload hung.
    post(
      'a malformed part header, then the file part in the same chunk, cut',
      '/v1/files',
      form(
        Buffer.from(
          `--B\r\nContent-Disposition: form-data; name="x"; filename="y"\r\nno colon\r\n\r\nbatch\r\n--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n${chat('a')}`,
        ),
      ),
    ),
    {
      name: 'a form without its boundary parameter',
      method: 'POST',
      path: '/v1/files',
      headers: { 'content-type': 'multipart/form-data' },
      body: multipart('B', [good, purpose]),
      status: 400,
    },
    post('an empty form', '/v1/files', form(Buffer.alloc(0))),
    post('a form that is JSON', '/v1/files', form(Buffer.from('{"file": "x"}'))),
    post('a form whose boundary never appears', '/v1/files', form(multipart('OTHER', [good, purpose]), 'B')),
    {
      name: 'a file name with a NUL',
      method: 'POST',
      path: '/v1/files',
      ...form(
        Buffer.concat([
          Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8\'\'a%00b.jsonl\r\n\r\n'),
          Buffer.from(chat('a')),
          Buffer.from('\r\n--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--B--\r\n'),
        ]),
      ),
      status: 400,
    },
    post(
      'a file name of a thousand characters',
      '/v1/files',
      form(multipart('B', [{ ...good, filename: `${'n'.repeat(1000)}.jsonl` }, purpose])),
      400,
      'invalid_value',
    ),
    post(
      'a file that is not .jsonl',
      '/v1/files',
      form(multipart('B', [{ ...good, filename: 'x.txt' }, purpose])),
      400,
      'invalid_file_format',
    ),
    post('no purpose', '/v1/files', form(multipart('B', [good]))),
    post(
      'a purpose of fine-tune',
      '/v1/files',
      form(multipart('B', [good, { name: 'purpose', content: 'fine-tune' }])),
    ),
    {
      name: 'an expiry that is not a number',
      method: 'POST',
      path: '/v1/files',
      ...form(
        multipart('B', [
          good,
          purpose,
          { name: 'expires_after[anchor]', content: 'created_at' },
          { name: 'expires_after[seconds]', content: 'soon' },
        ]),
      ),
      status: 400,
    },
    post('no file part at all', '/v1/files', form(multipart('B', [purpose])), 400, 'missing_required_parameter'),
    {
      name: 'an upload that is plain text',
      method: 'POST',
      path: '/v1/files',
      headers: { 'content-type': 'text/plain' },
      body: chat('a'),
      status: 415,
    },
    {
      name: 'a 2 MB JSON body to the upload route, with an Idempotency-Key',
      method: 'POST',
      path: '/v1/files',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
      body: JSON.stringify({ pad: 'p'.repeat(2 * 1024 * 1024) }),
      status: 413,
    },
    {
      name: 'a 2 MB JSON body to an unknown route',
      method: 'POST',
      path: '/v1/nothing-here',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pad: 'p'.repeat(2 * 1024 * 1024) }),
      status: 413,
    },
    {
      name: 'a multipart boundary that says application/json',
      method: 'POST',
      path: '/v1/files',
      headers: { 'content-type': 'multipart/form-data; boundary="application/json"', 'idempotency-key': 'k2' },
      body: multipart('application/json', [good, purpose]),
      status: 200,
    },
    {
      name: 'a part with a broken header',
      method: 'POST',
      path: '/v1/files',
      ...form(
        Buffer.from(
          '--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\nX: \u0000\r\n\r\nabc\r\n--B--\r\n',
        ),
      ),
      status: 400,
    },
    // Headers
    {
      name: 'a 60 KB Authorization header',
      path: '/v1/files',
      raw: () =>
        `GET /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${'k'.repeat(60_000)}\r\nconnection: close\r\n\r\n`,
      status: 431,
      code: 'headers_too_large',
    },
    {
      name: 'a 10 KB unknown key',
      path: '/v1/files',
      headers: { authorization: `Bearer ${'k'.repeat(10_000)}` },
      status: 401,
      code: 'invalid_api_key',
    },
    { name: 'a request line that is not HTTP', path: '/', raw: () => 'HELLO THERE\r\n\r\n', status: 400 },
    {
      name: 'a path of 20,000 characters',
      path: '/',
      raw: (key) =>
        `GET /v1/files/${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\nconnection: close\r\n\r\n`,
      status: 431,
    },
    {
      name: 'an Idempotency-Key of 300 characters',
      method: 'POST',
      path: '/v1/batches',
      ...create({}),
      headers: { 'content-type': 'application/json', 'idempotency-key': 'i'.repeat(300) },
      status: 400,
    },
    // Batch creation
    {
      name: 'metadata with an unpaired surrogate',
      method: 'POST',
      path: '/v1/batches',
      ...jsonBody(
        `{"input_file_id":"${inputFileId}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"k":"\\ud800"}}`,
      ),
      status: 400,
    },
    creating('metadata with a NUL', { metadata: { k: 'a\u0000b' } }),
    {
      name: 'a metadata key with an unpaired surrogate',
      method: 'POST',
      path: '/v1/batches',
      ...jsonBody(
        `{"input_file_id":"${inputFileId}","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"\\udfff":"v"}}`,
      ),
      status: 400,
    },
    creating('seventeen metadata pairs', {
      metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])),
    }),
    creating('a metadata value of 513 characters', { metadata: { k: 'v'.repeat(513) } }),
    creating('a metadata value that is a number', { metadata: { k: 1 } }),
    creating(
      'a 2 MB JSON body',
      { metadata: { k: 'v' }, padding: 'p'.repeat(2 * 1024 * 1024) },
      413,
      'request_too_large',
    ),
    post('a body that is null', '/v1/batches', jsonBody('null')),
    post('a body nested 100,000 deep', '/v1/batches', jsonBody(deep(100_000))),
    {
      name: 'a body that is not UTF-8',
      method: 'POST',
      path: '/v1/batches',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
      status: 400,
    },
    creating('a completion window of 0s', { completion_window: '0s' }),
    creating('a completion window of 10^21 days', { completion_window: '999999999999999999999d' }),
    creating('an endpoint that walks up', { endpoint: '/v1/../etc/passwd' }),
    creating('an input file id with a NUL', { input_file_id: 'file-\u0000' }),
    creating('an input file id of 10,000 characters', { input_file_id: 'f'.repeat(10_000) }),
    creating("a batch's output file as input", { input_file_id: outputFileId }),
    creating('a priority of 0', { priority: 0 }),
    creating('a priority that is a word', { priority: 'high' }),
    creating('an output expiry of a minute', { output_expires_after: { anchor: 'created_at', seconds: 60 } }),
    post('a retry body that is an array', '/v1/batches/batch_none/retry', jsonBody('[1,2]')),
    // Reads
    { name: 'a file id that is a NUL', path: '/v1/files/%00', status: 404 },
    { name: 'a batch id that walks up', path: '/v1/batches/..%2f..%2fetc', status: 404 },
    { name: 'a file id with an unpaired surrogate', path: '/v1/files/%ED%A0%80', status: 404 },
    { name: 'a list limit of 0', path: '/v1/files?limit=0', status: 400 },
    { name: 'a list limit of -1', path: '/v1/batches?limit=-1', status: 400 },
    { name: 'a list limit that is a word', path: '/v1/files?limit=many', status: 400 },
    { name: 'a list order sideways', path: '/v1/files?order=sideways', status: 400 },
    { name: 'a list cursor with a NUL', path: '/v1/files?after=%00', status: 400 },
    { name: 'a batch page of 1,000', path: '/v1/batches?limit=1000', status: 400 },
    {
      name: 'cancelling a batch that does not exist',
      method: 'POST',
      path: '/v1/batches/batch_none/cancel',
      status: 404,
    },
    { name: 'deleting a file that does not exist', method: 'DELETE', path: '/v1/files/file-none', status: 404 },
    { name: 'content of a file that does not exist', path: '/v1/files/file-none/content', status: 404 },
    { name: 'an unknown route', method: 'POST', path: '/v1/zzz', status: 404, code: 'unknown_url' },
    // Webhooks
    hooking('a webhook to javascript:', { url: 'javascript:alert(1)' }),
    hooking('a webhook URL with a NUL', { url: 'https://example.com/\u0000' }),
    hooking('a webhook to loopback through NAT64', { url: 'http://[64:ff9b::7f00:1]/hook' }, 400, 'invalid_url'),
    hooking('a webhook to cloud metadata through 6to4', { url: 'http://[2002:a9fe:a9fe::1]/hook' }, 400, 'invalid_url'),
    hooking('a webhook to a site-local address', { url: 'http://[fec0::1]/hook' }, 400, 'invalid_url'),
    hooking('a webhook URL of 3,000 characters', { url: `https://example.com/${'p'.repeat(3000)}` }),
    hooking('a webhook with an unknown event', { url: 'https://example.com/h', events: ['batch.exploded'] }),
    {
      name: 're-driving a delivery that does not exist',
      method: 'POST',
      path: '/v1/webhooks/deliveries/whd_none/redeliver',
      status: 404,
    },
    post('the Label Studio receiver, which is off', '/hooks/label-studio', jsonBody({ action: 'x' }), 404),
  ];
}

interface FileCase {
  name: string;
  content: Buffer | string;
  /** [code, line, param] of the first error, or 'completed' for files that are odd but fine. */
  expect: [string, number | null, string | null] | 'completed';
}

const FILE_CASES: FileCase[] = [
  {
    name: 'UTF-16LE, as PowerShell writes it',
    content: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${chat('a')}\r\n`, 'utf16le')]),
    expect: ['invalid_json_line', 1, null],
  },
  {
    name: 'UTF-16BE',
    content: Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(`${chat('a')}\n`, 'utf16le').swap16()]),
    expect: ['invalid_json_line', 1, null],
  },
  {
    name: 'a url with an escaped NUL',
    content: chat('a', { url: '/v1/chat/\u0000completions' }),
    expect: ['invalid_url', 1, 'url'],
  },
  {
    name: 'two lines whose custom_id is an unpaired surrogate',
    content: `${chat('a').replace('"a"', '"\\ud800"')}\n${chat('b').replace('"b"', '"\\ud800"')}\n`,
    expect: ['invalid_request', 1, 'custom_id'],
  },
  {
    name: 'a model that is an unpaired surrogate',
    content: chat('a').replace(`"${MODEL}"`, '"\\udc00"'),
    expect: ['invalid_request', 1, 'body.model'],
  },
  {
    name: 'a method nested 20,000 deep',
    content: `{"custom_id":"a","method":${deep(20_000)},"url":"/v1/chat/completions","body":{"model":"${MODEL}"}}`,
    expect: ['invalid_request', 1, null],
  },
  {
    name: 'a body nested 20,000 deep',
    content: chat('a', { body: { model: MODEL, messages: 'X' } }).replace('"X"', deep(20_000)),
    expect: ['invalid_request', 1, null],
  },
  {
    name: 'a line longer than the limit',
    content: `${chat('a')}\n${chat('b', {}, { messages: [{ role: 'user', content: 'x'.repeat(MAX_LINE_BYTES) }] })}\n`,
    expect: ['invalid_request', 2, null],
  },
  {
    name: 'a custom_id of 10,000 characters',
    content: chat('c'.repeat(10_000)),
    expect: ['invalid_request', 1, 'custom_id'],
  },
  {
    name: 'bytes that are not UTF-8 inside a custom_id',
    content: Buffer.concat([
      Buffer.from('{"custom_id":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from(`${chat('x').slice(chat('x').indexOf('","method') + 1)}\n`),
    ]),
    expect: ['invalid_json_line', 1, null],
  },
  {
    name: 'a raw NUL byte in a line',
    content: `${chat('a').slice(0, 10)}\u0000${chat('a').slice(10)}`,
    expect: ['invalid_json_line', 1, null],
  },
  {
    name: 'old Mac line endings (CR only)',
    content: [chat('a'), chat('b')].join('\r'),
    expect: ['invalid_json_line', 1, null],
  },
  { name: 'only a byte-order mark', content: Buffer.from([0xef, 0xbb, 0xbf]), expect: ['empty_batch', null, null] },
  { name: 'a custom_id that is a number', content: chat(7), expect: ['missing_required_parameter', 1, 'custom_id'] },
  {
    name: 'a custom_id that is an object',
    content: chat({ id: 'a' }),
    expect: ['missing_required_parameter', 1, 'custom_id'],
  },
  {
    name: 'a model that is an array',
    content: chat('a', {}, { model: ['m'] }),
    expect: ['missing_required_parameter', 1, 'body.model'],
  },
  {
    name: 'a method that is an object',
    content: chat('a', { method: { verb: 'POST' } }),
    expect: ['invalid_request', 1, 'method'],
  },
  { name: 'a line that is a JSON string', content: '"just text"\n', expect: ['invalid_json_line', 1, null] },
  { name: 'a line that is a huge number', content: `${'9'.repeat(5000)}\n`, expect: ['invalid_json_line', 1, null] },
  {
    name: 'a model of 300 characters',
    content: chat('a', {}, { model: 'm'.repeat(300) }),
    expect: ['invalid_request', 1, 'body.model'],
  },
  {
    name: 'a prompt holding an unpaired surrogate and a NUL (fine: the engine gets them escaped)',
    content: chat('a', {}, { messages: [{ role: 'user', content: 'x' }] }).replace('"x"', '"\\ud800 and \\u0000"'),
    expect: 'completed',
  },
  { name: 'a custom_id with unicode from every plane (fine)', content: chat('é😀\u2028'), expect: 'completed' },
];

/** Sends a request over a raw socket and reads the whole answer. */
async function rawRequest(port: number, payload: string | Buffer): Promise<{ status: number; body: string }> {
  const [first] = await exchange(port, payload, { end: true });
  return { status: first?.status ?? 0, body: first?.body ?? '' };
}

describe('a corpus of hostile input', () => {
  let stack: TestStack;
  let api: ChildUnderTest;
  let port: number;
  /** The stack, with its SDK pointed at the API process. */
  let view: TestStack;
  const ids = { input: '', output: '' };

  beforeAll(async () => {
    const env = {
      BATCH_MAX_LINE_BYTES: String(MAX_LINE_BYTES),
      API_RATE_LIMIT_PER_MINUTE: '0',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false',
    };
    stack = await startTestStack({ noApi: true, env });
    port = await getPort();
    api = spawnEntry('api/server.ts', {
      ...stack.processEnv(),
      ...env,
      API_PORT: String(port),
      API_KEYS: stack.apiKey,
    });
    await api.waitFor('API ready');
    const openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
    view = { ...stack, openai };
    const batch = await runBatch(view, batchLines({ model: MODEL, count: 2 }));
    ids.input = batch.input_file_id;
    ids.output = batch.output_file_id ?? '';
  });
  afterAll(async () => {
    await api.stop();
    await stack.stop();
  });

  it('has at least sixty cases', () => {
    expect(requestCases('f', 'o').length + FILE_CASES.length).toBeGreaterThanOrEqual(60);
  });

  describe('requests', () => {
    it.each(requestCases('INPUT', 'OUTPUT').map((c) => [c.name, c] as const))('%s', async (_name, template) => {
      const c = requestCases(ids.input, ids.output).find((x) => x.name === template.name) ?? template;
      let status: number;
      let body: string;
      if (c.raw !== undefined) {
        ({ status, body } = await rawRequest(port, c.raw(stack.apiKey)));
      } else {
        const res = await fetch(`http://127.0.0.1:${port}${c.path}`, {
          method: c.method ?? 'GET',
          headers: { authorization: `Bearer ${stack.apiKey}`, ...c.headers },
          ...(c.body !== undefined ? { body: c.body } : {}),
        });
        status = res.status;
        body = await res.text();
      }
      expect(status, body.slice(0, 500)).toBe(c.status);
      expect(api.child.exitCode).toBeNull();
      if (status < 400) return;
      const error = (
        JSON.parse(body) as { error: { message: string; type: string; param: string | null; code: string | null } }
      ).error;
      expect(error.message.length).toBeGreaterThan(5);
      expect(typeof error.type).toBe('string');
      if (c.code !== undefined) expect(error.code).toBe(c.code);
      expect(api.child.exitCode).toBeNull();
    });
  });

  // A client sends its whole body before reading the answer: one that comes early must still reach
  // it (not a reset), and the connection then serves the next request.
  describe('answers that come before the body ends', () => {
    const big = 'p'.repeat(2 * 1024 * 1024);
    /** A second request on the same connection, which closes it after its answer. */
    const nextRequest = (): string =>
      `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${stack.apiKey}\r\nconnection: close\r\n\r\n`;
    const postRaw = (path: string, key: string, contentType: string, body: string): string =>
      `POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: ${contentType}\r\ncontent-length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
    const cases: { name: string; request: (key: string) => string; status: number; code: string }[] = [
      {
        name: 'a 2 MB JSON body (over the limit)',
        request: (key) => postRaw('/v1/batches', key, 'application/json', JSON.stringify({ pad: big })),
        status: 413,
        code: 'request_too_large',
      },
      {
        name: 'a 900 KB JSON body with an unknown key',
        request: () =>
          postRaw('/v1/batches', 'nope', 'application/json', JSON.stringify({ pad: big.slice(0, 900 * 1024) })),
        status: 401,
        code: 'invalid_api_key',
      },
      {
        name: 'a 2 MB upload with an unknown key',
        request: () =>
          postRaw(
            '/v1/files',
            'nope',
            'multipart/form-data; boundary=B',
            multipart('B', [{ ...good, content: big }, purpose]).toString('latin1'),
          ),
        status: 401,
        code: 'invalid_api_key',
      },
      {
        name: 'a 2 MB upload whose part header is broken',
        request: (key) =>
          postRaw(
            '/v1/files',
            key,
            'multipart/form-data; boundary=B',
            `--B\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\nX: \u0000\r\n\r\n${big}\r\n--B--\r\n`,
          ),
        status: 400,
        code: 'invalid_request',
      },
      {
        name: 'a 2 MB upload whose multipart type has no boundary',
        request: (key) => postRaw('/v1/files', key, 'multipart/form-data', big),
        status: 400,
        code: 'invalid_request',
      },
    ];
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      // Half the body, a pause longer than @hono/node-server's own drain (500 ms), the rest.
      const request = c.request(stack.apiKey);
      const half = Math.floor(request.length / 2);
      const parts = [request.slice(0, half), request.slice(half) + nextRequest()].map((p) => Buffer.from(p, 'latin1'));
      const answers = await exchange(port, parts, { pauseMs: 800 });
      expect(answers.map((a) => a.status)).toEqual([c.status, 200]);
      expect(answers[0]?.head).not.toMatch(/connection: close/i);
      expect((JSON.parse(answers[0]?.body ?? '') as { error: { code: string } }).error.code).toBe(c.code);
      expect(api.child.exitCode).toBeNull();
    });

    it('and an upload read to its end keeps its connection', async () => {
      const body = multipart('B', [good, purpose]).toString('latin1');
      const answers = await exchange(
        port,
        postRaw('/v1/files', stack.apiKey, 'multipart/form-data; boundary=B', body) + nextRequest(),
      );
      expect(answers.map((a) => a.status)).toEqual([200, 200]);
      expect(answers[0]?.head).not.toMatch(/connection: close/i);
    });
  });

  describe('files', () => {
    it.each(FILE_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const batch = await runBatch(view, c.content, 30_000);
      if (c.expect === 'completed') {
        expect(batch.status).toBe('completed');
        expect(batch.request_counts?.failed).toBe(0);
        return;
      }
      expect(batch.status).toBe('failed');
      const first = batch.errors?.data?.[0];
      expect([first?.code, first?.line ?? null, first?.param ?? null]).toEqual(c.expect);
      expect(first?.message?.length).toBeGreaterThan(10);
      // Its input can be deleted: no batch holds it any more.
      await expect(view.openai.files.delete(batch.input_file_id)).resolves.toMatchObject({ deleted: true });
    });
  });

  it('is still the same process afterwards, and still runs a good batch', async () => {
    expect(api.child.exitCode).toBeNull();
    const batch = await runBatch(view, batchLines({ model: MODEL, count: 5 }));
    expect(batch.status).toBe('completed');
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });
});
