// A GPU worker: one process per GPU, next to the vLLM server that owns that GPU. It polls the task
// queue of each model it serves, runs chunks against its engine with one shared in-flight limit,
// and announces itself so the API knows which models are live. `npm run worker:gpu`.
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Worker } from '@temporalio/worker';

import { Engine, engineRoot } from '../activities/engine-client.js';
import { createInferenceActivities } from '../activities/inference.js';
import { sleep } from '../lib/abortable.js';
import type { Config } from '../lib/config.js';
import { isEntryPoint } from '../lib/entry.js';
import type { Logger } from '../lib/logger.js';
import { zeroGpuWorkerSeries } from '../lib/metrics.js';
import { Semaphore } from '../lib/semaphore.js';
import { Supervisor, supervisorOptions } from '../lib/supervisor.js';
import { inferenceTaskQueue, smallBatchTaskQueue } from '../lib/temporal.js';
import { announceWorker, withdrawWorker } from '../lib/worker-registry.js';
import { BATCH_ENDPOINTS } from '../wire/openai.js';
import { adaptiveLimit, steerInFlight } from './adaptive-inflight.js';
import { progressInterceptor } from './watchdog.js';
import { runWorkerProcess, type RunningWorker, type WorkerProcessDeps } from './worker-process.js';

export interface GpuWorkerDeps extends WorkerProcessDeps {
  /** The vLLM server this worker feeds (VLLM_BASE_URL). */
  engineUrl: string;
}

export interface RunningGpuWorker extends RunningWorker {
  id: string;
  models: string[];
}

/** Waits until the engine answers /health: vLLM takes minutes to load a model. */
export async function waitForEngine(engineUrl: string, timeoutMs: number, log: Logger): Promise<void> {
  const url = `${engineRoot(engineUrl)}/health`;
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`the engine at ${url} did not become healthy within ${timeoutMs} ms`);
    if (!announced) {
      log.info({ url }, 'waiting for the engine to become healthy');
      announced = true;
    }
    await sleep(1000);
  }
}

/**
 * What this worker offers: GPU_MODELS and GPU_ENDPOINTS if set, else what the engine says it serves.
 * Asking /v1/models also checks the engine takes this worker's key. Without GPU_MODELS a refusal stops
 * the worker here, saying why; with it the worker starts, not ready, and each chunk it takes fails with
 * that reason (so a fleet with one misconfigured worker still shows where the problem is).
 */
async function servedByEngine(
  config: Config,
  engine: Engine,
  log: Logger,
): Promise<{ models: string[]; endpoints: string[] }> {
  let listed: string[] = [];
  try {
    listed = await engine.models();
  } catch (err) {
    if (config.gpu.models.length === 0) throw err;
    log.error(
      { err: (err as Error).message, models: config.gpu.models },
      'the engine does not list its models; serving GPU_MODELS as given',
    );
  }
  const models = config.gpu.models.length > 0 ? config.gpu.models : listed;
  if (models.length === 0) throw new Error("the engine's /v1/models lists no models; set GPU_MODELS");
  const endpoints =
    config.gpu.endpoints.length > 0 ? config.gpu.endpoints : await engine.servedEndpoints(BATCH_ENDPOINTS);
  return { models, endpoints };
}

/**
 * VLLM_COMMAND: the worker runs its own vLLM, pinned to its GPU, and restarts it if it dies.
 * (vLLM takes the GPU from CUDA_VISIBLE_DEVICES; the command names model, port and flags.)
 */
function startOwnEngine(config: Config, command: string, log: Logger): Supervisor {
  const engineLog = log.child({ process: 'vllm' });
  mkdirSync(config.paths.dataDir, { recursive: true });
  const supervisor = new Supervisor(supervisorOptions(config, engineLog));
  supervisor.start({
    name: `vllm-gpu${config.gpu.index}`,
    command: '/bin/sh',
    args: ['-c', command],
    env: { ...process.env, CUDA_VISIBLE_DEVICES: config.gpu.index },
    onLine: (line) => {
      engineLog.info(line);
    },
    group: true,
    pidFile: path.join(config.paths.dataDir, `engine-gpu${config.gpu.index}.pid`),
  });
  log.info({ command, gpu: config.gpu.index }, 'started the engine');
  return supervisor;
}

export async function startGpuWorker(deps: GpuWorkerDeps): Promise<RunningGpuWorker> {
  const { config, db } = deps;
  const id = deps.identity;
  // Every line this worker logs names it, so logs from many GPU hosts can be told apart.
  const log = deps.log.child({ worker: id });
  const ownEngine =
    config.engine.command === undefined ? undefined : startOwnEngine(config, config.engine.command, log);
  const inFlight = new Semaphore(config.gpu.maxInFlight);
  const limit = adaptiveLimit(config, inFlight, log);
  const engine = new Engine({
    baseUrl: deps.engineUrl,
    apiKey: config.engine.apiKey,
    requestTimeoutMs: config.engine.requestTimeoutMs,
    // Twice the limit, the most the semaphore lends beyond it to projects below their share: a
    // request waiting for a connection would wait behind the others, unseen by the fair order.
    connections: 2 * config.gpu.maxInFlight,
    keepAliveMs: config.engine.keepAliveMs,
    maxResponseBytes: config.engine.maxResponseBytes,
    onOverload: (why) => {
      limit?.overloaded(why);
    },
  });
  let models: string[];
  let endpoints: string[];
  try {
    await waitForEngine(deps.engineUrl, config.engine.healthTimeoutMs, log);
    ({ models, endpoints } = await servedByEngine(config, engine, log));
  } catch (err) {
    await engine.close();
    await ownEngine?.stopAll();
    throw err;
  }
  zeroGpuWorkerSeries(models, config.gpu.index);
  const activities = createInferenceActivities({
    db,
    store: deps.store,
    engine,
    inFlight,
    config,
    log,
    progress: deps.progress,
  });

  // Each model's two lanes: large batches' chunks, and small batches' in slots of their own (so a
  // small batch never waits for a large one's chunk to end); both share the in-flight limit.
  const lanes = models.flatMap((model) => [
    { taskQueue: inferenceTaskQueue(config, model), activitySlots: config.gpu.concurrentChunks },
    { taskQueue: smallBatchTaskQueue(config, model), activitySlots: config.gpu.smallBatchChunks },
  ]);
  const queues = await Promise.all(
    lanes.map(async ({ taskQueue, activitySlots }) => ({
      taskQueue,
      workflows: false,
      activitySlots,
      worker: await Worker.create({
        connection: deps.connection,
        namespace: config.temporal.namespace,
        taskQueue,
        identity: id,
        activities,
        // Chunks running at once share the in-flight limit: when one drains, the next keeps the GPU busy.
        maxConcurrentActivityTaskExecutions: activitySlots,
        interceptors: { activity: [progressInterceptor(deps.progress)] },
        maxHeartbeatThrottleInterval: config.gpu.heartbeatThrottleMs,
        shutdownGraceTime: config.worker.shutdownGraceMs,
      }),
    })),
  );
  const workers = queues.map((q) => q.worker);

  const announcement = {
    id,
    models,
    taskQueueOf: (model: string) => inferenceTaskQueue(config, model),
    gpu: config.gpu.index,
    host: hostname(),
    engineUrl: engineRoot(deps.engineUrl),
    maxInFlight: config.gpu.maxInFlight,
    endpoints,
  };
  await announceWorker(db, announcement);
  const heartbeat = setInterval(() => {
    announceWorker(db, announcement).catch((err: unknown) => {
      log.warn({ err }, 'could not refresh the worker registry');
    });
  }, config.gpu.heartbeatMs);

  const stopSteering = steerInFlight(config, engine, inFlight, limit, log);
  const done = Promise.all(workers.map((w) => w.run())).then(() => undefined);
  log.info(
    { id, models, endpoints, engine: engineRoot(deps.engineUrl), maxInFlight: config.gpu.maxInFlight },
    'GPU worker ready',
  );
  return {
    id,
    models,
    done,
    queues,
    checks: [
      {
        name: 'engine',
        check: async () => {
          if (!(await engine.healthy(config.metrics.readyTimeoutMs)))
            throw new Error(`${engineRoot(deps.engineUrl)}/health does not answer 200`);
          // Up, and taking this worker's key.
          await engine.models(config.metrics.readyTimeoutMs);
        },
      },
    ],
    shutdown: async () => {
      clearInterval(heartbeat);
      await stopSteering();
      // Withdraw first, so no new batch is accepted for a model that is going away.
      await withdrawWorker(db, id).catch(() => undefined);
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
      await engine.close();
      await ownEngine?.stopAll();
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  runWorkerProcess({
    name: (config) => `gpu-worker-${config.gpu.index}`,
    metricsPort: (config) => config.metrics.gpuPort,
    start: async (deps) => {
      const engineUrl = deps.config.engine.baseUrl;
      if (engineUrl === undefined)
        throw new Error('VLLM_BASE_URL is not set: a GPU worker needs the URL of its vLLM server');
      return startGpuWorker({ ...deps, engineUrl });
    },
  });
}
