// The one sanitizer user text goes through before Postgres or a log: what it escapes, what it caps,
// and that whatever it returns is text Postgres stores.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { describeValue, isStorableText, nestsDeeperThan, safeText } from '../../lib/sanitize.js';

describe('safeText', () => {
  it('escapes NUL, control characters and unpaired surrogates, and keeps everything else', () => {
    expect(safeText('a\u0000b')).toBe('a\\u0000b');
    expect(safeText('line\nforged')).toBe('line\\u000aforged');
    expect(safeText('\ud800x\udc00')).toBe('\\ud800x\\udc00');
    expect(safeText('tab\tkept, é and 😀 kept')).toBe('tab\tkept, é and 😀 kept');
  });

  it('caps the length and says how much was left out, never splitting a surrogate pair', () => {
    expect(safeText('x'.repeat(500), 10)).toBe(`${'x'.repeat(10)}… (490 more characters)`);
    const emoji = '😀'.repeat(10);
    expect(safeText(emoji, 3).startsWith('😀😀')).toBe(true);
    expect(isStorableText(safeText(emoji, 3))).toBe(true);
  });

  it('always returns storable text of bounded length, whatever it is given', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), fc.integer({ min: 1, max: 200 }), (text, max) => {
        const safe = safeText(text, max);
        expect(isStorableText(safe)).toBe(true);
        expect(safe.length).toBeLessThanOrEqual(max * 6 + 40);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('describeValue and nestsDeeperThan', () => {
  it('describes any JSON value briefly, never serialising a deep one', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(describeValue(deep)).toBe('an array of 1');
    expect(describeValue({ a: 1 })).toBe('an object');
    expect(describeValue('GET\u0000')).toBe("'GET\\u0000'");
    expect(describeValue(null)).toBe('null');
  });

  it('measures nesting without recursion, up to a bound', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 200_000; i++) deep = { k: deep };
    expect(nestsDeeperThan(deep, 64)).toBe(true);
    expect(nestsDeeperThan({ a: [{ b: [1, 2] }] }, 4)).toBe(false);
    expect(nestsDeeperThan({ a: [{ b: [1, 2] }] }, 3)).toBe(true);
    expect(nestsDeeperThan('text', 0)).toBe(false);
  });
});
