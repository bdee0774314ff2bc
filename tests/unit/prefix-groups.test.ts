import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { PrefixIndex, prefixKey } from '../../activities/prefix-groups.js';
import type { Line } from '../../lib/jsonl.js';

const settings = { minChars: 20, maxChars: 60 };
const system = (n: number): string => `You are assistant number ${n}. `.repeat(3);

function chat(sys: string | null, user: string): unknown {
  const messages = [...(sys === null ? [] : [{ role: 'system', content: sys }]), { role: 'user', content: user }];
  return { model: 'm', messages };
}

describe('prefixKey', () => {
  it('groups chat requests by their system prompt, whatever follows it', () => {
    expect(prefixKey(chat(system(1), 'hello'), settings)).toBe(prefixKey(chat(system(1), 'bye'), settings));
    expect(prefixKey(chat(system(1), 'hello'), settings)).not.toBe(prefixKey(chat(system(2), 'hello'), settings));
    // As text parts, the same prompt.
    const parts = { model: 'm', messages: [{ role: 'system', content: [{ type: 'text', text: system(1) }] }] };
    expect(prefixKey(parts, settings)).toBe(prefixKey(chat(system(1), 'x'), settings));
  });

  it('compares at most maxChars: prompts alike that far share a prefix', () => {
    const long = 'x'.repeat(80);
    expect(prefixKey(chat(long + 'a', 'q'), settings)).toBe(prefixKey(chat(long + 'b', 'r'), settings));
  });

  it('without a long system prompt, groups by the opening of a long prompt, and not short ones', () => {
    const opening = 'Summarise the following document carefully and briefly, in one paragraph: ';
    expect(prefixKey({ prompt: opening + 'one '.repeat(20) }, settings)).toBe(
      prefixKey({ prompt: opening + 'two '.repeat(20) }, settings),
    );
    expect(prefixKey(chat('short', 'hello'), settings)).toBeNull();
    expect(prefixKey({ prompt: 'a short prompt' }, settings)).toBeNull();
    expect(prefixKey({ model: 'm' }, settings)).toBeNull();
    expect(prefixKey('not an object', settings)).toBeNull();
    expect(prefixKey({ messages: [null, 3, { role: 'system', content: { odd: true } }] }, settings)).toBeNull();
  });

  it('never throws, whatever the body: a key or null', () => {
    // Values whose String() throws, as JSON.parse can never make but a body may come to hold.
    const odd = { toString: 1, valueOf: 2 };
    expect(prefixKey({ messages: [{ role: odd, content: 'x'.repeat(100) }] }, settings)).not.toBeNull();
    expect(prefixKey({ messages: [{ role: [odd], content: [odd, { text: odd }] }] }, settings)).toBeNull();
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(odd));
    const message = fc.record(
      { role: fc.oneof(fc.constantFrom('system', 'developer', 'user'), value), content: value },
      { requiredKeys: [] },
    );
    const body = fc.record(
      {
        messages: fc.oneof(fc.array(fc.oneof(message, value), { maxLength: 5 }), value),
        prompt: value,
        input: value,
        instructions: value,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(body, value), (b) => {
        const key = prefixKey(b, settings);
        expect(key === null || /^[\w-]{16}$/.test(key)).toBe(true);
      }),
    );
  });

  it('reads the Responses API instructions as the system prompt', () => {
    expect(prefixKey({ instructions: system(3), input: 'a' }, settings)).toBe(
      prefixKey({ instructions: system(3), input: 'b' }, settings),
    );
  });
});

function line(number: number): Line {
  return { number, start: number * 100, end: number * 100 + 99, text: '' };
}

/** Lines 1..n whose keys are `keyOf(line)`. */
function index(n: number, keyOf: (line: number) => string | null): PrefixIndex {
  const idx = new PrefixIndex();
  for (let i = 1; i <= n; i++) idx.add(line(i), keyOf(i));
  return idx;
}

describe('PrefixIndex.plan', () => {
  it('plans interleaved groups apart: each run one group, every line once, chunks within the size', () => {
    // Three prompts in turn, and every tenth line without a shared prefix.
    const keyOf = (i: number): string | null => (i % 10 === 0 ? null : `k${i % 3}`);
    const plan = index(300, keyOf).plan({ size: 40, maxGroups: 8, minRequests: 5 });
    expect(plan).not.toBeNull();
    if (plan === null) return;
    const all = plan.runs.flat().flatMap((r) => r.lines);
    expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(plan.groups).toHaveLength(3);
    expect(plan.chunks).toHaveLength(plan.runs.length);
    for (const [i, chunk] of plan.chunks.entries()) {
      const runs = plan.runs[i] ?? [];
      const lines = runs.flatMap((r) => r.lines);
      expect(chunk.index).toBe(i);
      expect(chunk.requests).toBe(lines.length);
      expect(lines.length).toBeLessThanOrEqual(40);
      expect(chunk.firstLine).toBe(Math.min(...lines));
      expect(chunk.lastLine).toBe(Math.max(...lines));
      for (const run of runs) {
        // In input order, one group, and the span is from the run's first line to its last.
        expect(run.lines).toEqual([...run.lines].sort((a, b) => a - b));
        expect(new Set(run.lines.map(keyOf)).size).toBe(1);
        expect(run.firstLine).toBe(run.lines[0]);
        expect(run.lastLine).toBe(run.lines.at(-1));
        expect(run.byteStart).toBe((run.lines[0] ?? 0) * 100);
        expect(run.byteEnd).toBe((run.lines.at(-1) ?? 0) * 100 + 99);
      }
    }
  });

  it('splits a large group evenly, and packs small groups one after another into a chunk', () => {
    const split = index(102, (i) => `k${i % 2}`).plan({ size: 50, maxGroups: 8, minRequests: 5 });
    expect(split?.chunks.map((c) => c.requests)).toEqual([25, 26, 25, 26]);
    // Ten groups of 20 in chunks of up to 100: five whole groups a chunk, sent a group at a time.
    const packed = index(200, (i) => `k${i % 10}`).plan({ size: 100, maxGroups: 16, minRequests: 5 });
    expect(packed?.chunks.map((c) => c.requests)).toEqual([100, 100]);
    expect(packed?.runs.map((runs) => runs.map((r) => r.lines.length))).toEqual([
      [20, 20, 20, 20, 20],
      [20, 20, 20, 20, 20],
    ]);
  });

  it('plans nothing apart when there is no second group or the file already keeps groups together', () => {
    expect(index(100, () => 'same').plan({ size: 10, maxGroups: 8, minRequests: 5 })).toBeNull();
    expect(index(100, () => null).plan({ size: 10, maxGroups: 8, minRequests: 5 })).toBeNull();
    // Sorted by prefix already: contiguous chunks group them as well.
    expect(index(100, (i) => (i <= 50 ? 'a' : 'b')).plan({ size: 10, maxGroups: 8, minRequests: 5 })).toBeNull();
    // Groups below the minimum are not groups.
    expect(index(100, (i) => `k${i % 50}`).plan({ size: 10, maxGroups: 8, minRequests: 5 })).toBeNull();
  });

  it('keeps only the largest maxGroups groups apart; the rest run together', () => {
    const keyOf = (i: number): string => (i % 4 === 0 ? 'big' : i % 4 === 1 ? 'mid' : `small${i % 8}`);
    const plan = index(400, keyOf).plan({ size: 100, maxGroups: 2, minRequests: 5 });
    expect(plan?.groups).toEqual([100, 100]);
    // big, mid, then every other line, in two chunks.
    expect(plan?.chunks.map((c) => c.requests)).toEqual([100, 100, 100, 100]);
    expect(new Set(plan?.runs[0]?.[0]?.lines.map(keyOf))).toEqual(new Set(['mid'])); // the first seen of equals
    expect(new Set(plan?.runs[1]?.[0]?.lines.map(keyOf))).toEqual(new Set(['big']));
    expect(new Set(plan?.runs[2]?.[0]?.lines.map(keyOf)).size).toBeGreaterThan(1);
  });
});
