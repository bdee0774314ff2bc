// A stack for one test file, on the shared real services: its own database, file store and task
// queues (so files running side by side never take each other's work), the real API server, an
// orchestrator worker and GPU workers, all in this process.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Client, Connection } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import OpenAI from 'openai';
import { Registry } from 'prom-client';
import { inject } from 'vitest';

import { startApiServer, type RunningApi } from '../../api/server.js';
import { ensureDatabase } from '../../dev/embedded-postgres.js';
import { ensureBucket } from '../../dev/minio.js';
import { loadConfig, type Config } from '../../lib/config.js';
import { loadCurationSchemas } from '../../lib/curation-schema.js';
import { createFileStore, type FileStore } from '../../lib/file-store.js';
import { labelStudioClient } from '../../lib/label-studio.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { dbOptions, openDatabase, type Db } from '../../schema/db.js';
import { startGpuWorker, type RunningGpuWorker } from '../../workers/gpu.js';
import { startImportWorker } from '../../workers/import.js';
import { startOrchestratorWorker } from '../../workers/orchestrator.js';
import { connectWorker, installRuntime, workerIdentity, type RunningWorker } from '../../workers/worker-process.js';

export interface TestStack {
  name: string;
  config: Config;
  db: Db;
  store: FileStore;
  log: Logger;
  apiUrl: string;
  apiKey: string;
  openai: OpenAI;
  temporal: Client;
  gpuWorkers: RunningGpuWorker[];
  /** Starts one more GPU worker against an engine (default: the shared simulator). */
  addGpuWorker(engineUrl?: string, gpu?: Partial<Config['gpu']>): Promise<RunningGpuWorker>;
  /** The environment that points a separate process at this stack's services. */
  processEnv(): Record<string, string>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Extra environment for the stack's config (chunk sizes, timeouts...). */
  env?: Record<string, string>;
  /** Engines to start GPU workers for; default one worker on the shared simulator. */
  engines?: string[];
  /** Start no API server (workflow-level tests). */
  noApi?: boolean;
  /** Use this Temporal server instead of the shared one (tests that restart it). */
  temporalAddress?: string;
  /** Run no import worker in this process (a test runs it as a process of its own). */
  noImportWorker?: boolean;
  /** The API's port, when a test must know it beforehand (default: any free one). */
  apiPort?: number;
  /** Keep file bytes in a bucket of its own on the shared S3 server instead of a local folder. */
  s3?: boolean;
  /** Run no orchestrator in this process (a test runs it as a process of its own). */
  noOrchestrator?: boolean;
  /** A Postgres server of the test's own (one it stops), instead of the shared one. */
  postgresServerUrl?: string;
}

/** Settings that make tests quick without changing behaviour. */
export const TEST_ENV: Record<string, string> = {
  // The tests' webhook receivers listen on this machine.
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  BATCH_CHUNK_SIZE: '25',
  WORKER_HEARTBEAT_MS: '1000',
  CHUNK_HEARTBEAT_TIMEOUT_MS: '5000',
  CHUNK_HEARTBEAT_THROTTLE_MS: '500',
  CHUNK_RETRY_INITIAL_MS: '200',
  CHUNK_RETRY_MAX_MS: '1000',
  CONTROL_RETRY_INITIAL_MS: '200',
  CONTROL_RETRY_MAX_MS: '1000',
  CURATION_STEP_TIMEOUT_MS: '10000',
  RESULT_FLUSH_MS: '50',
  // Small, so every batch's results are written over many segments and finalized from them, as large answers are.
  RESULT_SEGMENT_BYTES: '4096',
  // Small, so the output files of every batch are written in many parts (on S3 the 5 MiB minimum holds).
  OUTPUT_PART_BYTES: '65536',
  ENGINE_RETRY_INITIAL_MS: '50',
  ENGINE_RETRY_MAX_MS: '500',
  ENGINE_HEALTH_TIMEOUT_MS: '20000',
  WORKER_SHUTDOWN_GRACE_MS: '2000',
  // Worker processes of files running side by side must not fight over the default metrics ports.
  ORCHESTRATOR_METRICS_PORT: '0',
  IMPORT_METRICS_PORT: '0',
  GPU_METRICS_PORT: '0',
};

export async function startTestStack(options: StackOptions = {}): Promise<TestStack> {
  const services = inject('services');
  const name = `t${randomBytes(4).toString('hex')}`;
  const apiKey = `sk-test-${name}`;
  const postgresServerUrl = options.postgresServerUrl ?? services.postgresServerUrl;
  const databaseUrl = `${postgresServerUrl}/${name}`;
  await ensureDatabase(postgresServerUrl, name);
  const fileDir = path.join(services.tmpDir, name, 'files');
  await mkdir(fileDir, { recursive: true });
  const storeEnv: Record<string, string> = { FILE_STORE_DIR: fileDir };
  if (options.s3 === true) {
    Object.assign(storeEnv, {
      FILE_STORE: 's3',
      S3_BUCKET: name,
      S3_PREFIX: 'gpu-batch/',
      S3_ENDPOINT: services.s3.endpoint,
      S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
    });
    const client = new S3Client({
      endpoint: services.s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: services.s3,
    });
    await ensureBucket(client, name);
    client.destroy();
  }

  const config = loadConfig({
    ...process.env,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: options.temporalAddress ?? services.temporalAddress,
    ...storeEnv,
    ORCHESTRATOR_TASK_QUEUE: `orchestrator-${name}`,
    INFERENCE_TASK_QUEUE_PREFIX: `inference-${name}:`,
    SMALL_BATCH_TASK_QUEUE_PREFIX: `inference-small-${name}:`,
    CURATION_TASK_QUEUE: `curation-${name}`,
    API_KEYS: apiKey,
    ...TEST_ENV,
    ...options.env,
  });
  const log = createLogger(name, config.log);
  installRuntime(log);
  const db = await openDatabase(databaseUrl, dbOptions(config));
  const store = createFileStore(config);
  const connection: NativeConnection = await connectWorker(config);
  const clientConnection = await Connection.connect({ address: config.temporal.address ?? services.temporalAddress });
  const temporal = new Client({ connection: clientConnection, namespace: config.temporal.namespace });

  const workers: RunningWorker[] = [];
  const gpuWorkers: RunningGpuWorker[] = [];
  let api: RunningApi | undefined;
  const registry = loadCurationSchemas(config.curation.schemasDir);
  const labelStudio = labelStudioClient(config);
  const stop = async (): Promise<void> => {
    await api?.close();
    await labelStudio?.close();
    await Promise.all(workers.map((w) => w.shutdown().catch(() => undefined)));
    await connection.close();
    await clientConnection.close();
    await db.destroy();
  };
  // What the in-process workers compute on scrape; served by nothing here, as the tests' processes serve theirs.
  const workerMetrics = new Registry();
  const addGpuWorker = async (
    engineUrl = services.simulatorUrl,
    gpu: Partial<Config['gpu']> = {},
  ): Promise<RunningGpuWorker> => {
    const workerConfig: Config = { ...config, gpu: { ...config.gpu, ...gpu } };
    const identity = workerIdentity(`${name}-gpu${workerConfig.gpu.index}-${gpuWorkers.length}`);
    const worker = await startGpuWorker({
      config: workerConfig,
      db,
      store,
      log,
      connection,
      engineUrl,
      registry: workerMetrics,
      identity,
      progress: () => undefined,
    });
    gpuWorkers.push(worker);
    workers.push(worker);
    return worker;
  };
  try {
    const common = {
      config,
      db,
      store,
      log,
      connection,
      workflowBundlePath: services.workflowBundlePath,
      registry: workerMetrics,
      progress: () => undefined,
    };
    if (options.noOrchestrator !== true)
      workers.push(await startOrchestratorWorker({ ...common, identity: workerIdentity(`${name}-orchestrator`) }));
    if (options.noImportWorker !== true)
      workers.push(await startImportWorker({ ...common, identity: workerIdentity(`${name}-import`) }));
    // One process can hold one worker per task queue; more GPU workers for a model are spawned as processes.
    for (const engine of options.engines ?? [services.simulatorUrl]) await addGpuWorker(engine);
    if (options.noApi !== true)
      api = await startApiServer(
        { config, db, store, temporal, log, registry, labelStudio },
        { host: '127.0.0.1', port: options.apiPort ?? 0 },
      );
  } catch (err) {
    await stop();
    throw err;
  }
  const apiUrl = api?.url ?? '';

  return {
    name,
    config,
    db,
    store,
    log,
    apiUrl,
    apiKey,
    openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey, maxRetries: 0 }),
    temporal,
    gpuWorkers,
    addGpuWorker,
    processEnv: () => ({
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: config.temporal.address ?? services.temporalAddress,
      ...storeEnv,
      ORCHESTRATOR_TASK_QUEUE: config.temporal.orchestratorTaskQueue,
      INFERENCE_TASK_QUEUE_PREFIX: config.temporal.inferenceTaskQueuePrefix,
      SMALL_BATCH_TASK_QUEUE_PREFIX: config.temporal.smallBatchTaskQueuePrefix,
      CURATION_TASK_QUEUE: config.curation.taskQueue,
      WORKFLOW_BUNDLE_PATH: services.workflowBundlePath,
      ...TEST_ENV,
      ...options.env,
    }),
    stop,
  };
}
