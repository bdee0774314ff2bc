// AutoImportWorkflow: a finished batch's results go to Label Studio for review. It runs apart from
// the batch (a child the batch abandons), so a Label Studio outage delays curation but never holds
// up or fails a batch; every step is idempotent, so retries and restarts never duplicate a task.
import {
  defineQuery,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  type ActivityOptions,
} from '@temporalio/workflow';

import type { CurationActivities, ImportPlan } from '../activities/auto-import.js';
import { reasonOf } from './failure-types.js';
import { importOptions, isLegacy, type LegacyImportSettings } from './legacy-inputs.js';
import { CurationStatusKey } from './search-attributes.js';

export interface AutoImportInput {
  batchId: string;
  /** Each step's timeouts and retries: how long Label Studio may be away, and what ends the import at once. */
  activity: ActivityOptions;
}

export interface CurationProgress {
  status: 'planning' | 'importing' | 'completed' | 'skipped' | 'failed';
  pages: number;
  pagesDone: number;
  reason: string | null;
}

export const curationProgressQuery = defineQuery<CurationProgress>('curationProgress');

/** One import per batch: the fixed id makes a second start (a retry, the reconciler's) find the first. */
export function autoImportWorkflowId(batchId: string): string {
  return `${batchId}-curation`;
}

/** Imports started before ActivityOptions were given carry the old settings (see legacy-inputs.ts). */
function normalize(input: AutoImportInput | { batchId: string; activity: LegacyImportSettings }): AutoImportInput {
  const { batchId, activity } = input;
  return isLegacy(activity) ? { batchId, activity: importOptions(activity) } : { batchId, activity };
}

export async function AutoImportWorkflow(
  given: AutoImportInput | { batchId: string; activity: LegacyImportSettings },
): Promise<CurationProgress> {
  const { batchId, activity } = normalize(given);
  const steps = proxyActivities<CurationActivities>(activity);
  // Recording the end is retried for as long as the steps were, then given up: the import's workflow then
  // ends failed in Temporal, saying why, though its row may still read `running`.
  const { nonRetryableErrorTypes: _endsSteps, ...recordRetry } = activity.retry ?? {};
  const recordEnd = proxyActivities<CurationActivities>({ ...activity, retry: recordRetry });

  const progress: CurationProgress = { status: 'planning', pages: 0, pagesDone: 0, reason: null };
  setHandler(curationProgressQuery, () => progress);
  const setStatus = (status: CurationProgress['status']): void => {
    progress.status = status;
    upsertSearchAttributes([{ key: CurationStatusKey, value: status }]);
  };
  setStatus('planning');

  try {
    const plan: ImportPlan = await steps.planImport.executeWithOptions({ summary: 'plan the import' }, [batchId]);
    if ('ended' in plan) {
      progress.reason = plan.reason;
      setStatus(plan.ended === 'failed' ? 'failed' : 'skipped');
      return progress;
    }
    progress.pages = plan.pages.length;
    setStatus('importing');
    const projectId = await steps.ensureProject.executeWithOptions(
      { summary: 'find or create the Label Studio project' },
      [batchId],
    );
    // Each page's activity input is kept in history: the page list goes once, in the plan, not per page.
    const source = { schema: plan.schema, endpoint: plan.endpoint, model: plan.model, inputKey: plan.inputKey };
    for (const [index, page] of plan.pages.entries()) {
      await steps.importPage.executeWithOptions({ summary: `import page ${index + 1}/${plan.pages.length} of tasks` }, [
        { batchId, projectId, plan: source, page },
      ]);
      progress.pagesDone++;
    }
    await steps.finishImport.executeWithOptions({ summary: 'record the import finished' }, [batchId]);
    setStatus('completed');
  } catch (err) {
    progress.reason = reasonOf(err);
    await recordEnd.failImport.executeWithOptions({ summary: 'record the import failed' }, [
      { batchId, reason: progress.reason },
    ]);
    setStatus('failed');
  }
  return progress;
}
