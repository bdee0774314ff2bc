// The orchestrator worker: runs BatchWorkflow and the control activities (validate, finalize,
// dead-letter). It never talks to an engine. `npm run worker:orchestrator`.
import { Worker } from '@temporalio/worker';
import type { NativeConnection } from '@temporalio/worker';
import { createControlActivities } from '../activities/batch-control.js';
import { databaseUrl, loadConfig, type Config } from '../lib/config.js';
import { openDatabase, type Db } from '../lib/db.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore, type FileStore } from '../lib/file-store.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { connectWorker, installRuntime, workflowsPath, type RunningWorker } from './common.js';

export interface OrchestratorDeps {
  config: Config;
  db: Db;
  store: FileStore;
  log: Logger;
  connection: NativeConnection;
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
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('orchestrator', config.log);
    installRuntime(log);
    const db = await openDatabase(databaseUrl(config), config.database.poolSize);
    const connection = await connectWorker(config);
    const worker = await startOrchestratorWorker({ config, db, store: createFileStore(config.paths.fileStoreDir), log, connection });
    log.info({ taskQueue: config.temporal.orchestratorTaskQueue, namespace: config.temporal.namespace }, 'orchestrator worker ready');
    onShutdown(async () => {
      await worker.shutdown();
      await connection.close();
      await db.destroy();
    }, log);
    await worker.done;
  });
}
