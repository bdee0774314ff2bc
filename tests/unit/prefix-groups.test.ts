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
  it('plans interleaved groups apart, each chunk one group, every line once', () => {
    // Three prompts in turn, and every tenth line without a shared prefix.
    const keyOf = (i: number): string | null => (i % 10 === 0 ? null : `k${i % 3}`);
    const plan = index(300, keyOf).plan({ size: 40, maxGroups: 8, minRequests: 5 });
    expect(plan).not.toBeNull();
    if (plan === null) return;
    const all = plan.lines.flat().sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(plan.groups).toHaveLength(3);
    for (const [i, chunk] of plan.chunks.entries()) {
      const members = plan.lines[i] ?? [];
      expect(chunk.index).toBe(i);
      expect(chunk.requests).toBe(members.length);
      expect(members.length).toBeLessThanOrEqual(40);
      // In input order, and the span is from the first member to the last.
      expect(members).toEqual([...members].sort((a, b) => a - b));
      expect(chunk.firstLine).toBe(members[0]);
      expect(chunk.lastLine).toBe(members.at(-1));
      expect(chunk.byteStart).toBe((members[0] ?? 0) * 100);
      expect(chunk.byteEnd).toBe((members.at(-1) ?? 0) * 100 + 99);
      expect(new Set(members.map(keyOf)).size).toBe(1);
    }
  });

  it('splits a group evenly between chunks', () => {
    const plan = index(102, (i) => `k${i % 2}`).plan({ size: 50, maxGroups: 8, minRequests: 5 });
    expect(plan?.chunks.map((c) => c.requests)).toEqual([25, 26, 25, 26]);
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
    const plan = index(400, keyOf).plan({ size: 1000, maxGroups: 2, minRequests: 5 });
    expect(plan?.groups).toEqual([100, 100]);
    // big, mid, then every other line in one chunk.
    expect(plan?.chunks.map((c) => c.requests)).toEqual([100, 100, 200]);
  });
});
