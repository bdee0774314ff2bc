// The import worker: runs AutoImportWorkflow and the activities that talk to Label Studio, on its
// own task queue, so curation never competes with batches for workers. `npm run worker:import`.
import { createCurationActivities } from '../activities/auto-import.js';
import { loadCurationSchemas } from '../lib/curation-schema.js';
import { isEntryPoint } from '../lib/entry.js';
import { labelStudioClient } from '../lib/label-studio.js';
import { runWorkerProcess, startWorkflowWorker, type RunningWorker, type WorkerProcessDeps } from './worker-process.js';

export interface ImportWorkerDeps extends WorkerProcessDeps {
  workflowBundlePath?: string;
}

export async function startImportWorker(deps: ImportWorkerDeps): Promise<RunningWorker> {
  const { config, log } = deps;
  const registry = loadCurationSchemas(config.curation.schemasDir);
  const labelStudio = labelStudioClient(config);
  if (labelStudio === undefined)
    log.warn('LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is unset: batches will record that curation was skipped');
  const worker = await startWorkflowWorker(deps, {
    taskQueue: config.curation.taskQueue,
    activities: createCurationActivities({ ...deps, registry, labelStudio }),
    onShutdown: async () => {
      await labelStudio?.close();
    },
  });
  log.info(
    { taskQueue: config.curation.taskQueue, labelStudio: config.labelStudio.url ?? null, schemas: registry.names() },
    'import worker ready',
  );
  return worker;
}

if (isEntryPoint(import.meta.url)) {
  runWorkerProcess({
    name: () => 'import-worker',
    metricsPort: (config) => config.metrics.importPort,
    start: startImportWorker,
  });
}
