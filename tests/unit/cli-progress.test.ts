// What the command line shows of a batch's progress (watch and top): a rate and an ETA from the
// first poll, smoothed after, and words for the phases that have no counts to show.
import type OpenAI from 'openai';
import { describe, expect, it } from 'vitest';

import { formatDuration, progressOf, Rate } from '../../cli/progress.js';
import { renderTop } from '../../cli/top.js';

type Batch = OpenAI.Batches.Batch;

const T0 = Date.parse('2026-12-03T10:00:00Z');

/** A batch as the API answers it (nulls where the SDK's types say optional). */
function batch(over: Record<string, unknown> & { done?: number; total?: number; failed?: number } = {}): Batch {
  const { done = 0, total = 500, failed = 0, ...rest } = over;
  return {
    id: 'batch_1',
    object: 'batch',
    endpoint: '/v1/chat/completions',
    input_file_id: 'file-1',
    completion_window: '24h',
    status: 'in_progress',
    created_at: T0 / 1000 - 60,
    in_progress_at: T0 / 1000 - 50,
    expires_at: T0 / 1000 + 86_400 - 60,
    model: 'llama',
    request_counts: { total, completed: done - failed, failed },
    ...rest,
  } as unknown as Batch;
}

describe("the command line's progress of a batch", () => {
  it('has a rate and an ETA at the first poll of a batch under way, from its time in progress', () => {
    const rate = new Rate();
    // 100 done in the 50 s since in_progress_at: 2 a second, 400 left.
    const r = rate.observe(batch({ done: 100 }), T0);
    expect(r).toBeCloseTo(2, 5);
    expect(progressOf(batch({ done: 100 }), r)).toEqual({
      phase: 'running',
      counts: '100/500 done, 0 failed',
      rate: '2.0',
      eta: '3m20s',
    });
  });

  it('smooths a burst instead of jumping with it, and follows a steady rate', () => {
    const rate = new Rate();
    rate.observe(batch({ done: 100 }), T0); // 2/s
    // A chunk's flush: 100 more in 2 s (50/s) is not the rate.
    const burst = rate.observe(batch({ done: 200 }), T0 + 2000);
    expect(burst).toBeGreaterThan(2);
    expect(burst).toBeLessThan(10);
    // Then a steady 10 a second for a minute: the rate comes to it.
    let r = burst;
    for (let s = 1; s <= 30; s++) r = rate.observe(batch({ done: 200 + 20 * s, total: 5000 }), T0 + 2000 + 2000 * s);
    expect(r).toBeGreaterThan(9);
    expect(r).toBeLessThan(11);
  });

  it('a clock ahead of the server does not make a huge first rate', () => {
    const r = new Rate().observe(batch({ done: 100, in_progress_at: T0 / 1000 + 30 }), T0);
    expect(r).toBeLessThanOrEqual(100);
  });

  it('says what a phase without counts is doing instead of 0/1', () => {
    const validating = batch({ status: 'validating', in_progress_at: null, total: 0 });
    expect(new Rate().observe(validating, T0)).toBe(0);
    expect(progressOf(validating, 0)).toEqual({
      phase: 'validating',
      counts: 'checking the input file',
      rate: '--',
      eta: '--',
    });
    expect(progressOf(batch({ status: 'finalizing', done: 500 }), 3)).toMatchObject({
      phase: 'finalizing',
      counts: '500/500 done, 0 failed',
      eta: 'writing files',
    });
    // Nothing done yet: no rate, no guess.
    expect(progressOf(batch(), 0)).toMatchObject({ rate: '--', eta: '--' });
  });

  it('formats durations as a person reads them', () => {
    expect(formatDuration(0.2)).toBe('1s');
    expect(formatDuration(59.5)).toBe('60s');
    expect(formatDuration(125)).toBe('2m05s');
    expect(formatDuration(3599.5)).toBe('1h00m');
    expect(formatDuration(7530)).toBe('2h05m');
    expect(formatDuration(Number.NaN)).toBe('--');
    expect(formatDuration(-5)).toBe('--');
  });

  it('top: a row a batch, in columns, and the totals', () => {
    const a = batch({ id: 'batch_a', done: 250, failed: 5 });
    const b = batch({ id: 'batch_b', status: 'validating', total: 0, in_progress_at: null, model: null });
    const table = renderTop(
      [a, b],
      new Map([
        ['batch_a', 5],
        ['batch_b', 0],
      ]),
      T0,
    ).split('\n');
    expect(table[0]).toMatch(/^BATCH +MODEL +PHASE +PROGRESS +REQ\/S +ETA +WINDOW LEFT$/);
    expect(table[1]).toMatch(/^batch_a +llama +running +\|######------\| +250\/500 done, 5 failed +5\.0 +50s +23h59m$/);
    expect(table[2]).toMatch(/^batch_b +- +validating +\|-{12}\| +checking the input file +-- +-- +23h59m$/);
    // Columns line up: each row's phase starts where the header's does.
    expect(table[1]!.indexOf('running')).toBe(table[0]!.indexOf('PHASE'));
    expect(table.at(-1)).toBe('2 unfinished · 250 requests left · 5.0 req/s together');
    expect(renderTop([], new Map(), T0)).toBe('No batch is running.');
  });
});
