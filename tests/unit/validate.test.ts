import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';

import {
  chunkSizeFor,
  joinPieces,
  pieceSize,
  validateLines,
  type ValidationParams,
} from '../../activities/validate.js';
import { readLines } from '../../lib/jsonl.js';

const params: ValidationParams = {
  endpoint: '/v1/chat/completions',
  maxRequests: 50_000,
  maxErrors: 100,
  chunkSize: 2,
  maxDepth: 64,
  maxCustomIdChars: 512,
  maxLineBytes: 1 << 20,
  maxEmbeddingInputs: 2048,
};

const line = (customId: string, over: Record<string, unknown> = {}, body: Record<string, unknown> = {}): string =>
  JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'm', messages: [], ...body },
    ...over,
  });

async function validate(lines: string[], p: Partial<ValidationParams> = {}) {
  return validateLines(readLines(Readable.from([Buffer.from(lines.join('\n'))])), { ...params, ...p });
}

describe('validating a batch input file', () => {
  it('accepts a good file and plans chunks as line and byte ranges', async () => {
    const lines = [line('a'), line('b'), '', line('c')];
    const text = Buffer.from(lines.join('\n'));
    const result = await validate(lines);
    expect(result.errors).toEqual([]);
    expect(result.requests).toBe(3);
    expect(result.model).toBe('m');
    expect(result.chunks.map((c) => [c.firstLine, c.lastLine, c.requests])).toEqual([
      [1, 2, 2],
      [4, 4, 1],
    ]);
    // Each chunk's byte range holds exactly its lines.
    const second = result.chunks[1]!;
    expect(text.subarray(second.byteStart, second.byteEnd).toString()).toBe(lines[3]);
  });

  it('reports every problem with its code, line and param', async () => {
    const result = await validate([
      '{not json',
      line('a'),
      line('a'),
      JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'm' } }),
      line('b', { url: '/v1/embeddings' }),
      line('c', {}, { model: 'other' }),
      line('d', {}, { stream: true }),
      line('e', { method: 'GET' }),
      JSON.stringify({ custom_id: 'f', method: 'POST', url: '/v1/chat/completions' }),
      line('g', {}, { model: undefined }),
      '[1,2]',
    ]);
    expect(result.errors.map((e) => [e.code, e.line, e.param])).toEqual([
      ['invalid_json_line', 1, null],
      ['duplicate_custom_id', 3, 'custom_id'],
      ['missing_required_parameter', 4, 'custom_id'],
      ['invalid_url', 5, 'url'],
      ['mismatched_model', 6, 'body.model'],
      ['streaming_unsupported', 7, 'body.stream'],
      ['invalid_request', 8, 'method'],
      ['missing_required_parameter', 9, 'body'],
      ['missing_required_parameter', 10, 'body.model'],
      ['invalid_json_line', 11, null],
    ]);
    for (const e of result.errors) expect(e.message.length).toBeGreaterThan(10);
  });

  it('flags an empty file', async () => {
    expect((await validate(['', '  '])).errors.map((e) => e.code)).toEqual(['empty_batch']);
  });

  it('flags too many requests once, and counts embedding inputs, not lines', async () => {
    const many = await validate([line('a'), line('b'), line('c')], { maxRequests: 2 });
    expect(many.errors.map((e) => [e.code, e.line])).toEqual([['too_many_tasks', 3]]);

    const embed = (id: string, input: unknown) =>
      JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/embeddings', body: { model: 'm', input } });
    const embeddings = await validate([embed('a', ['x', 'y']), embed('b', ['z', 'w'])], {
      endpoint: '/v1/embeddings',
      maxRequests: 3,
    });
    expect(embeddings.errors.map((e) => e.code)).toEqual(['too_many_tasks']);
    // A list of token ids is one input.
    const tokens = await validate([embed('a', [1, 2, 3, 4])], { endpoint: '/v1/embeddings', maxRequests: 1 });
    expect(tokens.errors).toEqual([]);
    // One line may not carry more inputs than one embeddings request takes.
    const wide = await validate([embed('a', ['x', 'y', 'z']), embed('b', ['w'])], {
      endpoint: '/v1/embeddings',
      maxEmbeddingInputs: 2,
    });
    expect(wide.errors.map((e) => [e.code, e.line, e.param])).toEqual([['invalid_request', 1, 'body.input']]);
  });

  it('caps the list of errors and says how many more there were', async () => {
    const result = await validate(
      Array.from({ length: 10 }, () => 'nope'),
      { maxErrors: 3 },
    );
    expect(result.errors).toHaveLength(4);
    expect(result.errors[3]).toMatchObject({
      code: 'too_many_errors',
      message: '7 more errors were found and are not listed.',
    });
  });
});

describe('sizing chunks', () => {
  const sizing = { chunkSize: 500, chunksPerWorker: 16, minChunkSize: 256 };

  it('keeps the configured size when every GPU worker gets enough chunks anyway, or there is one worker', () => {
    expect(chunkSizeFor({ ...sizing, requests: 50_000, workers: 1 })).toBe(500);
    expect(chunkSizeFor({ ...sizing, requests: 1000, workers: 1 })).toBe(500);
    expect(chunkSizeFor({ ...sizing, requests: 16_000, workers: 2 })).toBe(500);
  });

  it('shrinks chunks so many GPUs share a small batch evenly, but not below what fills a worker', () => {
    expect(chunkSizeFor({ ...sizing, requests: 7680, workers: 8, minChunkSize: 32 })).toBe(60);
    expect(chunkSizeFor({ ...sizing, requests: 10_000, workers: 8 })).toBe(256);
    expect(chunkSizeFor({ ...sizing, requests: 3, workers: 8, minChunkSize: 1 })).toBe(1);
  });

  it('cuts validation pieces that divide the configured size', () => {
    expect(pieceSize(500)).toBe(25);
    expect(pieceSize(128)).toBe(4);
    expect(pieceSize(25)).toBe(1);
    expect(pieceSize(97)).toBe(1);
  });

  it('joins adjacent pieces into chunks covering every line and byte once', async () => {
    const lines = Array.from({ length: 23 }, (_, i) => line(`r${i}`));
    const { chunks: pieces } = await validate(lines, { chunkSize: 2 });
    expect(pieces).toHaveLength(12);
    const chunks = joinPieces(pieces, 6);
    expect(chunks.map((c) => c.requests)).toEqual([6, 6, 6, 5]);
    expect(chunks.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(chunks[0]).toMatchObject({ firstLine: 1, lastLine: 6, byteStart: 0 });
    expect(chunks[3]).toMatchObject({ firstLine: 19, lastLine: 23, byteEnd: pieces.at(-1)?.byteEnd });
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]?.byteStart).toBe(pieces[i * 3]?.byteStart);
    expect(joinPieces(pieces, 1)).toEqual(pieces);
  });
});
