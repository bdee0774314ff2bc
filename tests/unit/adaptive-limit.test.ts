import { describe, expect, it } from 'vitest';

import {
  AdaptiveLimit,
  NO_READING,
  type AdaptiveLimitOptions,
  type EngineLoad,
  type LimitChange,
} from '../../lib/adaptive-limit.js';

const options: AdaptiveLimitOptions = {
  floor: 8,
  ceiling: 256,
  increase: 8,
  decrease: 0.5,
  maxWaiting: 4,
  maxKvUsage: 0.95,
  ttftTargetMs: undefined,
  itlTargetMs: undefined,
  latencyHeadroom: 0.1,
  latencyReadings: 1,
  holdMs: 5000,
};

const idle: EngineLoad = {
  waiting: 0,
  kvUsage: 0.5,
  preemptions: 0,
  ttftSeconds: { sum: 0, count: 0 },
  itlSeconds: { sum: 0, count: 0 },
};

/** Readings of one of the engine's latency histograms whose mean over each interval is the given ms (1,000 samples each). */
function latencyReadings(histogram: 'ttftSeconds' | 'itlSeconds'): (meanMs: number) => EngineLoad {
  let sum = 0;
  let count = 0;
  return (meanMs) => {
    sum += meanMs;
    count += 1000;
    return { ...idle, [histogram]: { sum, count } };
  };
}

function limitWithMoves(o: Partial<AdaptiveLimitOptions> = {}): { limit: AdaptiveLimit; moves: LimitChange[] } {
  const moves: LimitChange[] = [];
  return { limit: new AdaptiveLimit({ ...options, ...o }, (_, why) => moves.push(why)), moves };
}

describe('AdaptiveLimit', () => {
  it('starts at the ceiling, and an engine that takes everything never moves it', () => {
    const { limit, moves } = limitWithMoves();
    for (let t = 0; t < 60; t++) limit.observe(idle, 256, t * 1000);
    expect(limit.limit).toBe(256);
    expect(moves).toEqual([]);
  });

  it('cuts by the factor on a rate limit, once per hold, and not below the floor', () => {
    const { limit, moves } = limitWithMoves();
    limit.overloaded('rate_limited', 0);
    limit.overloaded('rate_limited', 10); // the same burst of 429s: one cut
    expect(limit.limit).toBe(128);
    for (let t = 1; t <= 20; t++) limit.overloaded('unavailable', t * 5000);
    expect(limit.limit).toBe(8);
    expect(moves.slice(0, 2)).toEqual(['rate_limited', 'unavailable']);
  });

  it('grows back additively after the hold, only while the limit is in use', () => {
    const { limit } = limitWithMoves();
    limit.overloaded('timeout', 0);
    limit.observe(idle, 128, 1000); // within the hold: no growth
    expect(limit.limit).toBe(128);
    limit.observe(idle, 128, 6000);
    expect(limit.limit).toBe(136);
    limit.observe(idle, 20, 7000); // little in flight: nothing proves the engine takes more
    expect(limit.limit).toBe(136);
    for (let t = 8; t < 100; t++) limit.observe(idle, limit.limit, t * 1000);
    expect(limit.limit).toBe(256);
  });

  it('cuts to what the engine runs when requests keep waiting in its queue, and holds the engine full', () => {
    const { limit, moves } = limitWithMoves();
    // The engine runs 128 (its capacity halved); 128 of the worker's 256 wait, two readings in a row.
    limit.observe({ ...idle, waiting: 128 }, 256, 0);
    expect(limit.limit).toBe(256);
    limit.observe({ ...idle, waiting: 128 }, 256, 1000);
    expect(limit.limit).toBe(132);
    // Probing above: grows while the queue stays short, back down once it stays long.
    limit.observe({ ...idle, waiting: 4 }, 132, 2000);
    expect(limit.limit).toBe(140);
    limit.observe({ ...idle, waiting: 12 }, 140, 3000);
    limit.observe({ ...idle, waiting: 12 }, 140, 4000);
    expect(limit.limit).toBe(132);
    expect(moves).toEqual(['queue', 'increase', 'increase', 'queue']);
  });

  it("does not cut for one reading's burst of arrivals waiting for the next step", () => {
    const { limit, moves } = limitWithMoves();
    for (let t = 0; t < 10; t++) limit.observe({ ...idle, waiting: t % 2 === 0 ? 0 : 68 }, 256, t * 1000);
    expect(limit.limit).toBe(256);
    expect(moves).toEqual([]);
  });

  it('yields to other clients queued at the engine, down to the floor', () => {
    const { limit } = limitWithMoves();
    limit.observe({ ...idle, waiting: 500 }, 100, 0);
    limit.observe({ ...idle, waiting: 500 }, 100, 1000);
    expect(limit.limit).toBe(8);
  });

  it('cuts on preemptions counted since the last reading, not on the counter itself', () => {
    const { limit, moves } = limitWithMoves();
    limit.observe({ ...idle, preemptions: 40 }, 256, 0); // preempted before this worker was watching
    expect(limit.limit).toBe(256);
    limit.observe({ ...idle, preemptions: 41 }, 256, 1000);
    expect(limit.limit).toBe(128);
    limit.observe({ ...idle, preemptions: 0 }, 128, 7000); // the engine restarted: counters reset
    expect(moves).toEqual(['preemption', 'increase']);
  });

  it('stops growing while the KV cache is nearly full', () => {
    const { limit } = limitWithMoves();
    limit.overloaded('timeout', 0);
    limit.observe({ ...idle, kvUsage: 0.97 }, 128, 6000);
    expect(limit.limit).toBe(128);
    limit.observe({ ...idle, kvUsage: 0.9 }, 128, 7000);
    expect(limit.limit).toBe(136);
  });

  it("starts at the floor when steered by time to first token, and cuts when the engine's mean over a reading passes the target", () => {
    const { limit, moves } = limitWithMoves({ ttftTargetMs: 200 });
    // A worker that joins an engine with online users grows into its room instead of swamping it.
    expect(limit.limit).toBe(8);
    limit.observe({ ...idle, ttftSeconds: { sum: 10, count: 100 } }, 8, 0);
    limit.observe({ ...idle, ttftSeconds: { sum: 20, count: 200 } }, 16, 1000); // 100 ms each: fine
    expect(limit.limit).toBe(24);
    limit.observe({ ...idle, ttftSeconds: { sum: 50, count: 300 } }, 24, 2000); // 300 ms each
    expect(limit.limit).toBe(12);
    expect(moves).toEqual(['increase', 'increase', 'slow_first_token']);
  });

  it('stops growing once the mean time to first token comes within the headroom of the target', () => {
    const { limit } = limitWithMoves({ ttftTargetMs: 200, floor: 128 });
    expect(limit.limit).toBe(128);
    const reading = latencyReadings('ttftSeconds');
    // Past the hold, 150 ms each (well below 200): it grows by 8 a reading.
    for (let t = 5; t <= 7; t++) limit.observe(reading(150), limit.limit, t * 1000);
    expect(limit.limit).toBe(152);
    // 190 ms: within 10% of the target, it holds where it is, without a cut.
    for (let t = 8; t <= 20; t++) limit.observe(reading(190), limit.limit, t * 1000);
    expect(limit.limit).toBe(152);
    // Back down to 150 ms: it grows again.
    limit.observe(reading(150), limit.limit, 21_000);
    expect(limit.limit).toBe(160);
    // With no headroom it grows up to the target.
    const { limit: eager } = limitWithMoves({ ttftTargetMs: 200, latencyHeadroom: 0, floor: 128 });
    const eagerReading = latencyReadings('ttftSeconds');
    for (let t = 5; t <= 7; t++) eager.observe(eagerReading(190), eager.limit, t * 1000);
    expect(eager.limit).toBe(152);
  });

  it("cuts when the engine's mean time between tokens passes its target, and stops growing near it", () => {
    const { limit, moves } = limitWithMoves({ itlTargetMs: 20 });
    expect(limit.limit).toBe(8);
    const reading = latencyReadings('itlSeconds');
    for (let t = 0; t < 5; t++) limit.observe(reading(12), limit.limit, t * 1000);
    expect(limit.limit).toBe(48);
    // 19 ms: within 10% of 20, no growth and no cut.
    for (let t = 5; t < 10; t++) limit.observe(reading(19), limit.limit, t * 1000);
    expect(limit.limit).toBe(48);
    limit.observe(reading(25), limit.limit, 10_000);
    expect(limit.limit).toBe(24);
    expect(moves.at(-1)).toBe('slow_tokens');
    // Still slow a second later: with 48 still in flight the cut has not shown yet, so no second cut;
    // once this worker is down to 24, the next slow reading cuts again without waiting for the hold.
    limit.observe(reading(25), 48, 11_000);
    expect(limit.limit).toBe(24);
    limit.observe(reading(25), 24, 12_000);
    expect(limit.limit).toBe(12);
  });

  it('takes a latency mean over several readings, so one burst does not cut', () => {
    const { limit, moves } = limitWithMoves({ itlTargetMs: 20, latencyReadings: 3, floor: 64 });
    const reading = latencyReadings('itlSeconds');
    for (let t = 0; t < 4; t++) limit.observe(reading(12), limit.limit, t * 1000);
    // One reading at 33 ms among 12s: the mean over three is 19, within the headroom: held, not cut.
    limit.observe(reading(33), limit.limit, 4000);
    expect(moves).not.toContain('slow_tokens');
    const held = limit.limit;
    limit.observe(reading(12), limit.limit, 5000);
    expect(limit.limit).toBe(held);
    // Slow for long enough: cut.
    for (let t = 6; t < 9; t++) limit.observe(reading(33), limit.limit, t * 1000);
    expect(moves).toContain('slow_tokens');
  });

  it('grows back after the hold when the engine has no readable metrics, cut only by its answers', () => {
    const { limit } = limitWithMoves();
    limit.overloaded('rate_limited', 0);
    expect(limit.limit).toBe(128);
    limit.observe(NO_READING, 128, 1000);
    expect(limit.limit).toBe(128);
    for (let t = 6; t < 30; t++) limit.observe(NO_READING, limit.limit, t * 1000);
    expect(limit.limit).toBe(256);
  });

  it('refuses a floor above the ceiling', () => {
    expect(() => new AdaptiveLimit({ ...options, floor: 300 })).toThrow(/floor/);
  });
});
