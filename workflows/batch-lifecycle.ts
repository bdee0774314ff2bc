// How a BatchWorkflow and the workflows it leaves behind are started, from outside a workflow: the
// API starts batches, and the reconciler ends batches whose workflow is gone and then starts what
// the workflow would have (webhook deliveries, the curation import). Inputs are built here from the
// configuration, once, so no caller assembles them. Not imported by workflow code (not bundled).
import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Priority } from '@temporalio/common';

import {
  autoImportActivityOptions,
  controlActivityOptions,
  webhookDeliveryActivityOptions,
} from '../lib/activity-options.js';
import type { Config } from '../lib/config.js';
import { withTemporalDeadline } from '../lib/temporal.js';
import { startAutoImport } from './auto-import-lifecycle.js';
import { batchDetails, batchSummary, type BatchAtStart } from './batch-display.js';
import type { BatchWorkflow, BatchWorkflowInput } from './batch.js';
import { BatchEndpointKey, BatchProjectKey, BatchStatusKey } from './search-attributes.js';
import { startWebhookDelivery } from './webhook-delivery-lifecycle.js';

export function batchWorkflowInput(
  config: Config,
  batchId: string,
  expiresAt: number,
  inputBytes: number,
): BatchWorkflowInput {
  return {
    batchId,
    expiresAt,
    inputBytes,
    control: controlActivityOptions(config),
    webhooks: { taskQueue: config.temporal.orchestratorTaskQueue, activity: webhookDeliveryActivityOptions(config) },
    curation: { taskQueue: config.curation.taskQueue, activity: autoImportActivityOptions(config) },
  };
}

export interface BatchStart extends BatchAtStart {
  id: string;
  /** Length of its completion window, seconds. */
  windowSeconds: number;
}

/** One level above Temporal's default (3) of its five. */
const URGENT_PRIORITY_KEY = 2;

/** Temporal limits fairness keys to 64 bytes: a longer project name is keyed by its digest. */
export function fairnessKeyOf(projectName: string): string {
  if (Buffer.byteLength(projectName) <= 64) return projectName;
  return `project-${createHash('sha256').update(projectName).digest('hex').slice(0, 40)}`;
}

/**
 * Temporal's priority for a batch's workflow and chunks: its own `priority`; without one, a short
 * completion window (`URGENT_WINDOW_SECONDS`) is one level more urgent than the default, so its chunks
 * leave the task queue before those of 24 h batches queued earlier (earliest deadline first between
 * batches of a model); its fairness key and weight: its project's.
 */
export function batchPriority(
  config: Config,
  batch: Pick<BatchStart, 'projectName' | 'priority' | 'windowSeconds'>,
): Priority {
  const { urgentWindowSeconds } = config.scheduling;
  const urgent = urgentWindowSeconds > 0 && batch.windowSeconds <= urgentWindowSeconds;
  const priorityKey = batch.priority ?? (urgent ? URGENT_PRIORITY_KEY : undefined);
  return {
    ...(priorityKey !== undefined ? { priorityKey } : {}),
    fairnessKey: fairnessKeyOf(batch.projectName),
    fairnessWeight: config.scheduling.projectWeights.get(batch.projectName) ?? 1,
  };
}

/** Starts a batch's workflow (workflowId = batch id), with what the Temporal UI shows and searches by. */
export async function startBatchWorkflow(client: Client, config: Config, batch: BatchStart): Promise<void> {
  const priority = batchPriority(config, batch);
  await withTemporalDeadline(client, config, () =>
    client.workflow.start<typeof BatchWorkflow>('BatchWorkflow', {
      workflowId: batch.id,
      taskQueue: config.temporal.orchestratorTaskQueue,
      args: [batchWorkflowInput(config, batch.id, batch.expiresAt, batch.inputBytes)],
      staticSummary: batchSummary(batch),
      staticDetails: batchDetails(batch, priority.fairnessKey ?? batch.projectName),
      typedSearchAttributes: [
        { key: BatchStatusKey, value: 'validating' },
        { key: BatchProjectKey, value: batch.projectName },
        { key: BatchEndpointKey, value: batch.endpoint },
      ],
      memo: { inputFileId: batch.inputFileId, project: batch.projectName },
      // Chunk activities inherit it: their task queue hands out higher-priority work first, and
      // between projects in proportion to their weights (as GPU workers share their engine).
      priority,
    }),
  );
}

/** A start that finds its workflow already there (same fixed id) has nothing left to do. */
async function startOnce(start: () => Promise<unknown>): Promise<void> {
  try {
    await start();
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}

/** What a batch's workflow does once the batch has ended, for a batch the reconciler ended instead. */
export async function startAfterEnd(
  client: Client,
  config: Config,
  batchId: string,
  deliveryIds: string[],
): Promise<void> {
  for (const deliveryId of deliveryIds) await startOnce(() => startWebhookDelivery(client, config, deliveryId));
  await startOnce(() => startAutoImport(client, config, batchId));
}
