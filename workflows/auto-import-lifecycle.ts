// How an AutoImportWorkflow is started from outside a workflow: the reconciler starts it for a batch
// it ended (a batch's own workflow starts it as a child). Its input is built here from the
// configuration, so no caller assembles it. Not imported by workflow code (not bundled).
import type { Client } from '@temporalio/client';

import { autoImportActivityOptions } from '../lib/activity-options.js';
import type { Config } from '../lib/config.js';
import { withTemporalDeadline } from '../lib/temporal.js';
import { autoImportWorkflowId, type AutoImportInput, type AutoImportWorkflow } from './auto-import.js';

export function autoImportInput(config: Config, batchId: string): AutoImportInput {
  return { batchId, activity: autoImportActivityOptions(config) };
}

/** The batch's import, on the import worker's queue; one already started throws WorkflowExecutionAlreadyStartedError. */
export async function startAutoImport(client: Client, config: Config, batchId: string): Promise<void> {
  await withTemporalDeadline(client, config, () =>
    client.workflow.start<typeof AutoImportWorkflow>('AutoImportWorkflow', {
      workflowId: autoImportWorkflowId(batchId),
      taskQueue: config.curation.taskQueue,
      args: [autoImportInput(config, batchId)],
      staticSummary: `import ${batchId}'s results into Label Studio`,
    }),
  );
}
