// Segments are read back as bytes, split at newlines whatever the read window: a window that ends
// inside a record, inside a multi-byte character, or is smaller than one record must change nothing.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readSegment, writeSegment, type RawRecord } from '../../activities/result-segments.js';
import { LocalFileStore } from '../../lib/file-store.js';

describe('result segments', () => {
  let root: string;
  let store: LocalFileStore;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'segments-'));
    store = new LocalFileStore(root);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const outputs = new Map<number, string>([
    [3, '{"a":1}'],
    [4, JSON.stringify({ text: 'é€😀\t'.repeat(500) })],
    [1027, JSON.stringify({ embedding: Array.from({ length: 9000 }, (_, i) => i / 7) })],
    [1030, '{}'],
  ]);
  const collect = async (records: AsyncGenerator<RawRecord>): Promise<[number, string][]> => {
    const out: [number, string][] = [];
    for await (const r of records) out.push([r.line, r.output.toString('utf8')]);
    return out;
  };

  it('reads every record of a bucket back byte for byte, with any read window', async () => {
    const written = await writeSegment(
      store,
      'batch_x',
      [...outputs].map(([line, output]) => ({ line, output })),
    );
    // Lines 3 and 4 are bucket 0, 1027 and 1030 bucket 1: one byte range each.
    expect([...written.ranges.keys()]).toEqual([0, 1]);
    for (const window of [97, 1000, 4096, 256 * 1024]) {
      const read: [number, string][] = [];
      for (const { start, end } of written.ranges.values())
        read.push(...(await collect(readSegment(store, written.key, start, end, window))));
      expect(read).toEqual([...outputs].map(([line, output]) => [line, `${output}\n`]));
    }
  });

  it('refuses a range that does not hold whole records', async () => {
    const written = await writeSegment(store, 'batch_y', [{ line: 9, output: '{"b":2}' }]);
    const range = written.ranges.get(0) ?? { start: 0, end: 0 };
    await expect(collect(readSegment(store, written.key, range.start, range.end - 1, 4))).rejects.toThrow(
      /result segment .* is damaged/,
    );
    await expect(collect(readSegment(store, written.key, range.start + 1, range.end, 4))).rejects.toThrow(
      /result segment .* is damaged/,
    );
  });
});
