// Property-based fuzzing (fast-check) of what parses client bytes: the JSONL validator and the
// multipart upload. Whatever the bytes, the answer is a 4xx or a batch that reaches a final state
// within seconds with errors Postgres can store; never a crash, a 5xx or a batch that never ends.
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import getPort from 'get-port';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { validateLines } from '../../activities/validate.js';
import { readLines } from '../../lib/jsonl.js';
import { isStorableText } from '../../lib/sanitize.js';
import { jsonb } from '../../schema/db.js';
import { waitForBatch } from '../support/batches.js';
import { spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const MODEL = 'sim-test';
const MAX_LINE_BYTES = 4096;
const MAX_DEPTH = 16;

const goodLine = (id: string): string =>
  JSON.stringify({
    custom_id: id,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
  });

/** One line of a hostile file: good, broken, odd or huge, as text or raw bytes. */
const hostileLine: fc.Arbitrary<Buffer> = fc.oneof(
  fc.string({ maxLength: 12 }).map((id) => Buffer.from(goodLine(`g-${id}`))),
  // custom_ids of any UTF-16 (lone surrogates and NULs included), escaped the way JSON allows.
  fc.string({ unit: 'binary', maxLength: 20 }).map((id) => Buffer.from(goodLine(id))),
  fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v))),
  fc
    .record({
      custom_id: fc.jsonValue({ maxDepth: 2 }),
      method: fc.jsonValue({ maxDepth: 2 }),
      url: fc.jsonValue({ maxDepth: 2 }),
      body: fc.jsonValue({ maxDepth: 3 }),
    })
    .map((r) => Buffer.from(JSON.stringify(r))),
  fc
    .integer({ min: MAX_DEPTH - 2, max: 5000 })
    .map((d) =>
      Buffer.from(
        `{"custom_id":"deep","method":${'['.repeat(d)}${']'.repeat(d)},"url":"/v1/chat/completions","body":{"model":"${MODEL}"}}`,
      ),
    ),
  fc.integer({ min: MAX_LINE_BYTES - 64, max: MAX_LINE_BYTES * 3 }).map((n) => Buffer.from(goodLine('x'.repeat(n)))),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.constantFrom(
    Buffer.from(goodLine('nul\u0000id')),
    Buffer.from(goodLine('a').replace('/v1/chat/completions', '/v1/chat/\u0000completions')),
    Buffer.from(goodLine('b').replace(`"${MODEL}"`, '"\\ud800"')),
    Buffer.from([0xef, 0xbb, 0xbf]),
    Buffer.from('{"custom_id":"dup"}'),
    Buffer.from('\u2028\u2029'),
    Buffer.from([0xc3, 0x28, 0xa0, 0xa1]),
  ),
);

const newline = fc.constantFrom('\n', '\r\n', '\n\n');

/** A whole file: lines joined, maybe behind a byte-order mark, maybe re-encoded as UTF-16. */
const hostileFile: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.array(fc.tuple(hostileLine, newline), { maxLength: 12 }),
    fc.constantFrom('none', 'utf8-bom', 'utf16le', 'utf16be', 'cut'),
    fc.nat(),
  )
  .map(([lines, wrap, cut]) => {
    const body = Buffer.concat(lines.flatMap(([line, nl]) => [line, Buffer.from(nl)]));
    if (wrap === 'utf8-bom') return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
    if (wrap === 'utf16le')
      return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(body.toString('utf8'), 'utf16le')]);
    if (wrap === 'utf16be')
      return Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(body.toString('utf8'), 'utf16le').swap16()]);
    if (wrap === 'cut') return body.subarray(0, body.length === 0 ? 0 : cut % body.length);
    return body;
  });

describe('fuzzing the JSONL validator', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        BATCH_MAX_LINE_BYTES: String(MAX_LINE_BYTES),
        VALIDATION_MAX_DEPTH: String(MAX_DEPTH),
        BATCH_MAX_REQUESTS: '8',
        API_RATE_LIMIT_PER_MINUTE: '0',
      },
    });
    await sql`create table fuzz_errors (errors jsonb not null)`.execute(stack.db);
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('never throws, numbers every error within the file, and words every error so Postgres stores it', async () => {
    await fc.assert(
      fc.asyncProperty(hostileFile, async (file) => {
        const lines = readLines(Readable.from([file]), { maxLineBytes: MAX_LINE_BYTES, checkUtf8: true });
        const outcome = await validateLines(lines, {
          endpoint: '/v1/chat/completions',
          maxRequests: 8,
          maxErrors: 20,
          chunkSize: 3,
          maxDepth: MAX_DEPTH,
          maxCustomIdChars: 64,
          maxLineBytes: MAX_LINE_BYTES,
          maxEmbeddingInputs: 2048,
        });
        const lineCount = file.toString('latin1').split('\n').length;
        for (const error of outcome.errors) {
          expect(isStorableText(error.message), error.message).toBe(true);
          expect(error.message.length).toBeLessThan(2000);
          if (error.line !== null) expect(error.line).toBeGreaterThanOrEqual(1);
          if (error.line !== null) expect(error.line).toBeLessThanOrEqual(lineCount);
        }
        // What the batch row will hold, written for real.
        await sql`insert into fuzz_errors (errors) values (${jsonb(outcome.errors)})`.execute(stack.db);
      }),
      { numRuns: 400 },
    );
  });

  it('answers any file with a 4xx or a batch that ends within seconds', async () => {
    await fc.assert(
      fc.asyncProperty(hostileFile, async (bytes) => {
        const file = await stack.openai.files.create({ file: new File([bytes], 'fuzz.jsonl'), purpose: 'batch' });
        const created = await stack.openai.batches.create({
          input_file_id: file.id,
          endpoint: '/v1/chat/completions',
          completion_window: '24h',
        });
        const batch = await waitForBatch(stack.openai, created.id, 20_000);
        expect(['completed', 'failed']).toContain(batch.status);
        if (batch.status === 'failed') {
          expect(batch.errors?.data?.length).toBeGreaterThan(0);
          for (const e of batch.errors?.data ?? []) expect(e.message?.length).toBeGreaterThan(10);
        }
      }),
      { numRuns: 40 },
    );
  });
});

/** One multipart body: parts in any order and with any names, maybe cut anywhere. */
const multipartCase = fc.record({
  boundary: fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,40}$/),
  parts: fc.array(
    fc.record({
      name: fc.oneof(
        fc.constantFrom('file', 'purpose', 'expires_after[seconds]', 'expires_after[anchor]', 'other'),
        fc.string({ maxLength: 10 }),
      ),
      filename: fc.option(
        fc.oneof(fc.constant('x.jsonl'), fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 20 })),
        { nil: undefined },
      ),
      content: fc.oneof(
        fc.constant('batch'),
        fc.constant(`${goodLine('a')}\n`),
        fc.string({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a).toString('latin1')),
      ),
      headerNoise: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    }),
    { maxLength: 5 },
  ),
  close: fc.boolean(),
  cutAt: fc.option(fc.nat(), { nil: undefined }),
  contentType: fc.constantFrom(
    'multipart/form-data; boundary=',
    'multipart/form-data; boundary="',
    'multipart/form-data;boundary=',
    'multipart/mixed; boundary=',
  ),
});

type MultipartCase = Omit<typeof multipartCase extends fc.Arbitrary<infer T> ? T : never, 'cutAt' | 'contentType'> & {
  cutAt?: number | undefined;
};

function multipartBody(c: MultipartCase): Buffer {
  const pieces: Buffer[] = [];
  for (const p of c.parts) {
    const disposition = `Content-Disposition: form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`;
    pieces.push(
      Buffer.from(
        `--${c.boundary}\r\n${disposition}\r\n${p.headerNoise === undefined ? '' : `${p.headerNoise}\r\n`}\r\n`,
      ),
      Buffer.from(p.content, 'latin1'),
      Buffer.from('\r\n'),
    );
  }
  if (c.close) pieces.push(Buffer.from(`--${c.boundary}--\r\n`));
  const body = Buffer.concat(pieces);
  return c.cutAt === undefined || body.length === 0 ? body : body.subarray(0, c.cutAt % body.length);
}

describe('fuzzing the multipart upload', () => {
  let stack: TestStack;
  let api: ChildUnderTest;
  let url: string;

  beforeAll(async () => {
    stack = await startTestStack({ noApi: true, env: { API_RATE_LIMIT_PER_MINUTE: '0' } });
    const port = await getPort();
    // The API as a process of its own: a crash is an exit, not a test runner error.
    api = spawnEntry('api/server.ts', { ...stack.processEnv(), API_PORT: String(port), API_KEYS: stack.apiKey });
    await api.waitFor('API ready');
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await api.stop();
    await stack.stop();
  });

  it('answers every body, whole or cut at any point, with a 2xx or 4xx and stays up', async () => {
    await fc.assert(
      fc.asyncProperty(multipartCase, async (c) => {
        const res = await fetch(`${url}/v1/files`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': `${c.contentType}${c.boundary}` },
          body: multipartBody(c),
          // An upload the API never answers fails here, with the body that did it, not as the test's timeout.
          signal: AbortSignal.timeout(20_000),
        });
        expect(res.status, await res.clone().text()).toBeLessThan(500);
        if (res.status >= 400)
          expect(((await res.json()) as { error: { message: string } }).error.message.length).toBeGreaterThan(5);
        expect(api.child.exitCode).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  it('survives clients that hang up mid-body after promising more', async () => {
    await fc.assert(
      fc.asyncProperty(multipartCase, fc.integer({ min: 1, max: 100_000 }), async (c, extra) => {
        const body = multipartBody({ ...c, cutAt: undefined });
        await new Promise<void>((resolve) => {
          const socket = connect(Number(new URL(url).port), '127.0.0.1', () => {
            socket.write(
              `POST /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${stack.apiKey}\r\ncontent-type: multipart/form-data; boundary=${c.boundary}\r\ncontent-length: ${body.length + extra}\r\n\r\n`,
            );
            socket.write(body);
            setTimeout(() => socket.destroy(), 20);
          });
          socket.on('error', () => undefined);
          socket.on('close', () => {
            resolve();
          });
        });
      }),
      { numRuns: 60 },
    );
    // Still answering, and still the same process.
    expect(api.child.exitCode).toBeNull();
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});
