// The import worker: runs AutoImportWorkflow and the activities that talk to Label Studio, on its
// own task queue, so curation never competes with batches for workers. `npm run worker:import`.
import { Worker } from '@temporalio/worker';
import { createCurationActivities } from '../activities/curation.js';
import { loadCurationSchemas } from '../lib/curation.js';
import { isEntryPoint } from '../lib/entry.js';
import { labelStudioClient } from '../lib/label-studio.js';
import { ensureSearchAttributes } from '../lib/temporal.js';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { runWorkerProcess, workflowBundle, type RunningWorker, type WorkerProcessDeps } from './common.js';

export interface ImportWorkerDeps extends WorkerProcessDeps {
  workflowBundlePath?: string;
}

export async function startImportWorker(deps: ImportWorkerDeps): Promise<RunningWorker> {
  const { config, log } = deps;
  const registry = loadCurationSchemas(config.curation.schemasDir);
  const labelStudio = labelStudioClient(config);
  if (labelStudio === undefined) log.warn('LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is unset: batches will record that curation was skipped');
  await ensureSearchAttributes(config, ALL_SEARCH_ATTRIBUTES, log);
  const bundle = await workflowBundle(config, deps.workflowBundlePath);
  const worker = await Worker.create({
    connection: deps.connection,
    namespace: config.temporal.namespace,
    taskQueue: config.curation.taskQueue,
    workflowBundle: { codePath: bundle.codePath },
    activities: createCurationActivities({ ...deps, registry, labelStudio }),
    shutdownGraceTime: config.worker.shutdownGraceMs,
  });
  await bundle.cleanup();
  const done = worker.run();
  log.info({ taskQueue: config.curation.taskQueue, labelStudio: config.labelStudio.url ?? null, schemas: registry.names() }, 'import worker ready');
  return {
    done,
    shutdown: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
      await labelStudio?.close();
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  runWorkerProcess({ name: () => 'import-worker', metricsPort: (config) => config.metrics.importPort, start: startImportWorker });
}
