// What the Temporal UI shows of a batch: the lines an operator reads at a glance.
import { describe, expect, it } from 'vitest';

import type { ChunkPlan } from '../../activities/validate.js';
import { formatBytes, formatCount } from '../../lib/units.js';
import {
  batchCurrentDetails,
  batchDetails,
  batchSummary,
  chunkSummary,
  deadLetterSummary,
  validateSummary,
} from '../../workflows/batch-display.js';
import type { BatchProgress } from '../../workflows/messages.js';

const start = {
  projectName: 'search-team',
  endpoint: '/v1/chat/completions',
  inputFileId: 'file-abc',
  inputBytes: 212_345_678,
  completionWindow: '24h',
  expiresAt: Date.parse('2026-12-04T13:48:02Z') / 1000,
  priority: null,
};

function progress(over: Partial<BatchProgress> = {}): BatchProgress {
  return {
    phase: 'in_progress',
    requests: 2000,
    completed: 740,
    failed: 10,
    chunks: { total: 8, done: 3, running: 3, deadLettered: 0 },
    cancelRequested: false,
    expired: false,
    expiresAt: '2026-12-04T13:48:02.000Z',
    eta: '2026-12-03T13:49:40.000Z',
    late: false,
    ...over,
  };
}

const chunk = (over: Partial<ChunkPlan> = {}): ChunkPlan => ({
  index: 2,
  firstLine: 1001,
  lastLine: 1500,
  byteStart: 0,
  byteEnd: 10,
  requests: 500,
  ...over,
});

describe('numbers and sizes', () => {
  it('groups thousands and keeps one decimal', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1000)).toBe('1,000');
    expect(formatCount(1_234_567)).toBe('1,234,567');
    expect(formatCount(37.5)).toBe('37.5');
    expect(formatCount(20.74)).toBe('20.7');
  });

  it('writes sizes in binary units to a tenth', () => {
    expect(formatBytes(812)).toBe('812 B');
    expect(formatBytes(3_482)).toBe('3.4 KB');
    expect(formatBytes(349_780)).toBe('341.6 KB');
    expect(formatBytes(200 * 1024 * 1024)).toBe('200.0 MB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GB');
  });
});

describe("a batch's summary and details", () => {
  it('says project, endpoint, input size and window in one line', () => {
    expect(batchSummary(start)).toBe('search-team · /v1/chat/completions · 202.5 MB input · 24h window');
  });

  it('names the input file, the fairness key, the priority and when the window closes', () => {
    const details = batchDetails({ ...start, priority: 2 }, 'search-team');
    expect(details).toContain('**Project** search-team (fairness key search-team) · **Priority** 2');
    expect(details).toContain('**Input file** `file-abc` (202.5 MB) · **Window** 24h, until 2026-12-04 13:48:02 UTC');
  });

  it('keeps a summary short whatever the name (Temporal refuses one over 400 bytes, and with it the batch)', () => {
    const summary = batchSummary({ ...start, projectName: '*'.repeat(1000) });
    expect(Buffer.byteLength(summary)).toBeLessThan(400);
    expect(summary).toMatch(/^(\\\*)+… \(\d+ more characters\) · \/v1\/chat\/completions/);
    expect(Buffer.byteLength(batchDetails({ ...start, projectName: '_'.repeat(1000) }, 'x'))).toBeLessThan(1000);
  });

  it('keeps a name on one line, and its list or heading markers as text', () => {
    expect(batchSummary({ ...start, projectName: 'a\n===\r\nb' })).toMatch(/^a\\\\u000a===\\\\u000d\\\\u000ab · /);
    expect(batchSummary({ ...start, projectName: '- item' })).toMatch(/^\\- item · /);
    expect(batchSummary({ ...start, projectName: '1. first' })).toMatch(/^1\\. first · /);
  });

  it("shows a name's markdown as written, not as markup", () => {
    const summary = batchSummary({ ...start, projectName: '**big** [x](http://evil)' });
    expect(summary).toContain('\\*\\*big\\*\\* \\[x\\](http\\://evil)');
    const details = batchCurrentDetails(progress(), { model: 'm_<b>' }, 1);
    expect(details).toContain('m\\_\\<b\\>');
  });
});

describe("a batch's current details", () => {
  it('while validating: only that', () => {
    expect(batchCurrentDetails(progress({ phase: 'validating' }), undefined, null)).toBe(
      '**validating the input file**',
    );
  });

  it('while running: how far, how fast and until when, what runs', () => {
    const lines = batchCurrentDetails(progress(), { model: 'llama-3' }, 20.74).split('\n\n');
    expect(lines).toEqual([
      '**in progress** · 750 of 2,000 requests done (37.5%) · 10 failed',
      '**Rate** 20.7 requests/s · **ETA** 12-03 13:49:40 UTC · **Window** until 12-04 13:48:02 UTC',
      '**Model** llama-3 · **Chunks** 3 running, 3 of 8 done',
    ]);
  });

  it('warns when the ETA is past the window, and counts dead-lettered chunks', () => {
    const text = batchCurrentDetails(
      progress({ late: true, chunks: { total: 8, done: 4, running: 2, deadLettered: 1 } }),
      { model: 'llama-3' },
      5,
    );
    expect(text).toContain('**ETA** 12-03 13:49:40 UTC ⚠ after the window closes');
    expect(text).toContain('2 running, 4 of 8 done, 1 dead-lettered');
  });

  it('says 100% only once every request is done', () => {
    const text = batchCurrentDetails(progress({ completed: 1999, failed: 0 }), { model: 'm' }, 1);
    expect(text).toContain('1,999 of 2,000 requests done (99.9%)');
  });

  it('no rate or ETA before a chunk has ended', () => {
    const text = batchCurrentDetails(progress({ completed: 0, failed: 0, eta: null }), { model: 'm' }, null);
    expect(text).not.toContain('Rate');
    expect(text).not.toContain('ETA');
    expect(text).toContain('**Window** until 12-04 13:48:02 UTC');
  });

  it('says when it is cancelling, expired or ended, and drops what no longer applies', () => {
    expect(batchCurrentDetails(progress({ phase: 'cancelling', cancelRequested: true }), { model: 'm' }, 3)).toMatch(
      /^\*\*cancelling \(unfinished lines end as cancelled\)\*\*/,
    );
    const expired = batchCurrentDetails(progress({ expired: true }), { model: 'm' }, 3);
    expect(expired).toMatch(/^\*\*expired: finishing what ran\*\*/);
    expect(expired).not.toContain('ETA');
    const ended = batchCurrentDetails(
      progress({ phase: 'done', completed: 1990, failed: 10 }),
      { model: 'm' },
      30,
      'completed',
    );
    expect(ended.split('\n\n')[0]).toBe('**completed** · 2,000 of 2,000 requests done (100%) · 10 failed');
    expect(ended).not.toMatch(/Rate|ETA|Window/);
  });
});

describe('activity lines', () => {
  it('say which chunk of how many and which lines', () => {
    expect(chunkSummary(chunk(), 40)).toBe('chunk 3/40 · lines 1,001–1,500');
    expect(deadLetterSummary(chunk(), 40)).toBe('dead-letter chunk 3/40 · lines 1,001–1,500 (out of retries)');
  });

  it("say a prefix-grouped chunk holds only some of its span's lines", () => {
    expect(chunkSummary(chunk({ members: 'results/b/plan-x/chunk-2.json', requests: 120 }), 40)).toBe(
      'chunk 3/40 · 120 requests of lines 1,001–1,500 (a prefix group)',
    );
  });

  it("say the input file's size when validating", () => {
    expect(validateSummary(200 * 1024 * 1024)).toBe('validate 200.0 MB');
    expect(validateSummary(undefined)).toBe('validate the input file');
  });
});
