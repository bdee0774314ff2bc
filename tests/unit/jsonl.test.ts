import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';

import { readLines, type Line } from '../../lib/jsonl.js';

async function collect(chunks: (string | Buffer)[], options = {}): Promise<Line[]> {
  const out: Line[] = [];
  for await (const line of readLines(
    Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))),
    options,
  ))
    out.push(line);
  return out;
}

describe('readLines', () => {
  it('numbers lines and gives byte offsets that slice back to each line', async () => {
    const text = 'alpha\r\n{"é":"ü"}\n\nlast';
    const bytes = Buffer.from(text);
    // Split in awkward places, including inside a multi-byte character.
    const chunks = [bytes.subarray(0, 3), bytes.subarray(3, 11), bytes.subarray(11, 12), bytes.subarray(12)];
    const lines = await collect(chunks);
    expect(lines.map((l) => [l.number, l.text])).toEqual([
      [1, 'alpha'],
      [2, '{"é":"ü"}'],
      [3, ''],
      [4, 'last'],
    ]);
    for (const line of lines) {
      const raw = bytes
        .subarray(line.start, line.end)
        .toString('utf8')
        .replace(/\r?\n$/, '');
      expect(raw).toBe(line.text);
    }
    expect(lines.at(-1)?.end).toBe(bytes.length);
  });

  it('continues numbering and offsets when reading a range from the middle', async () => {
    const text = 'a\nbb\nccc\ndddd\n';
    const all = await collect([text]);
    const third = all[2]!;
    const tail = await collect([Buffer.from(text).subarray(third.start)], { firstLine: 3, startOffset: third.start });
    expect(tail).toEqual(all.slice(2));
  });

  it('never holds a line over the cap: it comes back empty and marked, with its true offsets', async () => {
    const huge = 'y'.repeat(50_000);
    const text = `ok\n${huge}\nafter\n${huge}`;
    const chunks = [];
    for (let i = 0; i < text.length; i += 700) chunks.push(text.slice(i, i + 700));
    const lines = await collect(chunks, { maxLineBytes: 1000 });
    expect(lines.map((l) => [l.number, l.text, l.problem])).toEqual([
      [1, 'ok', undefined],
      [2, '', 'too_long'],
      [3, 'after', undefined],
      [4, '', 'too_long'],
    ]);
    expect(lines[1]).toMatchObject({ start: 3, end: 3 + huge.length + 1 });
    expect(lines[3]?.end).toBe(Buffer.byteLength(text));
  });

  it('marks lines that are not UTF-8 when asked, and reads them as they are otherwise', async () => {
    const bytes = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n{"b":1}\n')]);
    expect((await collect([bytes], { checkUtf8: true })).map((l) => l.problem)).toEqual(['not_utf8', undefined]);
    expect((await collect([bytes])).map((l) => l.problem)).toEqual([undefined, undefined]);
  });

  it('handles one line larger than any chunk', async () => {
    const big = 'x'.repeat(100_000);
    const chunks = [];
    for (let i = 0; i < big.length; i += 1000) chunks.push(big.slice(i, i + 1000));
    chunks.push('\nnext\n');
    const lines = await collect(chunks);
    expect(lines.map((l) => l.text.length)).toEqual([100_000, 4]);
  });
});
