import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readLines, type Line } from '../../lib/jsonl.js';

async function collect(chunks: (string | Buffer)[], options = {}): Promise<Line[]> {
  const out: Line[] = [];
  for await (const line of readLines(Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))), options)) out.push(line);
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
      const raw = bytes.subarray(line.start, line.end).toString('utf8').replace(/\r?\n$/, '');
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

  it('handles one line larger than any chunk', async () => {
    const big = 'x'.repeat(100_000);
    const chunks = [];
    for (let i = 0; i < big.length; i += 1000) chunks.push(big.slice(i, i + 1000));
    chunks.push('\nnext\n');
    const lines = await collect(chunks);
    expect(lines.map((l) => l.text.length)).toEqual([100_000, 4]);
  });
});
