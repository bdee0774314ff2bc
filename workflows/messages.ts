// The messages a running BatchWorkflow answers; the API imports these definitions to send them.
import { defineQuery, defineSignal } from '@temporalio/workflow';

export interface BatchProgress {
  phase: 'validating' | 'in_progress' | 'cancelling' | 'finalizing' | 'done';
  requests: number;
  completed: number;
  failed: number;
  chunks: { total: number; done: number; running: number; deadLettered: number };
  /** Lines of each prompt-prefix group the chunks were planned by (largest first); absent: planned by line ranges. */
  prefixGroups?: number[];
  cancelRequested: boolean;
  expired: boolean;
  /** When the completion window ends (ISO 8601; null before validation). */
  expiresAt: string | null;
  /** When the last chunk should end at the rate so far (ISO 8601; null until a chunk has ended). */
  eta: string | null;
  /** The estimate is past the window's end: the batch will expire with lines unrun unless it speeds up. */
  late: boolean;
}

/** Ask the batch to stop: in-flight chunks are cancelled and unfinished lines become batch_cancelled. */
export const cancelSignal = defineSignal('cancel');

/** Live progress, answered from workflow state without touching history. */
export const progressQuery = defineQuery<BatchProgress>('progress');
