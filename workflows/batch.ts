// BatchWorkflow: validate → plan chunks → run them in a bounded window on the model's GPU task
// queue → finalize. Only ids, line ranges and counts pass through history; request bodies and
// results stay in the file store and Postgres.
import {
  ActivityCancellationType,
  CancellationScope,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  type ActivityInterfaceFor,
  type ActivityOptions,
} from '@temporalio/workflow';

import type { BatchPlan, ControlActivities, FinalSummary, Outcome } from '../activities/batch-control.js';
import type { InferenceActivities } from '../activities/inference.js';
import type { ChunkPlan } from '../activities/validate.js';
import type { WebhookActivities } from '../activities/webhook-delivery.js';
import { startAbandonedChild } from './abandoned-child.js';
import { AutoImportWorkflow, autoImportWorkflowId } from './auto-import.js';
import { chunkSummary, deadLetterSummary, draftSummary, validateSummary } from './batch-display.js';
import { BatchTracker } from './batch-progress.js';
import { reasonOf } from './failure-types.js';
import {
  chunkOptions,
  controlOptions,
  importOptions,
  isLegacy,
  webhookOptions,
  type LegacyChunkSettings,
  type LegacyControlSettings,
  type LegacyImportSettings,
  type LegacyWebhookRetry,
} from './legacy-inputs.js';
import { cancelSignal, progressQuery } from './messages.js';
import { OutputDrafter } from './output-drafts.js';
import { WebhookDeliveryWorkflow } from './webhook-delivery.js';

export interface BatchWorkflowInput {
  batchId: string;
  /** The orchestrator's own activities (validate, dead-letter, finalize, preparing deliveries). */
  control: ActivityOptions;
  /** Unix seconds: when the completion window closes (counted from creation, validation included). */
  expiresAt?: number;
  /** The input file's size, for the line on its validation in the Temporal UI. */
  inputBytes?: number;
  /** Where and how the import into Label Studio runs once the batch is done. */
  curation?: { taskQueue: string; activity: ActivityOptions };
  /** Where and how the project's webhooks are told the batch is done. */
  webhooks?: { taskQueue: string; activity: ActivityOptions };
}

/** An input as histories hold it: batches started before ActivityOptions carry the old settings. */
interface RecordedBatchWorkflowInput {
  batchId: string;
  control: ActivityOptions | LegacyControlSettings;
  expiresAt?: number;
  inputBytes?: number;
  curation?: { taskQueue: string; activity: ActivityOptions | LegacyImportSettings };
  webhooks?: { taskQueue: string; activity: ActivityOptions } | { taskQueue: string; retry: LegacyWebhookRetry };
}

export type BatchResult = FinalSummary | { status: 'failed'; errors: number };

type RunnablePlan = Extract<BatchPlan, { ok: true }>;

/** A plan as histories hold it: validateBatch returned the chunk settings in the old shape before. */
type RecordedPlan = BatchPlan | (Omit<RunnablePlan, 'chunkActivity'> & { chunkActivity: LegacyChunkSettings });

/**
 * Running batches were started, and planned, with the old settings (see legacy-inputs.ts): they are
 * read here into today's shapes, so the rest of the workflow knows one shape and issues the same
 * commands for them as the code they started on.
 */
function normalizeInput(input: RecordedBatchWorkflowInput): BatchWorkflowInput {
  const { curation, webhooks } = input;
  return {
    batchId: input.batchId,
    control: isLegacy(input.control) ? controlOptions(input.control) : input.control,
    ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt } : {}),
    ...(input.inputBytes !== undefined ? { inputBytes: input.inputBytes } : {}),
    ...(curation !== undefined
      ? {
          curation: {
            taskQueue: curation.taskQueue,
            activity: isLegacy(curation.activity) ? importOptions(curation.activity) : curation.activity,
          },
        }
      : {}),
    ...(webhooks !== undefined
      ? {
          webhooks: {
            taskQueue: webhooks.taskQueue,
            activity: 'retry' in webhooks ? webhookOptions(webhooks.retry) : webhooks.activity,
          },
        }
      : {}),
  };
}

function normalizePlan(plan: RecordedPlan): BatchPlan {
  if (!plan.ok) return plan;
  const { chunkActivity } = plan;
  return { ...plan, chunkActivity: isLegacy(chunkActivity) ? chunkOptions(chunkActivity) : chunkActivity };
}

export async function BatchWorkflow(given: RecordedBatchWorkflowInput): Promise<BatchResult> {
  const input = normalizeInput(given);
  const { batchId } = input;
  // Bounded: a step that keeps failing ends the batch with the reason instead of retrying forever.
  const control = proxyActivities<ControlActivities>(input.control);
  const tracker = new BatchTracker();
  const root = CancellationScope.current();
  // Chunks run in their own scope, so cancel and expiry can stop them and still finalize.
  const work = new CancellationScope();
  setHandler(progressQuery, () => tracker.progress);
  setHandler(cancelSignal, () => {
    if (tracker.requestCancel()) work.cancel();
  });

  // The completion window runs from creation: a batch stuck before its chunks still expires.
  const expiry = new CancellationScope();
  const startExpiry = (expiresAt: number): void => {
    void expiry
      .run(() => sleep(Math.max(0, expiresAt * 1000 - Date.now())))
      .then(
        () => {
          tracker.expire();
          work.cancel();
        },
        () => undefined,
      );
  };
  const expiryFromStart = input.expiresAt !== undefined && patched('expiry-from-creation');
  if (expiryFromStart && input.expiresAt !== undefined) startExpiry(input.expiresAt);

  // Validation always finishes: its result is what finalize needs, whatever happens meanwhile. When
  // it cannot (out of attempts), the batch fails saying why. (Inline, not a helper: an extra await
  // here would move this step against the expiry timer's, and so the commands a replay expects.)
  let recorded: RecordedPlan;
  try {
    recorded = await CancellationScope.nonCancellable(() =>
      control.validateBatch.executeWithOptions({ summary: validateSummary(input.inputBytes) }, [batchId]),
    );
  } catch (err) {
    if (!patched('bounded-control')) throw err;
    await CancellationScope.nonCancellable(() =>
      control.failBatch.executeWithOptions({ summary: 'fail the batch: its input file could not be validated' }, [
        { batchId, code: 'validation_error', message: `The input file could not be validated: ${reasonOf(err)}` },
      ]),
    );
    recorded = { ok: false, errors: 1 };
  }
  const plan = normalizePlan(recorded);
  if (!plan.ok) {
    expiry.cancel();
    tracker.validationFailed();
    await announce(input);
    return { status: 'failed', errors: plan.errors };
  }
  tracker.validated(plan);
  let drafter: OutputDrafter | undefined;

  if (!tracker.cancelRequested && !root.consideredCancelled && !tracker.expired) {
    if (!expiryFromStart) startExpiry(plan.expiresAt);
    try {
      if (patched('output-drafts')) drafter = outputDrafter(input, plan);
      await work.run(() => runChunks(batchId, plan, control, tracker, work, drafter));
    } catch (err) {
      // Once cancel or expiry has begun, any chunk failure (Temporal does not retry an activity
      // whose cancel was requested) just means lines that never ran, which finalize reports.
      if (!isCancellation(err) && !work.consideredCancelled) throw err;
    }
    expiry.cancel();
  }

  const outcome: Outcome =
    tracker.cancelRequested || root.consideredCancelled ? 'cancelled' : tracker.expired ? 'expired' : 'completed';
  return CancellationScope.nonCancellable(async () => {
    // Only when there is one: an await more would move the steps below against the expiry timer's
    // cancellation, and so the commands the histories of batches started before it expect.
    if (drafter !== undefined) await drafter.idle();
    if (outcome === 'completed') {
      tracker.finalizing();
      await control.markFinalizing.executeWithOptions({ summary: 'finalize · mark the batch finalizing' }, [batchId]);
    }
    const summary = await control.finalizeBatch.executeWithOptions(
      { summary: `finalize · ${outcome}: write the output and error files` },
      [{ batchId, inputKey: plan.inputKey, outcome }],
    );
    tracker.finished(summary);
    await announce(input);
    // Curation runs on its own, outliving this workflow: Label Studio can never hold up a batch.
    if (patched('auto-import') && input.curation !== undefined) {
      await startAbandonedChild(AutoImportWorkflow, {
        workflowId: autoImportWorkflowId(batchId),
        taskQueue: input.curation.taskQueue,
        args: [{ batchId, activity: input.curation.activity }],
        staticSummary: `import ${batchId}'s results into Label Studio`,
      });
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
  // Preparing deliveries sends no heartbeats: it has the control steps' timeout and retries only.
  const prepareOptions: ActivityOptions = { ...input.control };
  delete prepareOptions.heartbeatTimeout;
  const { prepareDeliveries } = proxyActivities<WebhookActivities>(prepareOptions);
  // Whole, even when the workflow is being cancelled: deliveries once prepared must also be started.
  await CancellationScope.nonCancellable(async () => {
    let deliveries: string[];
    try {
      deliveries = await prepareDeliveries.executeWithOptions({ summary: 'prepare the webhook deliveries' }, [
        { batchId: input.batchId },
      ]);
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
      await startAbandonedChild(WebhookDeliveryWorkflow, {
        workflowId: deliveryId,
        taskQueue: webhooks.taskQueue,
        args: [{ deliveryId, activity: webhooks.activity }],
        staticSummary: `tell a webhook that ${input.batchId} ended`,
      });
    }
  });
}

/** Writes the batch's files while it runs, each write a control step with few attempts (finalize does the rest). */
function outputDrafter(input: BatchWorkflowInput, plan: RunnablePlan): OutputDrafter {
  const { draftOutputs } = proxyActivities<ControlActivities>({
    ...input.control,
    retry: { ...input.control.retry, maximumAttempts: 2 },
  });
  return new OutputDrafter(plan.chunks, plan.outputDrafts ?? 0, (throughLine) =>
    draftOutputs.executeWithOptions({ summary: draftSummary(throughLine) }, [{ batchId: input.batchId, throughLine }]),
  );
}

/** Runs every chunk with at most plan.maxPendingChunks scheduled at once. */
async function runChunks(
  batchId: string,
  plan: RunnablePlan,
  control: ActivityInterfaceFor<ControlActivities>,
  tracker: BatchTracker,
  work: CancellationScope,
  drafter: OutputDrafter | undefined,
): Promise<void> {
  const inference = proxyActivities<InferenceActivities>({
    ...plan.chunkActivity,
    // Wait for the worker to acknowledge, so partial results are persisted before finalize reads them.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });

  let next = 0;
  const runOne = async (chunk: ChunkPlan, position: number): Promise<void> => {
    tracker.chunkStarted();
    try {
      const summary = await inference.runChunk.executeWithOptions(
        { summary: chunkSummary(chunk, plan.chunks.length) },
        [{ batchId, inputKey: plan.inputKey, endpoint: plan.endpoint, chunk, deadline: plan.expiresAt }],
      );
      tracker.chunkEnded(summary, false);
    } catch (err) {
      if (isCancellation(err) || work.consideredCancelled) throw err;
      // The chunk ran out of retries (its worker keeps dying, or the engine stayed down past the
      // budget): its unfinished lines are reported as failed and the batch carries on.
      const counts = await control.deadLetterChunk.executeWithOptions(
        { summary: deadLetterSummary(chunk, plan.chunks.length) },
        [{ batchId, inputKey: plan.inputKey, chunk, reason: reasonOf(err) }],
      );
      tracker.chunkEnded(counts, true);
    } finally {
      tracker.chunkSettled();
    }
    drafter?.chunkEnded(position);
  };
  const lane = async (): Promise<void> => {
    while (next < plan.chunks.length && !work.consideredCancelled) {
      const position = next++;
      const chunk = plan.chunks[position];
      if (chunk !== undefined) await runOne(chunk, position);
    }
  };
  const lanes = Array.from({ length: Math.min(plan.maxPendingChunks, plan.chunks.length) }, lane);
  // allSettled: every lane must be quiet (its chunk acknowledged) before finalize starts.
  const results = await Promise.allSettled(lanes);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}
