// The orchestrator worker: runs BatchWorkflow and the control activities (validate, finalize,
// dead-letter). It never talks to an engine. `npm run worker:orchestrator`.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { createControlActivities } from '../activities/batch-control.js';
import { isEntryPoint } from '../lib/entry.js';
import { bundleInChild } from './bundle-workflows.js';
import { runWorkerProcess, type RunningWorker, type WorkerProcessDeps } from './common.js';

export interface OrchestratorDeps extends WorkerProcessDeps {
  /** A prebuilt workflow bundle (tests build one once); else WORKFLOW_BUNDLE_PATH, else built at start. */
  workflowBundlePath?: string;
}

export async function startOrchestratorWorker(deps: OrchestratorDeps): Promise<RunningWorker> {
  const { config } = deps;
  // A prebuilt bundle, or one built now in a child process: bundling in here would leave webpack's
  // few hundred megabytes in this long-lived process for good.
  const prebuilt = deps.workflowBundlePath ?? config.temporal.workflowBundlePath;
  const codePath = prebuilt ?? (await bundleInChild(path.join(config.paths.dataDir, `workflow-bundle-${process.pid}.js`)));
  const worker = await Worker.create({
    connection: deps.connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.orchestratorTaskQueue,
    workflowBundle: { codePath },
    activities: createControlActivities(deps),
    shutdownGraceTime: config.worker.shutdownGraceMs,
  });
  // The worker has read the code; a bundle made just for it is not needed any more.
  if (prebuilt === undefined) await rm(codePath, { force: true });
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
  runWorkerProcess(
    () => 'orchestrator',
    async (deps) => {
      const worker = await startOrchestratorWorker(deps);
      deps.log.info({ taskQueue: deps.config.temporal.orchestratorTaskQueue, namespace: deps.config.temporal.namespace }, 'orchestrator worker ready');
      return worker;
    },
  );
}
