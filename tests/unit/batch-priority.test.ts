import { describe, expect, it } from 'vitest';

import { loadConfig } from '../../lib/config.js';
import { batchPriority } from '../../workflows/batch-lifecycle.js';

const day = 86_400;

describe('batchPriority', () => {
  const config = loadConfig({ PROJECT_WEIGHTS: 'prod=4' });

  it('gives a batch without a priority of its own priority 2 when its window is at most an hour', () => {
    expect(batchPriority(config, { projectName: 'p', priority: null, windowSeconds: 3600 }).priorityKey).toBe(2);
    expect(batchPriority(config, { projectName: 'p', priority: null, windowSeconds: 30 }).priorityKey).toBe(2);
    // Longer: Temporal's default.
    expect(batchPriority(config, { projectName: 'p', priority: null, windowSeconds: 3601 })).not.toHaveProperty(
      'priorityKey',
    );
    expect(batchPriority(config, { projectName: 'p', priority: null, windowSeconds: day })).not.toHaveProperty(
      'priorityKey',
    );
  });

  it("keeps the batch's own priority, whatever its window", () => {
    expect(batchPriority(config, { projectName: 'p', priority: 5, windowSeconds: 60 }).priorityKey).toBe(5);
    expect(batchPriority(config, { projectName: 'p', priority: 1, windowSeconds: day }).priorityKey).toBe(1);
  });

  it('leaves the window out of it with URGENT_WINDOW_SECONDS=0', () => {
    const off = loadConfig({ URGENT_WINDOW_SECONDS: '0' });
    expect(batchPriority(off, { projectName: 'p', priority: null, windowSeconds: 30 })).not.toHaveProperty(
      'priorityKey',
    );
  });

  it("carries the project's fairness key and weight", () => {
    expect(batchPriority(config, { projectName: 'prod', priority: null, windowSeconds: day })).toEqual({
      fairnessKey: 'prod',
      fairnessWeight: 4,
    });
    expect(batchPriority(config, { projectName: 'other', priority: 3, windowSeconds: day })).toEqual({
      priorityKey: 3,
      fairnessKey: 'other',
      fairnessWeight: 1,
    });
  });
});
