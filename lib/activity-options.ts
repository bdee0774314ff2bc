// Every activity's timeouts and retries, as Temporal's own ActivityOptions, built from the
// configuration in this one place. Workflows receive them in their inputs (or, for chunks, in the
// batch's plan) and pass them to proxyActivities unchanged; backoff doubles (Temporal's default).
import type { ActivityOptions } from '@temporalio/workflow';

import { CURATION_NOT_RETRYABLE } from '../workflows/failure-types.js';
import type { Config } from './config.js';

/** The orchestrator's own steps (validate, dead-letter, finalize): a bounded number of attempts each. */
export function controlActivityOptions(config: Config): ActivityOptions {
  const control = config.batch.control;
  return {
    startToCloseTimeout: control.startToCloseMs,
    heartbeatTimeout: control.heartbeatTimeoutMs,
    retry: {
      initialInterval: control.retryInitialMs,
      maximumInterval: control.retryMaxMs,
      maximumAttempts: control.maxAttempts,
    },
  };
}

/** One chunk on the GPU task queue of the batch's model; out of attempts, it is dead-lettered. */
export function chunkActivityOptions(config: Config, taskQueue: string): ActivityOptions {
  const batch = config.batch;
  return {
    taskQueue,
    startToCloseTimeout: batch.chunkStartToCloseMs,
    heartbeatTimeout: batch.chunkHeartbeatTimeoutMs,
    retry: {
      initialInterval: batch.chunkRetryInitialMs,
      maximumInterval: batch.chunkRetryMaxMs,
      maximumAttempts: batch.chunkMaxAttempts,
    },
  };
}

/** An import step: a Label Studio outage is ridden out for hours; bad credentials or choices end at once. */
export function autoImportActivityOptions(config: Config): ActivityOptions {
  return {
    startToCloseTimeout: config.curation.stepTimeoutMs,
    scheduleToCloseTimeout: config.curation.retryHours * 3600 * 1000,
    retry: {
      initialInterval: config.batch.control.retryInitialMs,
      maximumInterval: config.batch.control.retryMaxMs,
      nonRetryableErrorTypes: CURATION_NOT_RETRYABLE,
    },
  };
}

/** A delivery's attempts, for as long as the retry window; one attempt is the request's timeout plus room to record it. */
export function webhookDeliveryActivityOptions(config: Config): ActivityOptions {
  const webhooks = config.webhooks;
  return {
    startToCloseTimeout: webhooks.timeoutMs * 2,
    scheduleToCloseTimeout: webhooks.retryWindowSeconds * 1000,
    retry: { initialInterval: webhooks.retryInitialMs, maximumInterval: webhooks.retryMaxMs },
  };
}
