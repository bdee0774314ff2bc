// The one place that reads the environment. Every URL, port, size and timeout in the
// project comes from here; entry points call loadConfig() once and pass pieces down.
import path from 'node:path';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegative = z.coerce.number().min(0);
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0),
);
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const envSchema = z.object({
  // Network
  HOST: z.string().default('127.0.0.1'),
  API_PORT: port.default(4080),
  API_KEYS: list.default([]),
  API_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(0).default(3000),
  API_MAX_BODY_BYTES: positiveInt.default(1024 * 1024),
  API_IDLE_TIMEOUT_MS: positiveInt.default(120_000),
  IDEMPOTENCY_TTL_SECONDS: positiveInt.default(86400),
  IDEMPOTENCY_LEASE_SECONDS: positiveInt.default(300),
  SWEEP_INTERVAL_MS: positiveInt.default(10 * 60 * 1000),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),

  // Local state
  DATA_DIR: z.string().default('.data'),
  TOOLS_DIR: z.string().default('.tools'),
  FILE_STORE_DIR: optionalString,

  // Database
  DATABASE_URL: optionalString,
  EMBEDDED_PG_PORT: port.default(5433),
  EMBEDDED_PG_DIR: optionalString,
  DATABASE_POOL_SIZE: positiveInt.default(10),
  DATABASE_QUERY_TIMEOUT_MS: positiveInt.default(60_000),
  DATABASE_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),

  // Temporal
  TEMPORAL_ADDRESS: optionalString,
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_TLS: flag.default(false),
  TEMPORAL_TLS_CERT_PATH: optionalString,
  TEMPORAL_TLS_KEY_PATH: optionalString,
  TEMPORAL_TLS_CA_PATH: optionalString,
  TEMPORAL_TLS_SERVER_NAME: optionalString,
  TEMPORAL_API_KEY: optionalString,
  TEMPORAL_CLI_PATH: optionalString,
  TEMPORAL_DEV_CONFIG: z.string().default('temporal-dev.yaml'),
  TEMPORAL_CLI_VERSION: z.string().default('v1.5.1'),
  TEMPORAL_CALL_TIMEOUT_MS: positiveInt.default(10_000),
  ORCHESTRATOR_TASK_QUEUE: z.string().min(1).default('batch-orchestrator'),
  INFERENCE_TASK_QUEUE_PREFIX: z.string().min(1).default('inference:'),
  WORKFLOW_BUNDLE_PATH: optionalString,

  // Files and batches
  FILE_STORE: z.enum(['local', 's3']).default('local'),
  S3_BUCKET: optionalString,
  S3_PREFIX: z.string().default(''),
  S3_REGION: z.string().default('us-east-1'),
  S3_ENDPOINT: optionalString,
  S3_ACCESS_KEY_ID: optionalString,
  S3_SECRET_ACCESS_KEY: optionalString,
  S3_FORCE_PATH_STYLE: flag.default(false),
  // S3 refuses multipart parts under 5 MiB (except the last).
  S3_PART_BYTES: positiveInt.min(5 * 1024 * 1024).default(8 * 1024 * 1024),
  S3_UPLOAD_CONCURRENCY: positiveInt.default(2),
  S3_CONNECT_TIMEOUT_MS: positiveInt.default(10_000),
  S3_REQUEST_TIMEOUT_MS: positiveInt.default(60_000),
  MINIO_PATH: optionalString,
  MINIO_VERSION: z.string().default('v0.0.0-20260212201848-7aac2a2c5b7c'),
  MINIO_PORT: port.default(9100),
  MAX_UPLOAD_BYTES: positiveInt.default(200 * 1024 * 1024),
  INPUT_FILE_LIFETIME_SECONDS: positiveInt.default(30 * 86400),
  BATCH_RETENTION_SECONDS: positiveInt.default(90 * 86400),
  DEAD_LETTER_RETENTION_SECONDS: positiveInt.default(30 * 86400),
  FILE_STORE_PARTIAL_MAX_AGE_SECONDS: positiveInt.default(6 * 3600),
  WORKER_FORGET_SECONDS: positiveInt.default(3600),
  OUTPUT_FILE_LIFETIME_SECONDS: positiveInt.default(30 * 86400),
  BATCH_MAX_REQUESTS: positiveInt.default(50_000),
  BATCH_CHUNK_SIZE: positiveInt.default(500),
  BATCH_CHUNKS_PER_WORKER: positiveInt.default(16),
  BATCH_MAX_PENDING_CHUNKS: positiveInt.default(16),
  VALIDATION_MAX_ERRORS: positiveInt.default(100),
  VALIDATION_MAX_DEPTH: positiveInt.default(64),
  VALIDATION_MAX_CUSTOM_ID_CHARS: positiveInt.default(512),
  VALIDATION_MAX_EMBEDDING_INPUTS: positiveInt.default(2048),
  BATCH_MAX_LINE_BYTES: positiveInt.default(16 * 1024 * 1024),
  CHUNK_HEARTBEAT_TIMEOUT_MS: positiveInt.default(60_000),
  CHUNK_START_TO_CLOSE_MS: positiveInt.default(2 * 60 * 60 * 1000),
  CHUNK_MAX_ATTEMPTS: positiveInt.default(5),
  CHUNK_RETRY_INITIAL_MS: positiveInt.default(2000),
  CHUNK_RETRY_MAX_MS: positiveInt.default(60_000),
  CONTROL_START_TO_CLOSE_MS: positiveInt.default(30 * 60 * 1000),
  CONTROL_HEARTBEAT_TIMEOUT_MS: positiveInt.default(2 * 60 * 1000),
  CONTROL_RETRY_INITIAL_MS: positiveInt.default(1000),
  CONTROL_RETRY_MAX_MS: positiveInt.default(60_000),
  CONTROL_MAX_ATTEMPTS: positiveInt.default(20),
  RECONCILE_INTERVAL_MS: positiveInt.default(60_000),
  RECONCILE_GRACE_SECONDS: positiveInt.default(120),
  RECONCILE_BATCHES_PER_PASS: positiveInt.default(200),
  RECONCILE_MAX_TRIES: positiveInt.default(10),
  RESULT_FLUSH_ROWS: positiveInt.default(200),
  RESULT_FLUSH_MS: positiveInt.default(250),
  RESULT_STATEMENT_BYTES: positiveInt.default(16 * 1024 * 1024),

  // Engine (vLLM) and GPU worker
  VLLM_BASE_URL: optionalString,
  VLLM_API_KEY: optionalString,
  VLLM_COMMAND: optionalString,
  GPU_INDEX: z.string().default('0'),
  GPU_MODELS: list.default([]),
  GPU_ENDPOINTS: list.default([]),
  GPU_MAX_INFLIGHT: positiveInt.default(256),
  GPU_CONCURRENT_CHUNKS: positiveInt.default(2),
  WORKER_HEARTBEAT_MS: positiveInt.default(10_000),
  CHUNK_HEARTBEAT_THROTTLE_MS: positiveInt.default(2000),
  WORKER_SHUTDOWN_GRACE_MS: positiveInt.default(30_000),
  WORKER_ACTIVITY_SLOTS: positiveInt.default(100),
  WORKER_WATCHDOG_INTERVAL_MS: positiveInt.default(10_000),
  WORKER_POLL_STALE_MS: positiveInt.default(120_000),
  WORKER_STALL_MS: positiveInt.default(15 * 60 * 1000),
  ENGINE_REQUEST_TIMEOUT_MS: positiveInt.default(10 * 60 * 1000),
  ENGINE_RETRY_BUDGET_MS: positiveInt.default(10 * 60 * 1000),
  ENGINE_RETRY_INITIAL_MS: positiveInt.default(500),
  ENGINE_RETRY_MAX_MS: positiveInt.default(30_000),
  ENGINE_HEALTH_TIMEOUT_MS: positiveInt.default(10 * 60 * 1000),
  ENGINE_KEEP_ALIVE_MS: positiveInt.default(4000),
  ENGINE_MAX_RESPONSE_BYTES: positiveInt.default(64 * 1024 * 1024),

  // Metrics, health and readiness (/metrics, /healthz, /readyz): the API serves them on its own
  // port; each worker on a port of its own
  METRICS_HOST: optionalString,
  ORCHESTRATOR_METRICS_PORT: port.default(9464),
  IMPORT_METRICS_PORT: port.default(9465),
  GPU_METRICS_PORT: port.optional(),
  READY_TIMEOUT_MS: positiveInt.default(3000),
  API_READY_WITHOUT_TEMPORAL: flag.default(false),

  // Webhooks (batch.completed and the like, to endpoints projects register)
  WEBHOOK_TIMEOUT_MS: positiveInt.default(10_000),
  WEBHOOK_RETRY_WINDOW_SECONDS: positiveInt.default(25 * 3600),
  WEBHOOK_RETRY_INITIAL_MS: positiveInt.default(5000),
  WEBHOOK_RETRY_MAX_MS: positiveInt.default(60 * 60 * 1000),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: flag.default(false),
  WEBHOOK_HISTORY_SECONDS: positiveInt.default(30 * 86400),
  WEBHOOK_MAX_ENDPOINTS: positiveInt.default(20),
  WEBHOOK_MAX_PENDING: positiveInt.default(1000),

  // The command line's way to the API (the same variables the openai SDKs read)
  OPENAI_BASE_URL: optionalString,
  OPENAI_API_KEY: optionalString,

  // Label Studio and curation
  LABEL_STUDIO_URL: optionalString,
  LABEL_STUDIO_API_KEY: optionalString,
  LABEL_STUDIO_TIMEOUT_MS: positiveInt.default(60_000),
  LABEL_STUDIO_RETRIES: z.coerce.number().int().min(0).default(3),
  CURATION_TASK_QUEUE: z.string().min(1).default('curation-import'),
  CURATION_PAGE_SIZE: positiveInt.default(500),
  CURATION_RETRY_HOURS: positiveInt.default(24),
  CURATION_STEP_TIMEOUT_MS: positiveInt.default(5 * 60 * 1000),
  CURATION_DEFAULT_SCHEMA: z.string().min(1).default('review'),
  CURATION_SCHEMAS_DIR: z.string().default('curation-schemas'),
  CURATION_WEBHOOK_URL: optionalString,
  CURATION_WEBHOOK_SECRET: optionalString,
  LABEL_STUDIO_VERSION: z.string().default('1.23.2'),
  LABEL_STUDIO_PORT: port.default(8080),
  LABEL_STUDIO_USER: z.string().default('curator@localhost'),
  LABEL_STUDIO_PASSWORD: z.string().default('curator-password'),

  // Supervised processes (npm start's stack, a GPU worker's own vLLM)
  RESTART_DELAY_MS: positiveInt.default(1000),
  MAX_RESTART_DELAY_MS: positiveInt.default(30_000),
  STOP_GRACE_MS: positiveInt.default(20_000),
  DEV_START_TIMEOUT_MS: positiveInt.default(120_000),
  DEV_API_KEY: z.string().min(1).default('sk-local'),

  // vLLM simulator
  SIM_PORT: port.default(8000),
  SIM_MODELS: list.default(['sim-llama-8b']),
  SIM_EMBEDDING_MODELS: list.default([]),
  // Capacity defaults: vLLM's for Llama-3.1-8B on one H100, step time calibrated (simulator/README.md).
  SIM_MAX_NUM_SEQS: positiveInt.default(1024),
  SIM_MAX_MODEL_LEN: positiveInt.default(8192),
  SIM_MAX_NUM_BATCHED_TOKENS: positiveInt.default(8192),
  SIM_BLOCK_SIZE: positiveInt.default(16),
  SIM_NUM_GPU_BLOCKS: positiveInt.default(27_648),
  SIM_STEP_BASE_MS: nonNegative.optional(),
  SIM_STEP_TOKEN_MS: nonNegative.optional(),
  SIM_ENABLE_PREFIX_CACHING: flag.default(true),
  SIM_ENABLE_PROMPT_TOKENS_DETAILS: flag.default(false),
  SIM_SCHEDULING_POLICY: z.enum(['fcfs', 'priority']).default('fcfs'),
  SIM_PREFILL_MS: nonNegative.default(0),
  // Old names, still read when the new ones are unset: SIM_STEP_BASE_MS, and 1000 / SIM_STEP_TOKEN_MS.
  SIM_TOKEN_LATENCY_MS: nonNegative.optional(),
  SIM_PREFILL_TOKENS_PER_SEC: nonNegative.optional(),
  SIM_OUTPUT_TOKENS: z.string().default('16-256'),
  SIM_EMBEDDING_DIM: positiveInt.default(384),
  SIM_FAULTS: z.string().default(''),
  SIM_SEED: z.coerce.number().int().default(1),

  // Real vLLM on the CPU (`npm run vllm:install`, `npm run vllm`, the real-vLLM tests)
  VLLM_VERSION: z.string().default('0.32.0'),
  VLLM_PORT: port.default(8001),
  VLLM_START_TIMEOUT_MS: positiveInt.default(300_000),
  VLLM_PYTHON: z.string().min(1).default('python3'),
});

export type Env = z.input<typeof envSchema>;

/** Every environment variable the configuration reads (the README documents each). */
export const CONFIG_VARIABLES = Object.keys(envSchema.shape);

export interface Config {
  host: string;
  log: { level: z.infer<typeof envSchema>['LOG_LEVEL']; format: 'json' | 'pretty' };
  api: {
    port: number;
    seedKeys: string[];
    /** Requests per minute per project, per API process; 0 turns the limit off. */
    rateLimitPerMinute: number;
    /** Largest JSON request body (uploads have MAX_UPLOAD_BYTES). */
    maxBodyBytes: number;
    /** A connection idle this long (no byte either way) is closed, on the API and on every ops server. */
    idleTimeoutMs: number;
    idempotencyTtlSeconds: number;
    idempotencyLeaseSeconds: number;
    /** How often expired files and idempotency keys are removed. */
    sweepIntervalMs: number;
  };
  files: {
    store: 'local' | 's3';
    s3: {
      bucket: string | undefined;
      prefix: string;
      region: string;
      endpoint: string | undefined;
      accessKeyId: string | undefined;
      secretAccessKey: string | undefined;
      forcePathStyle: boolean;
      partBytes: number;
      uploadConcurrency: number;
      connectTimeoutMs: number;
      /** Longest an S3 request may go without sending or receiving a byte. */
      requestTimeoutMs: number;
    };
    maxUploadBytes: number;
    inputLifetimeSeconds: number;
    outputLifetimeSeconds: number;
  };
  /** How long what is not a file is kept (files have their own expiry). */
  retention: {
    batchSeconds: number;
    deadLetterSeconds: number;
    partialWriteSeconds: number;
    goneWorkerSeconds: number;
  };
  paths: { dataDir: string; toolsDir: string; fileStoreDir: string; embeddedPgDir: string };
  database: {
    url: string | undefined;
    embeddedPort: number;
    poolSize: number;
    /** Longest one statement may run; the client gives up on a reply a little after that. */
    queryTimeoutMs: number;
    /** Longest opening a connection, or waiting for a free one, may take. */
    connectTimeoutMs: number;
  };
  temporal: {
    address: string | undefined;
    namespace: string;
    tls: { enabled: boolean; certPath?: string; keyPath?: string; caPath?: string; serverName?: string };
    apiKey: string | undefined;
    cliPath: string | undefined;
    cliVersion: string;
    devConfigPath: string;
    /** Longest one call to Temporal from the API may take. */
    callTimeoutMs: number;
    orchestratorTaskQueue: string;
    inferenceTaskQueuePrefix: string;
    /** Prebuilt workflow code (`npm run build:workflows`); without it the orchestrator builds it at start. */
    workflowBundlePath: string | undefined;
  };
  batch: {
    maxRequests: number;
    chunkSize: number;
    chunksPerWorker: number;
    maxPendingChunks: number;
    validationMaxErrors: number;
    /** Deepest nesting of arrays and objects in one input line. */
    validationMaxDepth: number;
    validationMaxCustomIdChars: number;
    validationMaxEmbeddingInputs: number;
    /** Longest input line; longer ones are never buffered, and fail validation. */
    maxLineBytes: number;
    chunkHeartbeatTimeoutMs: number;
    chunkStartToCloseMs: number;
    chunkMaxAttempts: number;
    chunkRetryInitialMs: number;
    chunkRetryMaxMs: number;
    /** The orchestrator's own activities (validate, finalize...): a bounded number of attempts each. */
    control: {
      startToCloseMs: number;
      heartbeatTimeoutMs: number;
      retryInitialMs: number;
      retryMaxMs: number;
      maxAttempts: number;
    };
    resultFlushRows: number;
    resultFlushMs: number;
    /** Most bytes of output lines one statement writes (a flush) or reads (a page of finalize). */
    resultStatementBytes: number;
  };
  engine: {
    baseUrl: string | undefined;
    apiKey: string | undefined;
    /** A shell command that starts this worker's vLLM; the worker runs and supervises it. */
    command: string | undefined;
    requestTimeoutMs: number;
    retryBudgetMs: number;
    retryInitialMs: number;
    retryMaxMs: number;
    healthTimeoutMs: number;
    /** Idle connections to the engine are closed after this: below vLLM's own 5 s, so a request never meets a connection the engine just closed. */
    keepAliveMs: number;
    maxResponseBytes: number;
  };
  gpu: {
    index: string;
    models: string[];
    /** The batch endpoints its engine serves; empty: asked of the engine. */
    endpoints: string[];
    maxInFlight: number;
    concurrentChunks: number;
    heartbeatMs: number;
    /** How often a chunk's heartbeat reaches Temporal at most, which bounds how fast a cancel arrives. */
    heartbeatThrottleMs: number;
  };
  /** The orchestrators' sweep that ends batches whose workflow is gone. */
  reconciler: { intervalMs: number; graceSeconds: number; batchesPerPass: number; maxTries: number };
  worker: {
    shutdownGraceMs: number;
    /** Activities an orchestrator or import worker runs at once (a GPU worker: GPU_CONCURRENT_CHUNKS). */
    activitySlots: number;
    watchdogIntervalMs: number;
    /** Not listed by Temporal as a poller for this long: not ready; twice as long: the process exits. */
    pollStaleMs: number;
    /** Every activity slot busy with no progress for this long: the process exits. */
    stallMs: number;
  };
  minio: { path: string | undefined; version: string; port: number };
  /** Where each worker serves /metrics, /healthz and /readyz. */
  metrics: {
    host: string;
    orchestratorPort: number;
    importPort: number;
    gpuPort: number;
    readyTimeoutMs: number;
    apiReadyWithoutTemporal: boolean;
  };
  webhooks: {
    timeoutMs: number;
    retryWindowSeconds: number;
    retryInitialMs: number;
    retryMaxMs: number;
    allowPrivateNetworks: boolean;
    historySeconds: number;
    /** Endpoints one project may register. */
    maxEndpointsPerProject: number;
    /** Deliveries of one project being tried at once, beyond which a re-drive is refused (429). */
    maxPendingPerProject: number;
  };
  /** Where `gpu-batch` finds the API: OPENAI_BASE_URL, else this machine's own API. */
  cli: { apiUrl: string; apiKey: string };
  labelStudio: {
    /** Unset: auto-import is skipped, and each batch records why. */
    url: string | undefined;
    apiKey: string | undefined;
    timeoutMs: number;
    retries: number;
    /** For the Label Studio that `npm start --with-label-studio` and the tests install and run. */
    local: { version: string; port: number; user: string; password: string };
  };
  curation: {
    taskQueue: string;
    pageSize: number;
    retryHours: number;
    /** Longest one import step may take before it is retried (a worker that died is noticed then). */
    stepTimeoutMs: number;
    defaultSchema: string;
    schemasDir: string;
    /** Where Label Studio should send annotation webhooks (this API's /hooks/label-studio). */
    webhookUrl: string | undefined;
    webhookSecret: string | undefined;
  };
  supervisor: { restartDelayMs: number; maxRestartDelayMs: number; stopGraceMs: number };
  dev: { startTimeoutMs: number; apiKey: string };
  simulator: {
    port: number;
    models: string[];
    /** Served names that are embedding models (only /v1/embeddings); empty: those with "embed" in their name. */
    embeddingModels: string[];
    maxNumSeqs: number;
    maxModelLen: number;
    maxNumBatchedTokens: number;
    blockSize: number;
    numGpuBlocks: number;
    /** Step time = stepBaseMs + stepTokenMs × tokens in the step. */
    stepBaseMs: number;
    stepTokenMs: number;
    enablePrefixCaching: boolean;
    enablePromptTokensDetails: boolean;
    schedulingPolicy: 'fcfs' | 'priority';
    /** Fixed time before a request reaches the engine. */
    prefillMs: number;
    outputTokens: string;
    embeddingDim: number;
    faults: string;
    seed: number;
  };
  /** vLLM's CPU build in a venv under the tools folder, serving a tiny model made there. */
  vllmLocal: {
    version: string;
    port: number;
    /** How long to wait for its /health. */
    startTimeoutMs: number;
    /** The Python the venv is made with (the lock file names the version it is for). */
    python: string;
  };
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new ConfigError(`Invalid configuration:\n${problems}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  const tls: Config['temporal']['tls'] = { enabled: e.TEMPORAL_TLS || e.TEMPORAL_API_KEY !== undefined };
  if (e.TEMPORAL_TLS_CERT_PATH) tls.certPath = e.TEMPORAL_TLS_CERT_PATH;
  if (e.TEMPORAL_TLS_KEY_PATH) tls.keyPath = e.TEMPORAL_TLS_KEY_PATH;
  if (e.TEMPORAL_TLS_CA_PATH) tls.caPath = e.TEMPORAL_TLS_CA_PATH;
  if (e.TEMPORAL_TLS_SERVER_NAME) tls.serverName = e.TEMPORAL_TLS_SERVER_NAME;
  return {
    host: e.HOST,
    log: { level: e.LOG_LEVEL, format: e.LOG_FORMAT },
    api: {
      port: e.API_PORT,
      seedKeys: e.API_KEYS,
      rateLimitPerMinute: e.API_RATE_LIMIT_PER_MINUTE,
      maxBodyBytes: e.API_MAX_BODY_BYTES,
      idleTimeoutMs: e.API_IDLE_TIMEOUT_MS,
      idempotencyTtlSeconds: e.IDEMPOTENCY_TTL_SECONDS,
      idempotencyLeaseSeconds: e.IDEMPOTENCY_LEASE_SECONDS,
      sweepIntervalMs: e.SWEEP_INTERVAL_MS,
    },
    files: {
      store: e.FILE_STORE,
      s3: {
        bucket: e.S3_BUCKET,
        prefix: e.S3_PREFIX,
        region: e.S3_REGION,
        endpoint: e.S3_ENDPOINT,
        accessKeyId: e.S3_ACCESS_KEY_ID,
        secretAccessKey: e.S3_SECRET_ACCESS_KEY,
        forcePathStyle: e.S3_FORCE_PATH_STYLE,
        partBytes: e.S3_PART_BYTES,
        uploadConcurrency: e.S3_UPLOAD_CONCURRENCY,
        connectTimeoutMs: e.S3_CONNECT_TIMEOUT_MS,
        requestTimeoutMs: e.S3_REQUEST_TIMEOUT_MS,
      },
      maxUploadBytes: e.MAX_UPLOAD_BYTES,
      inputLifetimeSeconds: e.INPUT_FILE_LIFETIME_SECONDS,
      outputLifetimeSeconds: e.OUTPUT_FILE_LIFETIME_SECONDS,
    },
    retention: {
      batchSeconds: e.BATCH_RETENTION_SECONDS,
      deadLetterSeconds: e.DEAD_LETTER_RETENTION_SECONDS,
      partialWriteSeconds: e.FILE_STORE_PARTIAL_MAX_AGE_SECONDS,
      goneWorkerSeconds: e.WORKER_FORGET_SECONDS,
    },
    paths: {
      dataDir,
      toolsDir: path.resolve(e.TOOLS_DIR),
      fileStoreDir: path.resolve(e.FILE_STORE_DIR ?? path.join(dataDir, 'files')),
      embeddedPgDir: path.resolve(e.EMBEDDED_PG_DIR ?? path.join(dataDir, 'postgres')),
    },
    database: {
      url: e.DATABASE_URL,
      embeddedPort: e.EMBEDDED_PG_PORT,
      poolSize: e.DATABASE_POOL_SIZE,
      queryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
      connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
    },
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      tls,
      apiKey: e.TEMPORAL_API_KEY,
      cliPath: e.TEMPORAL_CLI_PATH,
      cliVersion: e.TEMPORAL_CLI_VERSION,
      devConfigPath: path.resolve(e.TEMPORAL_DEV_CONFIG),
      callTimeoutMs: e.TEMPORAL_CALL_TIMEOUT_MS,
      orchestratorTaskQueue: e.ORCHESTRATOR_TASK_QUEUE,
      inferenceTaskQueuePrefix: e.INFERENCE_TASK_QUEUE_PREFIX,
      workflowBundlePath: e.WORKFLOW_BUNDLE_PATH === undefined ? undefined : path.resolve(e.WORKFLOW_BUNDLE_PATH),
    },
    batch: {
      maxRequests: e.BATCH_MAX_REQUESTS,
      chunkSize: e.BATCH_CHUNK_SIZE,
      chunksPerWorker: e.BATCH_CHUNKS_PER_WORKER,
      maxPendingChunks: e.BATCH_MAX_PENDING_CHUNKS,
      validationMaxErrors: e.VALIDATION_MAX_ERRORS,
      validationMaxDepth: e.VALIDATION_MAX_DEPTH,
      validationMaxCustomIdChars: e.VALIDATION_MAX_CUSTOM_ID_CHARS,
      validationMaxEmbeddingInputs: e.VALIDATION_MAX_EMBEDDING_INPUTS,
      maxLineBytes: e.BATCH_MAX_LINE_BYTES,
      chunkHeartbeatTimeoutMs: e.CHUNK_HEARTBEAT_TIMEOUT_MS,
      chunkStartToCloseMs: e.CHUNK_START_TO_CLOSE_MS,
      chunkMaxAttempts: e.CHUNK_MAX_ATTEMPTS,
      chunkRetryInitialMs: e.CHUNK_RETRY_INITIAL_MS,
      chunkRetryMaxMs: e.CHUNK_RETRY_MAX_MS,
      control: {
        startToCloseMs: e.CONTROL_START_TO_CLOSE_MS,
        heartbeatTimeoutMs: e.CONTROL_HEARTBEAT_TIMEOUT_MS,
        retryInitialMs: e.CONTROL_RETRY_INITIAL_MS,
        retryMaxMs: e.CONTROL_RETRY_MAX_MS,
        maxAttempts: e.CONTROL_MAX_ATTEMPTS,
      },
      resultFlushRows: e.RESULT_FLUSH_ROWS,
      resultFlushMs: e.RESULT_FLUSH_MS,
      resultStatementBytes: e.RESULT_STATEMENT_BYTES,
    },
    engine: {
      baseUrl: e.VLLM_BASE_URL,
      apiKey: e.VLLM_API_KEY,
      command: e.VLLM_COMMAND,
      requestTimeoutMs: e.ENGINE_REQUEST_TIMEOUT_MS,
      retryBudgetMs: e.ENGINE_RETRY_BUDGET_MS,
      retryInitialMs: e.ENGINE_RETRY_INITIAL_MS,
      retryMaxMs: e.ENGINE_RETRY_MAX_MS,
      healthTimeoutMs: e.ENGINE_HEALTH_TIMEOUT_MS,
      keepAliveMs: e.ENGINE_KEEP_ALIVE_MS,
      maxResponseBytes: e.ENGINE_MAX_RESPONSE_BYTES,
    },
    gpu: {
      index: e.GPU_INDEX,
      models: e.GPU_MODELS,
      endpoints: e.GPU_ENDPOINTS,
      maxInFlight: e.GPU_MAX_INFLIGHT,
      concurrentChunks: e.GPU_CONCURRENT_CHUNKS,
      heartbeatMs: e.WORKER_HEARTBEAT_MS,
      heartbeatThrottleMs: e.CHUNK_HEARTBEAT_THROTTLE_MS,
    },
    reconciler: {
      intervalMs: e.RECONCILE_INTERVAL_MS,
      graceSeconds: e.RECONCILE_GRACE_SECONDS,
      batchesPerPass: e.RECONCILE_BATCHES_PER_PASS,
      maxTries: e.RECONCILE_MAX_TRIES,
    },
    worker: {
      shutdownGraceMs: e.WORKER_SHUTDOWN_GRACE_MS,
      activitySlots: e.WORKER_ACTIVITY_SLOTS,
      watchdogIntervalMs: e.WORKER_WATCHDOG_INTERVAL_MS,
      pollStaleMs: e.WORKER_POLL_STALE_MS,
      stallMs: e.WORKER_STALL_MS,
    },
    minio: { path: e.MINIO_PATH, version: e.MINIO_VERSION, port: e.MINIO_PORT },
    metrics: {
      host: e.METRICS_HOST ?? e.HOST,
      orchestratorPort: e.ORCHESTRATOR_METRICS_PORT,
      importPort: e.IMPORT_METRICS_PORT,
      // One GPU worker per GPU on a host: each gets its own port unless told otherwise.
      gpuPort: e.GPU_METRICS_PORT ?? 9470 + (Number.parseInt(e.GPU_INDEX, 10) || 0),
      readyTimeoutMs: e.READY_TIMEOUT_MS,
      apiReadyWithoutTemporal: e.API_READY_WITHOUT_TEMPORAL,
    },
    webhooks: {
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
      retryWindowSeconds: e.WEBHOOK_RETRY_WINDOW_SECONDS,
      retryInitialMs: e.WEBHOOK_RETRY_INITIAL_MS,
      retryMaxMs: e.WEBHOOK_RETRY_MAX_MS,
      allowPrivateNetworks: e.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
      historySeconds: e.WEBHOOK_HISTORY_SECONDS,
      maxEndpointsPerProject: e.WEBHOOK_MAX_ENDPOINTS,
      maxPendingPerProject: e.WEBHOOK_MAX_PENDING,
    },
    cli: {
      apiUrl: e.OPENAI_BASE_URL ?? `http://127.0.0.1:${e.API_PORT}/v1`,
      apiKey: e.OPENAI_API_KEY ?? e.API_KEYS[0] ?? e.DEV_API_KEY,
    },
    labelStudio: {
      url: e.LABEL_STUDIO_URL,
      apiKey: e.LABEL_STUDIO_API_KEY,
      timeoutMs: e.LABEL_STUDIO_TIMEOUT_MS,
      retries: e.LABEL_STUDIO_RETRIES,
      local: {
        version: e.LABEL_STUDIO_VERSION,
        port: e.LABEL_STUDIO_PORT,
        user: e.LABEL_STUDIO_USER,
        password: e.LABEL_STUDIO_PASSWORD,
      },
    },
    curation: {
      taskQueue: e.CURATION_TASK_QUEUE,
      pageSize: e.CURATION_PAGE_SIZE,
      retryHours: e.CURATION_RETRY_HOURS,
      stepTimeoutMs: e.CURATION_STEP_TIMEOUT_MS,
      defaultSchema: e.CURATION_DEFAULT_SCHEMA,
      schemasDir: path.resolve(e.CURATION_SCHEMAS_DIR),
      webhookUrl: e.CURATION_WEBHOOK_URL,
      webhookSecret: e.CURATION_WEBHOOK_SECRET,
    },
    supervisor: {
      restartDelayMs: e.RESTART_DELAY_MS,
      maxRestartDelayMs: e.MAX_RESTART_DELAY_MS,
      stopGraceMs: e.STOP_GRACE_MS,
    },
    dev: {
      startTimeoutMs: e.DEV_START_TIMEOUT_MS,
      apiKey: e.DEV_API_KEY,
    },
    simulator: {
      port: e.SIM_PORT,
      models: e.SIM_MODELS,
      embeddingModels: e.SIM_EMBEDDING_MODELS,
      maxNumSeqs: e.SIM_MAX_NUM_SEQS,
      maxModelLen: e.SIM_MAX_MODEL_LEN,
      maxNumBatchedTokens: e.SIM_MAX_NUM_BATCHED_TOKENS,
      blockSize: e.SIM_BLOCK_SIZE,
      numGpuBlocks: e.SIM_NUM_GPU_BLOCKS,
      stepBaseMs: e.SIM_STEP_BASE_MS ?? e.SIM_TOKEN_LATENCY_MS ?? 6,
      stepTokenMs:
        e.SIM_STEP_TOKEN_MS ??
        (e.SIM_PREFILL_TOKENS_PER_SEC === undefined
          ? 0.05
          : e.SIM_PREFILL_TOKENS_PER_SEC > 0
            ? 1000 / e.SIM_PREFILL_TOKENS_PER_SEC
            : 0),
      enablePrefixCaching: e.SIM_ENABLE_PREFIX_CACHING,
      enablePromptTokensDetails: e.SIM_ENABLE_PROMPT_TOKENS_DETAILS,
      schedulingPolicy: e.SIM_SCHEDULING_POLICY,
      prefillMs: e.SIM_PREFILL_MS,
      outputTokens: e.SIM_OUTPUT_TOKENS,
      embeddingDim: e.SIM_EMBEDDING_DIM,
      faults: e.SIM_FAULTS,
      seed: e.SIM_SEED,
    },
    vllmLocal: {
      version: e.VLLM_VERSION,
      port: e.VLLM_PORT,
      startTimeoutMs: e.VLLM_START_TIMEOUT_MS,
      python: e.VLLM_PYTHON,
    },
  };
}

/** The database URL the embedded Postgres answers on when DATABASE_URL is unset. */
export function embeddedDatabaseUrl(config: Config): string {
  return `postgres://postgres:postgres@127.0.0.1:${config.database.embeddedPort}/batch`;
}

export function databaseUrl(config: Config): string {
  return config.database.url ?? embeddedDatabaseUrl(config);
}
