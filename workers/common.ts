// What every worker process shares: the Temporal runtime (logging through our logger), the
// connection, and where the workflow code lives.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { databaseUrl, loadConfig, type Config } from '../lib/config.js';
import { openDatabase, type Db } from '../lib/db.js';
import { onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore, type FileStore } from '../lib/file-store.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { databaseCheck, fileStoreCheck, startOpsServer, temporalCheck, type ReadinessCheck } from '../lib/ops.js';
import { Registry } from 'prom-client';
import { ensureSearchAttributes, temporalConnectionOptions } from '../lib/temporal.js';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';

export interface RunningWorker {
  /** Settles when the worker has stopped (after shutdown, or on a fatal error). */
  done: Promise<void>;
  shutdown(): Promise<void>;
  /** Readiness checks of this kind of worker, beyond database, Temporal and file store. */
  checks?: ReadinessCheck[];
}

let runtimeInstalled = false;

/** Routes the Temporal SDK's own logs through pino; once per process. */
export function installRuntime(log: Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level: LogLevel = log.isLevelEnabled('debug') ? 'DEBUG' : 'WARN';
  Runtime.install({
    // The Rust core's own logs (connection retries and the like) come through the same logger.
    telemetryOptions: { logging: { filter: { core: level, other: 'ERROR' }, forward: {} } },
    logger: new DefaultLogger(level, (entry) => {
      // A GPU worker registers no workflows on purpose; the SDK's warning about it is noise.
      if (entry.message.startsWith('No workflows registered')) return;
      const method = entry.level === 'ERROR' ? 'error' : entry.level === 'WARN' ? 'warn' : entry.level === 'INFO' ? 'info' : 'debug';
      log[method]({ ...entry.meta, sdk: 'temporal' }, entry.message);
    }),
  });
}

export async function connectWorker(config: Config): Promise<NativeConnection> {
  return NativeConnection.connect(temporalConnectionOptions(config));
}

/**
 * The workflow code for a worker: a prebuilt bundle, or one built now in a child process (bundling
 * in a long-lived worker would keep webpack's few hundred megabytes in it for good). `cleanup`
 * removes a bundle built just for this worker once the worker has read it.
 */
export async function workflowBundle(config: Config, prebuilt: string | undefined): Promise<{ codePath: string; cleanup(): Promise<void> }> {
  const given = prebuilt ?? config.temporal.workflowBundlePath;
  if (given !== undefined) return { codePath: given, cleanup: () => Promise.resolve() };
  const { bundleInChild } = await import('./bundle-workflows.js');
  const codePath = await bundleInChild(path.join(config.paths.dataDir, `workflow-bundle-${process.pid}-${Date.now()}.js`));
  return { codePath, cleanup: () => rm(codePath, { force: true }) };
}

/**
 * A worker that runs workflows (the orchestrator's, the import worker's): search attributes made sure
 * of, the bundle built or found, and a bundle built for it removed even when the worker fails to start.
 */
export async function startWorkflowWorker(
  deps: WorkerProcessDeps & { workflowBundlePath?: string },
  options: { taskQueue: string; activities: object; onShutdown?: () => Promise<void> },
): Promise<RunningWorker> {
  const { config } = deps;
  // The workflows set these; make sure the cluster knows them (a no-op once they exist).
  await ensureSearchAttributes(config, ALL_SEARCH_ATTRIBUTES, deps.log);
  const bundle = await workflowBundle(config, deps.workflowBundlePath);
  let worker: Worker;
  try {
    worker = await Worker.create({
      connection: deps.connection,
      namespace: config.temporal.namespace,
      taskQueue: options.taskQueue,
      workflowBundle: { codePath: bundle.codePath },
      activities: options.activities,
      shutdownGraceTime: config.worker.shutdownGraceMs,
    });
  } finally {
    await bundle.cleanup();
  }
  const done = worker.run();
  return {
    done,
    shutdown: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
      await options.onShutdown?.();
    },
  };
}

/** The workflows entry file, as source under tsx or compiled JavaScript. */
export function workflowsPath(): string {
  const ts = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
  return existsSync(ts) ? ts : fileURLToPath(new URL('../workflows/index.js', import.meta.url));
}

export interface WorkerProcessDeps {
  config: Config;
  db: Db;
  store: FileStore;
  log: Logger;
  connection: NativeConnection;
  /** Where this kind of worker registers metrics it computes when scraped. */
  registry: Registry;
}

export interface WorkerProcess {
  name: (config: Config) => string;
  /** Where this kind of worker serves /metrics, /healthz and /readyz. */
  metricsPort: (config: Config) => number;
  start: (deps: WorkerProcessDeps) => Promise<RunningWorker>;
}

/**
 * A worker process's life: connect everything, start the worker and its metrics and health
 * server, run until it stops, and on SIGTERM shut it down gracefully before closing connections.
 */
export function runWorkerProcess(kind: WorkerProcess): void {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger(kind.name(config), config.log);
    installRuntime(log);
    const db = await openDatabase(databaseUrl(config), config.database.poolSize);
    const connection = await connectWorker(config);
    const store = createFileStore(config);
    // The health server comes first: a busy port stops the process before a worker polls, and
    // liveness answers while a GPU worker waits (minutes, maybe) for its engine to load.
    const starting: ReadinessCheck = { name: 'worker', check: () => Promise.reject(new Error('still starting')) };
    const checks = [databaseCheck(db), temporalCheck(connection), fileStoreCheck(store), starting];
    const registry = new Registry();
    const ops = await startOpsServer({ host: config.metrics.host, port: kind.metricsPort(config), log, timeoutMs: config.metrics.readyTimeoutMs, checks, registry });
    let worker: RunningWorker;
    try {
      worker = await kind.start({ config, db, store, log, connection, registry });
    } catch (err) {
      await ops.close();
      throw err;
    }
    checks.splice(checks.indexOf(starting), 1, ...(worker.checks ?? []));
    onShutdown(async () => {
      await worker.shutdown();
      await ops.close();
      await connection.close();
      await db.destroy();
    }, log);
    await worker.done;
  });
}
