// AutoImportWorkflow: a finished batch's results go to Label Studio for review. It runs apart from
// the batch (a child the batch abandons), so a Label Studio outage delays curation but never holds
// up or fails a batch; every step is idempotent, so retries and restarts never duplicate a task.
import { defineQuery, proxyActivities, setHandler, upsertSearchAttributes } from '@temporalio/workflow';

import type { CurationActivities, ImportPlan } from '../activities/auto-import.js';
import { CurationStatusKey } from './search-attributes.js';

export interface AutoImportInput {
  batchId: string;
  /** From the API's config: how long a step may take, and how long Label Studio may be away. */
  activity: {
    startToCloseMs: number;
    retryHours: number;
    retryInitialMs: number;
    retryMaxMs: number;
    notRetryable: string[];
  };
}

export interface CurationProgress {
  status: 'planning' | 'importing' | 'completed' | 'skipped' | 'failed';
  pages: number;
  pagesDone: number;
  reason: string | null;
}

export const curationProgressQuery = defineQuery<CurationProgress>('curationProgress');

function reasonOf(err: unknown): string {
  let e: unknown = err;
  // An activity's failure wraps the ApplicationFailure that says what went wrong.
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

export async function AutoImportWorkflow(input: AutoImportInput): Promise<CurationProgress> {
  const { batchId, activity } = input;
  const steps = proxyActivities<CurationActivities>({
    startToCloseTimeout: activity.startToCloseMs,
    // A Label Studio outage is ridden out for hours; bad credentials or choices end at once.
    scheduleToCloseTimeout: activity.retryHours * 3600 * 1000,
    retry: {
      initialInterval: activity.retryInitialMs,
      maximumInterval: activity.retryMaxMs,
      backoffCoefficient: 2,
      nonRetryableErrorTypes: activity.notRetryable,
    },
  });
  // Recording the end is retried for as long as the steps were, then given up: the import's workflow then
  // ends failed in Temporal, saying why, though its row may still read `running`.
  const recordEnd = proxyActivities<CurationActivities>({
    startToCloseTimeout: activity.startToCloseMs,
    scheduleToCloseTimeout: activity.retryHours * 3600 * 1000,
    retry: { initialInterval: activity.retryInitialMs, maximumInterval: activity.retryMaxMs },
  });

  const progress: CurationProgress = { status: 'planning', pages: 0, pagesDone: 0, reason: null };
  setHandler(curationProgressQuery, () => progress);
  const setStatus = (status: CurationProgress['status']): void => {
    progress.status = status;
    upsertSearchAttributes([{ key: CurationStatusKey, value: status }]);
  };
  setStatus('planning');

  try {
    const plan: ImportPlan = await steps.planImport(batchId);
    if ('ended' in plan) {
      progress.reason = plan.reason;
      setStatus(plan.ended === 'failed' ? 'failed' : 'skipped');
      return progress;
    }
    progress.pages = plan.pages.length;
    setStatus('importing');
    const projectId = await steps.ensureProject(batchId);
    // Each page's activity input is kept in history: the page list goes once, in the plan, not per page.
    const source = { schema: plan.schema, endpoint: plan.endpoint, model: plan.model, inputKey: plan.inputKey };
    for (const page of plan.pages) {
      await steps.importPage({ batchId, projectId, plan: source, page });
      progress.pagesDone++;
    }
    await steps.finishImport(batchId);
    setStatus('completed');
  } catch (err) {
    progress.reason = reasonOf(err);
    await recordEnd.failImport({ batchId, reason: progress.reason });
    setStatus('failed');
  }
  return progress;
}
