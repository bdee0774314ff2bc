// Every Prometheus metric the processes record, in one place so the dashboard
// (deploy/grafana/gpu-batch.json) and docs/operations.md can be checked against it. Each process serves the
// ones it records: GPU workers the request, token, latency and in-flight series; the orchestrator
// batch outcomes, pending chunks and webhook attempts; the import worker import progress; the API
// its HTTP traffic and the state of batches, imports and webhook deliveries as the database has it.
import { collectDefaultMetrics, Counter, Gauge, Histogram, register, type Registry } from 'prom-client';

import { withTimeout } from './abortable.js';
import { LIMIT_CHANGES } from './adaptive-limit.js';

let defaultsOn = false;

/** Process CPU, memory, event-loop lag and GC, once per process. */
export function collectProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics();
}

// GPU workers
export const requestsTotal = new Counter({
  name: 'gpu_batch_requests_total',
  help: 'Batch requests a GPU worker finished, by model and outcome (completed: the engine answered 2xx; failed: an error line)',
  labelNames: ['model', 'outcome'] as const,
});
export const tokensTotal = new Counter({
  name: 'gpu_batch_tokens_total',
  help: "Tokens the engine reported in usage, by model and kind (prompt; cached: the part of prompt served from the engine's prefix cache, when vLLM reports it; completion)",
  labelNames: ['model', 'kind'] as const,
});
export const engineRequestSeconds = new Histogram({
  name: 'gpu_batch_engine_request_duration_seconds',
  help: 'One attempt of one request against the engine, by model and outcome (ok, http_4xx, http_5xx, network)',
  labelNames: ['model', 'outcome'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320],
});
export const inflightRequests = new Gauge({
  name: 'gpu_batch_inflight_requests',
  help: 'Requests this GPU worker has at its engine right now',
  labelNames: ['model'] as const,
});
export const inflightLimit = new Gauge({
  name: 'gpu_batch_inflight_limit',
  help: "This GPU worker's limit on requests in flight now: the adaptive limit, between GPU_MIN_INFLIGHT and GPU_MAX_INFLIGHT",
  labelNames: ['gpu'] as const,
});
export const inflightLimitChangesTotal = new Counter({
  name: 'gpu_batch_inflight_limit_changes_total',
  help: 'Moves of the adaptive in-flight limit, by why (increase; rate_limited, unavailable, timeout, preemption, queue, slow_first_token, slow_tokens)',
  labelNames: ['gpu', 'reason'] as const,
});
export const projectInflightRequests = new Gauge({
  name: 'gpu_batch_project_inflight_requests',
  help: "Requests this GPU worker has at its engine right now, by project (its batches' fairness key)",
  labelNames: ['project'] as const,
});
export const engineRetriesTotal = new Counter({
  name: 'gpu_batch_engine_retries_total',
  help: 'Request attempts that were retried, by model and the reason (http_429, http_5xx, network...)',
  labelNames: ['model', 'reason'] as const,
});
export const chunksTotal = new Counter({
  name: 'gpu_batch_chunks_total',
  help: 'Chunk attempts a GPU worker finished, by model and outcome (completed, failed: to be retried, cancelled)',
  labelNames: ['model', 'outcome'] as const,
});

// Orchestrator
export const batchesFinishedTotal = new Counter({
  name: 'gpu_batch_batches_finished_total',
  help: 'Batches that reached a final status, by status',
  labelNames: ['status'] as const,
});
export const deadLetteredChunksTotal = new Counter({
  name: 'gpu_batch_dead_lettered_chunks_total',
  help: 'Chunks that ran out of attempts; their unfinished lines became error lines',
});
export const batchesReconciledTotal = new Counter({
  name: 'gpu_batch_batches_reconciled_total',
  help: 'Live batches the reconciler ended because their workflow was gone (terminated, failed, never started)',
});
export const webhookAttemptsTotal = new Counter({
  name: 'gpu_batch_webhook_attempts_total',
  help: 'Webhook delivery attempts, by outcome (delivered, failed)',
  labelNames: ['outcome'] as const,
});

// Import worker
export const curationTasksImportedTotal = new Counter({
  name: 'gpu_batch_curation_tasks_imported_total',
  help: 'Tasks imported into Label Studio',
});
export const curationPagesTotal = new Counter({
  name: 'gpu_batch_curation_pages_total',
  help: 'Pages of tasks imported into Label Studio',
});

// API
export const httpRequestsTotal = new Counter({
  name: 'gpu_batch_http_requests_total',
  help: 'API requests, by method, route and status code',
  labelNames: ['method', 'route', 'status'] as const,
});
export const httpRequestSeconds = new Histogram({
  name: 'gpu_batch_http_request_duration_seconds',
  help: 'API request handling time, by method and route',
  labelNames: ['method', 'route'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
});

export const scrapeReadErrorsTotal = new Counter({
  name: 'gpu_batch_scrape_read_errors_total',
  help: 'Database or Temporal reads behind a gauge that failed or took too long when scraped; the gauge kept its last values',
  labelNames: ['gauge'] as const,
});

export { register as processRegistry };

// Series a process exports at zero from its start, for the label values it will record: a rate or a
// ratio over a series that does not exist yet is no result at all (an empty dashboard panel, an alert
// that cannot see its first failure), where a zero says "none so far".
const ENGINE_RETRY_REASONS = ['http_4xx', 'http_429', 'http_5xx', 'network'] as const;
const BATCH_FINAL_STATUSES = ['completed', 'failed', 'expired', 'cancelled'] as const;

/** A GPU worker's series for the models its engine serves and its GPU, at zero until they count something. */
export function zeroGpuWorkerSeries(models: readonly string[], gpu: string): void {
  for (const model of models) {
    for (const outcome of ['completed', 'failed']) requestsTotal.inc({ model, outcome }, 0);
    for (const kind of ['prompt', 'cached', 'completion']) tokensTotal.inc({ model, kind }, 0);
    for (const outcome of ['completed', 'failed', 'cancelled']) chunksTotal.inc({ model, outcome }, 0);
    for (const reason of ENGINE_RETRY_REASONS) engineRetriesTotal.inc({ model, reason }, 0);
    inflightRequests.inc({ model }, 0);
  }
  for (const reason of LIMIT_CHANGES) inflightLimitChangesTotal.inc({ gpu, reason }, 0);
}

/** The orchestrator's series, at zero until they count something. */
export function zeroOrchestratorSeries(): void {
  for (const status of BATCH_FINAL_STATUSES) batchesFinishedTotal.inc({ status }, 0);
  for (const outcome of ['delivered', 'failed']) webhookAttemptsTotal.inc({ outcome }, 0);
}

/**
 * 1 while this worker process takes work from Temporal: on every task queue it serves, Temporal lists
 * its pollers (within WORKER_POLL_STALE_MS) or every activity slot is busy with work that moves (a
 * full worker rightly stops polling); 0 while it starts, while Temporal does not list it or does not
 * answer, and while its worker is not running. Registered in a worker process's own registry (0 from
 * its start), never in the API's, which polls nothing.
 */
export function workerPollingGauge(registry: Registry): Gauge {
  return new Gauge({
    name: 'gpu_batch_worker_polling',
    help: 'Whether this worker takes work from Temporal: 1 while Temporal lists its pollers on every task queue it serves (or every slot is busy with work that moves), 0 otherwise (starting, not listed, Temporal away, worker stopped)',
    registers: [registry],
  });
}

/**
 * Runs a gauge's scrape-time read so that it can never fail or hang the whole scrape (prom-client fails
 * every series when one collect throws): on an error or after timeoutMs the gauge keeps its last values
 * and the failure is counted. `read` should set the gauge only once it has everything.
 */
export async function collectSafely(gauge: string, timeoutMs: number, read: () => Promise<void>): Promise<void> {
  try {
    await withTimeout(read(), timeoutMs);
  } catch {
    scrapeReadErrorsTotal.inc({ gauge });
  }
}

/** The outcome label of one engine attempt. */
export function attemptOutcome(
  result: { kind: 'ok' } | { kind: 'http'; status: number } | { kind: 'network' } | { kind: 'too_large' },
): string {
  if (result.kind === 'http') return result.status === 429 ? 'http_429' : `http_${Math.floor(result.status / 100)}xx`;
  return result.kind;
}
