// The orchestrator worker: runs BatchWorkflow and the control activities (validate, finalize,
// dead-letter). It never talks to an engine. `npm run worker:orchestrator`.
import { Client } from '@temporalio/client';

import { createControlActivities } from '../activities/batch-control.js';
import { createWebhookActivities } from '../activities/webhook-delivery.js';
import { isEntryPoint } from '../lib/entry.js';
import { zeroOrchestratorSeries } from '../lib/metrics.js';
import { queueGauges } from './queue-metrics.js';
import { startReconciler } from './reconciler.js';
import { runWorkerProcess, startWorkflowWorker, type RunningWorker, type WorkerProcessDeps } from './worker-process.js';

export interface OrchestratorDeps extends WorkerProcessDeps {
  /** A prebuilt workflow bundle (tests build one once); else WORKFLOW_BUNDLE_PATH, else built at start. */
  workflowBundlePath?: string;
}

export async function startOrchestratorWorker(deps: OrchestratorDeps): Promise<RunningWorker> {
  const control = createControlActivities(deps);
  const webhooks = createWebhookActivities(deps);
  const worker = await startWorkflowWorker(deps, {
    taskQueue: deps.config.temporal.orchestratorTaskQueue,
    activities: { ...control, ...webhooks },
  });
  queueGauges(deps);
  zeroOrchestratorSeries();
  const client = new Client({ connection: deps.connection, namespace: deps.config.temporal.namespace });
  const stopReconciler = startReconciler({ ...deps, client, control, webhooks });
  return {
    ...worker,
    shutdown: async () => {
      stopReconciler();
      await worker.shutdown();
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  runWorkerProcess({
    name: () => 'orchestrator',
    metricsPort: (config) => config.metrics.orchestratorPort,
    start: async (deps) => {
      const worker = await startOrchestratorWorker(deps);
      deps.log.info(
        { taskQueue: deps.config.temporal.orchestratorTaskQueue, namespace: deps.config.temporal.namespace },
        'orchestrator worker ready',
      );
      return worker;
    },
  });
}
