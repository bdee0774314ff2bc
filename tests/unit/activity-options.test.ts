// Workflows started before ActivityOptions carry the old settings, built from the same configuration;
// read through legacy-inputs.ts they must give exactly the options today's inputs carry.
import { describe, expect, it } from 'vitest';

import {
  autoImportActivityOptions,
  chunkActivityOptions,
  controlActivityOptions,
  webhookDeliveryActivityOptions,
} from '../../lib/activity-options.js';
import { loadConfig } from '../../lib/config.js';
import { CURATION_NOT_RETRYABLE } from '../../workflows/failure-types.js';
import { chunkOptions, controlOptions, importOptions, webhookOptions } from '../../workflows/legacy-inputs.js';

describe('activity options', () => {
  const config = loadConfig({ CONTROL_MAX_ATTEMPTS: '7', CHUNK_MAX_ATTEMPTS: '3' });

  it('read from an old input, equal what the configuration builds today', () => {
    // The old shapes, as the old start code built them from the configuration.
    expect(controlOptions(config.batch.control)).toEqual(controlActivityOptions(config));
    expect(
      chunkOptions({
        taskQueue: 'inference-m',
        startToCloseMs: config.batch.chunkStartToCloseMs,
        heartbeatTimeoutMs: config.batch.chunkHeartbeatTimeoutMs,
        maxAttempts: config.batch.chunkMaxAttempts,
        retryInitialMs: config.batch.chunkRetryInitialMs,
        retryMaxMs: config.batch.chunkRetryMaxMs,
      }),
    ).toEqual(chunkActivityOptions(config, 'inference-m'));
    expect(
      importOptions({
        startToCloseMs: config.curation.stepTimeoutMs,
        retryHours: config.curation.retryHours,
        retryInitialMs: config.batch.control.retryInitialMs,
        retryMaxMs: config.batch.control.retryMaxMs,
        notRetryable: ['LabelStudioAuthError', 'CurationChoiceError', 'LabelStudioRefused'],
      }),
    ).toEqual(autoImportActivityOptions(config));
    expect(
      webhookOptions({
        attemptTimeoutMs: config.webhooks.timeoutMs * 2,
        windowSeconds: config.webhooks.retryWindowSeconds,
        initialMs: config.webhooks.retryInitialMs,
        maxMs: config.webhooks.retryMaxMs,
      }),
    ).toEqual(webhookDeliveryActivityOptions(config));
  });

  it('keep attempts unbounded for the oldest control settings, which had no maxAttempts', () => {
    const { maxAttempts: _, ...oldest } = config.batch.control;
    expect(controlOptions(oldest).retry?.maximumAttempts).toBe(0);
    expect(autoImportActivityOptions(config).retry?.nonRetryableErrorTypes).toEqual(CURATION_NOT_RETRYABLE);
  });
});
