// BatchWorkflow: validate → plan chunks → run them in a bounded window on the model's GPU task
// queue → finalize. Only ids, line ranges and counts pass through history; request bodies and
// results stay in the file store and Postgres.
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ActivityCancellationType,
  CancellationScope,
  isCancellation,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  rootCause,
  setHandler,
  sleep,
  startChild,
  upsertMemo,
  upsertSearchAttributes,
} from '@temporalio/workflow';

import type { BatchPlan, ControlActivities, FinalSummary, Outcome } from '../activities/batch-control.js';
import type { InferenceActivities } from '../activities/inference.js';
import type { ChunkPlan } from '../activities/validate.js';
import type { WebhookActivities } from '../activities/webhook-delivery.js';
import { AutoImportWorkflow, type AutoImportInput } from './auto-import.js';
import { cancelSignal, progressQuery, type BatchProgress } from './messages.js';
import { BatchModelKey, BatchRequestCountKey, BatchStatusKey } from './search-attributes.js';
import { WebhookDeliveryWorkflow, type WebhookDeliveryInput } from './webhook-delivery.js';

export interface BatchWorkflowInput {
  batchId: string;
  /** Timeouts and attempts of the orchestrator's own activities (validate, finalize), from the API's config. */
  control: {
    startToCloseMs: number;
    heartbeatTimeoutMs: number;
    retryInitialMs: number;
    retryMaxMs: number;
    maxAttempts?: number;
  };
  /** Unix seconds: when the completion window closes (counted from creation, validation included). */
  expiresAt?: number;
  /** Where and how the import into Label Studio runs once the batch is done. */
  curation?: { taskQueue: string; activity: AutoImportInput['activity'] };
  /** How the project's webhooks are told the batch is done. */
  webhooks?: { taskQueue: string; retry: WebhookDeliveryInput['retry'] };
}

export type BatchResult = FinalSummary | { status: 'failed'; errors: number };

type RunnablePlan = Extract<BatchPlan, { ok: true }>;

function setStatus(status: string): void {
  upsertSearchAttributes([{ key: BatchStatusKey, value: status }]);
}

function reasonOf(err: unknown): string {
  const cause = rootCause(err);
  return (cause ?? (err instanceof Error ? err.message : String(err))).slice(0, 500);
}

export async function BatchWorkflow(input: BatchWorkflowInput): Promise<BatchResult> {
  const { batchId } = input;
  const control = proxyActivities<ControlActivities>({
    startToCloseTimeout: input.control.startToCloseMs,
    heartbeatTimeout: input.control.heartbeatTimeoutMs,
    // Bounded: a step that keeps failing ends the batch with the reason instead of retrying forever.
    retry: {
      initialInterval: input.control.retryInitialMs,
      maximumInterval: input.control.retryMaxMs,
      backoffCoefficient: 2,
      maximumAttempts: input.control.maxAttempts ?? 0,
    },
  });

  const progress: BatchProgress = {
    phase: 'validating',
    requests: 0,
    completed: 0,
    failed: 0,
    chunks: { total: 0, done: 0, running: 0, deadLettered: 0 },
    cancelRequested: false,
    expired: false,
  };
  const root = CancellationScope.current();
  // Chunks run in their own scope, so cancel and expiry can stop them and still finalize.
  const work = new CancellationScope();
  setHandler(progressQuery, () => progress);
  setHandler(cancelSignal, () => {
    if (progress.cancelRequested || progress.phase === 'finalizing' || progress.phase === 'done') return;
    progress.cancelRequested = true;
    progress.phase = 'cancelling';
    setStatus('cancelling');
    work.cancel();
  });

  // The completion window runs from creation: a batch stuck before its chunks still expires.
  const expiry = new CancellationScope();
  const startExpiry = (expiresAt: number): void => {
    void expiry
      .run(() => sleep(Math.max(0, expiresAt * 1000 - Date.now())))
      .then(
        () => {
          progress.expired = true;
          work.cancel();
        },
        () => undefined,
      );
  };
  const expiryFromStart = input.expiresAt !== undefined && patched('expiry-from-creation');
  if (expiryFromStart && input.expiresAt !== undefined) startExpiry(input.expiresAt);

  // Validation always finishes: its result is what finalize needs, whatever happens meanwhile. When
  // it cannot (out of attempts), the batch fails saying why.
  let plan: BatchPlan;
  try {
    plan = await CancellationScope.nonCancellable(() => control.validateBatch(batchId));
  } catch (err) {
    if (!patched('bounded-control')) throw err;
    await CancellationScope.nonCancellable(() =>
      control.failBatch({
        batchId,
        code: 'validation_error',
        message: `The input file could not be validated: ${reasonOf(err)}`,
      }),
    );
    plan = { ok: false, errors: 1 };
  }
  if (!plan.ok) {
    expiry.cancel();
    progress.phase = 'done';
    setStatus('failed');
    await announce(input);
    return { status: 'failed', errors: plan.errors };
  }
  progress.requests = plan.requests;
  progress.chunks.total = plan.chunks.length;
  upsertSearchAttributes([
    { key: BatchModelKey, value: plan.model },
    { key: BatchRequestCountKey, value: plan.requests },
    { key: BatchStatusKey, value: progress.cancelRequested ? 'cancelling' : 'in_progress' },
  ]);
  if (progress.phase === 'validating') progress.phase = 'in_progress';

  if (!progress.cancelRequested && !root.consideredCancelled && !progress.expired) {
    if (!expiryFromStart) startExpiry(plan.expiresAt);
    try {
      await work.run(() => runChunks(batchId, plan, control, progress, work));
    } catch (err) {
      // Once cancel or expiry has begun, any chunk failure (Temporal does not retry an activity
      // whose cancel was requested) just means lines that never ran, which finalize reports.
      if (!isCancellation(err) && !work.consideredCancelled) throw err;
    }
    expiry.cancel();
  }

  const outcome: Outcome =
    progress.cancelRequested || root.consideredCancelled ? 'cancelled' : progress.expired ? 'expired' : 'completed';
  return CancellationScope.nonCancellable(async () => {
    if (outcome === 'completed') {
      progress.phase = 'finalizing';
      setStatus('finalizing');
      await control.markFinalizing(batchId);
    }
    const summary = await control.finalizeBatch({ batchId, inputKey: plan.inputKey, outcome });
    progress.phase = 'done';
    progress.completed = summary.completed;
    progress.failed = summary.failed;
    setStatus(summary.status);
    upsertMemo({
      completed: summary.completed,
      failed: summary.failed,
      outputFileId: summary.outputFileId,
      errorFileId: summary.errorFileId,
    });
    await announce(input);
    // Curation runs on its own, outliving this workflow: Label Studio can never hold up a batch.
    if (patched('auto-import') && input.curation !== undefined) {
      try {
        await startChild(AutoImportWorkflow, {
          workflowId: `${batchId}-curation`,
          taskQueue: input.curation.taskQueue,
          parentClosePolicy: ParentClosePolicy.ABANDON,
          args: [{ batchId, activity: input.curation.activity }],
        });
      } catch (err) {
        // A replayed or retried start finds its child already there: that is the point of its fixed id.
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
    }
    return summary;
  });
}

/**
 * Tells the project's webhooks that the batch ended: one delivery workflow per endpoint, abandoned,
 * so a receiver that is down for a day never keeps the batch open.
 */
async function announce(input: BatchWorkflowInput): Promise<void> {
  const webhooks = input.webhooks;
  if (!patched('webhooks') || webhooks === undefined) return;
  const { prepareDeliveries } = proxyActivities<WebhookActivities>({
    startToCloseTimeout: input.control.startToCloseMs,
    retry: {
      initialInterval: input.control.retryInitialMs,
      maximumInterval: input.control.retryMaxMs,
      backoffCoefficient: 2,
      maximumAttempts: input.control.maxAttempts ?? 0,
    },
  });
  // Whole, even when the workflow is being cancelled: deliveries once prepared must also be started.
  await CancellationScope.nonCancellable(async () => {
    let deliveries: string[];
    try {
      deliveries = await prepareDeliveries({ batchId: input.batchId });
    } catch (err) {
      // Webhooks tell of the end; they must never keep the batch from ending (or its curation from starting).
      if (!patched('bounded-control')) throw err;
      log.error('could not prepare webhook deliveries; the batch ends without them', {
        batchId: input.batchId,
        reason: reasonOf(err),
      });
      return;
    }
    for (const deliveryId of deliveries) {
      try {
        await startChild(WebhookDeliveryWorkflow, {
          workflowId: deliveryId,
          taskQueue: webhooks.taskQueue,
          parentClosePolicy: ParentClosePolicy.ABANDON,
          args: [{ deliveryId, retry: webhooks.retry }],
        });
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
    }
  });
}

/** Runs every chunk with at most plan.maxPendingChunks scheduled at once. */
async function runChunks(
  batchId: string,
  plan: RunnablePlan,
  control: ControlActivities,
  progress: BatchProgress,
  work: CancellationScope,
): Promise<void> {
  const settings = plan.chunkActivity;
  const inference = proxyActivities<InferenceActivities>({
    taskQueue: settings.taskQueue,
    startToCloseTimeout: settings.startToCloseMs,
    heartbeatTimeout: settings.heartbeatTimeoutMs,
    retry: {
      initialInterval: settings.retryInitialMs,
      maximumInterval: settings.retryMaxMs,
      backoffCoefficient: 2,
      maximumAttempts: settings.maxAttempts,
    },
    // Wait for the worker to acknowledge, so partial results are persisted before finalize reads them.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });

  let next = 0;
  const runOne = async (chunk: ChunkPlan): Promise<void> => {
    progress.chunks.running++;
    try {
      const summary = await inference.runChunk({ batchId, inputKey: plan.inputKey, endpoint: plan.endpoint, chunk });
      progress.completed += summary.completed;
      progress.failed += summary.failed;
      progress.chunks.done++;
    } catch (err) {
      if (isCancellation(err) || work.consideredCancelled) throw err;
      // The chunk ran out of retries (its worker keeps dying, or the engine stayed down past the
      // budget): its unfinished lines are reported as failed and the batch carries on.
      const counts = await control.deadLetterChunk({ batchId, inputKey: plan.inputKey, chunk, reason: reasonOf(err) });
      progress.completed += counts.completed;
      progress.failed += counts.failed;
      progress.chunks.deadLettered++;
      progress.chunks.done++;
    } finally {
      progress.chunks.running--;
    }
  };
  const lane = async (): Promise<void> => {
    while (next < plan.chunks.length && !work.consideredCancelled) {
      const chunk = plan.chunks[next++];
      if (chunk !== undefined) await runOne(chunk);
    }
  };
  const lanes = Array.from({ length: Math.min(plan.maxPendingChunks, plan.chunks.length) }, lane);
  // allSettled: every lane must be quiet (its chunk acknowledged) before finalize starts.
  const results = await Promise.allSettled(lanes);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}
