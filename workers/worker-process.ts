// What every worker process shares: the Temporal runtime (logging through our logger), the
// connection, and where the workflow code lives.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import { Registry } from 'prom-client';

import { keepTrying } from '../lib/abortable.js';
import { databaseUrl, loadConfig, type Config } from '../lib/config.js';
import { onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore, type FileStore } from '../lib/file-store.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { workerPollingGauge } from '../lib/metrics.js';
import { databaseCheck, fileStoreCheck, startOpsServer, temporalCheck, type ReadinessCheck } from '../lib/ops.js';
import { ensureSearchAttributes, temporalConnectionOptions } from '../lib/temporal.js';
import { dbOptions, openDatabase, type Db } from '../schema/db.js';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { ProgressClock, progressInterceptor, Watchdog, type WatchedQueue } from './watchdog.js';

export interface RunningWorker {
  /** Settles when the worker has stopped (after shutdown, or on a fatal error). */
  done: Promise<void>;
  shutdown(): Promise<void>;
  /** Readiness checks of this kind of worker, beyond database, Temporal and file store. */
  checks?: ReadinessCheck[];
  /** The Temporal workers it runs, for the watchdog. */
  queues: WatchedQueue[];
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
      const method =
        entry.level === 'ERROR' ? 'error' : entry.level === 'WARN' ? 'warn' : entry.level === 'INFO' ? 'info' : 'debug';
      log[method]({ ...entry.meta, sdk: 'temporal' }, entry.message);
    }),
  });
}

/**
 * Connects a worker to Temporal; with `keepTrying`, waits for a Temporal that is not up yet. The
 * options (TLS files read) come first, outside any retry: a missing certificate is a configuration
 * error to report at once, not an outage to wait out.
 */
export async function connectWorker(
  config: Config,
  keepTrying?: (connect: () => Promise<NativeConnection>) => Promise<NativeConnection>,
): Promise<NativeConnection> {
  const options = temporalConnectionOptions(config);
  const connect = (): Promise<NativeConnection> => NativeConnection.connect(options);
  return keepTrying === undefined ? connect() : keepTrying(connect);
}

/**
 * The workflow code for a worker: a prebuilt bundle, or one built now in a child process (bundling
 * in a long-lived worker would keep webpack's few hundred megabytes in it for good). `cleanup`
 * removes a bundle built just for this worker once the worker has read it.
 */
export async function workflowBundle(
  config: Config,
  prebuilt: string | undefined,
): Promise<{ codePath: string; cleanup(): Promise<void> }> {
  const given = prebuilt ?? config.temporal.workflowBundlePath;
  if (given !== undefined) return { codePath: given, cleanup: () => Promise.resolve() };
  const { bundleInChild } = await import('../dev/bundle-workflows.js');
  const codePath = await bundleInChild(
    path.join(config.paths.dataDir, `workflow-bundle-${process.pid}-${Date.now()}.js`),
  );
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
  const slots = deps.config.worker.activitySlots;
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
      identity: deps.identity,
      workflowBundle: { codePath: bundle.codePath },
      activities: options.activities,
      maxConcurrentActivityTaskExecutions: slots,
      interceptors: { activity: [progressInterceptor(deps.progress)] },
      shutdownGraceTime: config.worker.shutdownGraceMs,
    });
  } finally {
    await bundle.cleanup();
  }
  const done = worker.run();
  return {
    done,
    queues: [{ worker, taskQueue: options.taskQueue, workflows: true, activitySlots: slots }],
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
  /** The name Temporal lists this process's pollers under. */
  identity: string;
  /** Activities call it whenever they get something done, so a wedged worker can be told from a busy one. */
  progress: () => void;
}

export interface WorkerProcess {
  name: (config: Config) => string;
  /** Where this kind of worker serves /metrics, /healthz and /readyz. */
  metricsPort: (config: Config) => number;
  start: (deps: WorkerProcessDeps) => Promise<RunningWorker>;
}

/** The identity of this process's pollers, as Temporal lists them: unique per process and host. */
export function workerIdentity(name: string): string {
  return `${name}@${hostname()}:${process.pid}`;
}

/**
 * A worker process's life: serve /metrics, /healthz and /readyz first (readiness says what it is
 * waiting for), wait for the database and Temporal however long they take to come, start the worker,
 * watch that it really works, and on SIGTERM shut it down gracefully before closing connections. A
 * worker found wedged ends the process with code 70 so that its supervisor starts a fresh one.
 */
export function runWorkerProcess(kind: WorkerProcess): void {
  runEntryPoint(async () => {
    const config = loadConfig();
    const name = kind.name(config);
    const log = createLogger(name, config.log);
    installRuntime(log);
    let waitingFor = 'the database';
    const starting: ReadinessCheck = {
      name: 'worker',
      check: () => Promise.reject(new Error(`starting: waiting for ${waitingFor}`)),
    };
    const checks: ReadinessCheck[] = [starting];
    const registry = new Registry();
    // 0 until the watchdog has seen the worker poll: a process still waiting for its engine or Temporal takes no work.
    const polling = workerPollingGauge(registry);
    // The health server comes first: a busy port stops the process before a worker polls, and
    // liveness answers while a GPU worker waits (minutes, maybe) for its engine to load.
    const ops = await startOpsServer({
      host: config.metrics.host,
      port: kind.metricsPort(config),
      log,
      timeoutMs: config.metrics.readyTimeoutMs,
      idleTimeoutMs: config.api.idleTimeoutMs,
      checks,
      registry,
    });
    const db = await openDatabase(databaseUrl(config), { ...dbOptions(config), log });
    const store = createFileStore(config);
    waitingFor = 'Temporal';
    const connection = await connectWorker(config, (connect) => keepTrying('Temporal', connect, { log }));
    checks.unshift(databaseCheck(db), temporalCheck(connection), fileStoreCheck(store));
    waitingFor = 'the worker to start';
    const identity = workerIdentity(name);
    const clock = new ProgressClock();
    let worker: RunningWorker;
    try {
      worker = await kind.start({ config, db, store, log, connection, registry, identity, progress: clock.note });
    } catch (err) {
      await ops.close();
      throw err;
    }
    const watchdog = new Watchdog({
      connection,
      namespace: config.temporal.namespace,
      identity,
      queues: worker.queues,
      intervalMs: config.worker.watchdogIntervalMs,
      pollStaleMs: config.worker.pollStaleMs,
      stallMs: config.worker.stallMs,
      timeoutMs: config.metrics.readyTimeoutMs,
      lastProgress: () => clock.at,
      log,
      onWedged: () => {
        // No graceful shutdown: a wedged worker would not finish one. What it ran is retried elsewhere.
        process.exit(EXIT_WEDGED);
      },
      onPolling: (ok) => {
        polling.set(ok ? 1 : 0);
      },
    });
    checks.splice(checks.indexOf(starting), 1, watchdog.check, ...(worker.checks ?? []));
    watchdog.start();
    onShutdown(async () => {
      watchdog.stop();
      // A worker draining its last tasks polls no more: the gauge says so from the first moment.
      polling.set(0);
      await worker.shutdown();
      await ops.close();
      await connection.close();
      await db.destroy();
    }, log);
    await worker.done;
  });
}

/** The exit code of a worker that found itself wedged (EX_SOFTWARE). */
export const EXIT_WEDGED = 70;
