// The messages a running BatchWorkflow answers; the API imports these definitions to send them.
import { defineQuery, defineSignal } from '@temporalio/workflow';

export interface BatchProgress {
  phase: 'validating' | 'in_progress' | 'cancelling' | 'finalizing' | 'done';
  requests: number;
  completed: number;
  failed: number;
  chunks: { total: number; done: number; running: number; deadLettered: number };
  cancelRequested: boolean;
  expired: boolean;
}

/** Ask the batch to stop: in-flight chunks are cancelled and unfinished lines become batch_cancelled. */
export const cancelSignal = defineSignal('cancel');

/** Live progress, answered from workflow state without touching history. */
export const progressQuery = defineQuery<BatchProgress>('progress');
