// The orchestrator worker: runs BatchWorkflow and the control activities (validate, finalize,
// dead-letter). It never talks to an engine. `npm run worker:orchestrator`.
import { Worker } from '@temporalio/worker';
import { createControlActivities } from '../activities/batch-control.js';
import { createWebhookActivities } from '../activities/webhooks.js';
import { isEntryPoint } from '../lib/entry.js';
import { ensureSearchAttributes } from '../lib/temporal.js';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { queueGauges } from './queue-metrics.js';
import { runWorkerProcess, workflowBundle, type RunningWorker, type WorkerProcessDeps } from './common.js';

export interface OrchestratorDeps extends WorkerProcessDeps {
  /** A prebuilt workflow bundle (tests build one once); else WORKFLOW_BUNDLE_PATH, else built at start. */
  workflowBundlePath?: string;
}

export async function startOrchestratorWorker(deps: OrchestratorDeps): Promise<RunningWorker> {
  const { config } = deps;
  // The workflows set these; make sure the cluster knows them (a no-op once they exist).
  await ensureSearchAttributes(config, ALL_SEARCH_ATTRIBUTES, deps.log);
  const bundle = await workflowBundle(config, deps.workflowBundlePath);
  const worker = await Worker.create({
    connection: deps.connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.orchestratorTaskQueue,
    workflowBundle: { codePath: bundle.codePath },
    activities: { ...createControlActivities(deps), ...createWebhookActivities(deps) },
    shutdownGraceTime: config.worker.shutdownGraceMs,
  });
  await bundle.cleanup();
  queueGauges(deps);
  const done = worker.run();
  return {
    done,
    shutdown: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  runWorkerProcess({
    name: () => 'orchestrator',
    metricsPort: (config) => config.metrics.orchestratorPort,
    start: async (deps) => {
      const worker = await startOrchestratorWorker(deps);
      deps.log.info({ taskQueue: deps.config.temporal.orchestratorTaskQueue, namespace: deps.config.temporal.namespace }, 'orchestrator worker ready');
      return worker;
    },
  });
}
