// The orchestrator worker: runs BatchWorkflow and the control activities (validate, finalize,
// dead-letter). It never talks to an engine. `npm run worker:orchestrator`.
import { Worker } from '@temporalio/worker';
import { createControlActivities } from '../activities/batch-control.js';
import { isEntryPoint } from '../lib/entry.js';
import { runWorkerProcess, workflowsPath, type RunningWorker, type WorkerProcessDeps } from './common.js';

export interface OrchestratorDeps extends WorkerProcessDeps {
  /** A prebuilt workflow bundle (tests build one once); otherwise the workflows are bundled at start. */
  workflowBundlePath?: string;
}

export async function startOrchestratorWorker(deps: OrchestratorDeps): Promise<RunningWorker> {
  const { config } = deps;
  const worker = await Worker.create({
    connection: deps.connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.orchestratorTaskQueue,
    ...(deps.workflowBundlePath !== undefined ? { workflowBundle: { codePath: deps.workflowBundlePath } } : { workflowsPath: workflowsPath() }),
    activities: createControlActivities(deps),
    shutdownGraceTime: config.worker.shutdownGraceMs,
  });
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
