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
  holdMs: 5000,
};

const idle: EngineLoad = { waiting: 0, kvUsage: 0.5, preemptions: 0, ttftSeconds: { sum: 0, count: 0 } };

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

  it("cuts when the engine's mean time to first token over a reading passes the target", () => {
    const { limit, moves } = limitWithMoves({ ttftTargetMs: 200 });
    limit.observe({ ...idle, ttftSeconds: { sum: 10, count: 100 } }, 256, 0);
    limit.observe({ ...idle, ttftSeconds: { sum: 20, count: 200 } }, 256, 1000); // 100 ms each: fine
    expect(limit.limit).toBe(256);
    limit.observe({ ...idle, ttftSeconds: { sum: 50, count: 300 } }, 256, 2000); // 300 ms each
    expect(limit.limit).toBe(128);
    expect(moves).toEqual(['slow_first_token']);
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
