// The activity settings workflows were given before they took Temporal's own ActivityOptions:
// millisecond numbers in shapes of our own. Workflows started then are still running (a webhook
// delivery retries for a day, a batch runs for up to its window), and their histories hold these
// shapes, in their inputs and in the plan validateBatch returned; a replay hands them to today's
// code. Each function turns an old shape into the options the old code built from it, field for
// field, so such a workflow goes on exactly as it would have. Pure: workflow code calls these.
import type { ActivityOptions } from '@temporalio/workflow';

/** BatchWorkflowInput.control, before. */
export interface LegacyControlSettings {
  startToCloseMs: number;
  heartbeatTimeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** Absent from the oldest inputs: attempts were not bounded then. */
  maxAttempts?: number;
}

/** The plan's chunkActivity (ChunkActivitySettings), before. */
export interface LegacyChunkSettings {
  taskQueue: string;
  startToCloseMs: number;
  heartbeatTimeoutMs: number;
  maxAttempts: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

/** AutoImportInput.activity, before. */
export interface LegacyImportSettings {
  startToCloseMs: number;
  retryHours: number;
  retryInitialMs: number;
  retryMaxMs: number;
  notRetryable: string[];
}

/** WebhookDeliveryInput.retry, before. */
export interface LegacyWebhookRetry {
  attemptTimeoutMs: number;
  windowSeconds: number;
  initialMs: number;
  maxMs: number;
}

/** Old shapes all name the start-to-close timeout in milliseconds; ActivityOptions never does. */
export function isLegacy<T extends object>(settings: ActivityOptions | T): settings is T {
  return !('startToCloseTimeout' in settings);
}

export function controlOptions(old: LegacyControlSettings): ActivityOptions {
  return {
    startToCloseTimeout: old.startToCloseMs,
    heartbeatTimeout: old.heartbeatTimeoutMs,
    retry: {
      initialInterval: old.retryInitialMs,
      maximumInterval: old.retryMaxMs,
      maximumAttempts: old.maxAttempts ?? 0,
    },
  };
}

export function chunkOptions(old: LegacyChunkSettings): ActivityOptions {
  return {
    taskQueue: old.taskQueue,
    startToCloseTimeout: old.startToCloseMs,
    heartbeatTimeout: old.heartbeatTimeoutMs,
    retry: { initialInterval: old.retryInitialMs, maximumInterval: old.retryMaxMs, maximumAttempts: old.maxAttempts },
  };
}

export function importOptions(old: LegacyImportSettings): ActivityOptions {
  return {
    startToCloseTimeout: old.startToCloseMs,
    scheduleToCloseTimeout: old.retryHours * 3600 * 1000,
    retry: {
      initialInterval: old.retryInitialMs,
      maximumInterval: old.retryMaxMs,
      nonRetryableErrorTypes: old.notRetryable,
    },
  };
}

export function webhookOptions(old: LegacyWebhookRetry): ActivityOptions {
  return {
    startToCloseTimeout: old.attemptTimeoutMs,
    scheduleToCloseTimeout: old.windowSeconds * 1000,
    retry: { initialInterval: old.initialMs, maximumInterval: old.maxMs },
  };
}
