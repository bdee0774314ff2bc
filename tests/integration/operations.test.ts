// What an operator's monitoring sees: every process's /metrics scraped after a batch (and while it
// runs), checked against what happened and against the Grafana dashboard's queries; /healthz and
// /readyz, with readiness failing while the database is stopped and coming back after.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/embedded-postgres.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, submitBatch, waitForBatch } from '../support/batches.js';
import { spawnEntry, spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { setFaults, startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/** One sample's value from a Prometheus text exposition, by name and exact labels. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m?.[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe('metrics from every process', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let orchestrator: ChildUnderTest;
  let gpu: ChildUnderTest;
  let importer: ChildUnderTest;
  const ports = { orchestrator: 0, gpu: 0, importer: 0 };
  const model = 'metrics-model';
  const base = (port: number): string => `http://127.0.0.1:${port}`;

  beforeAll(async () => {
    // 20 ms a token, 8 tokens: 160 ms a request, 16 in flight, one chunk at a time (a 300-line batch is
    // small: its chunks run in the small-batch slots, here one), two scheduled: a chunk always waits.
    engine = await startTestSimulator({
      models: [model],
      tokenLatencyMs: 20,
      outputTokens: { min: 8, max: 8 },
      maxModelLen: 2048,
    });
    stack = await startTestStack({ engines: [], noOrchestrator: true, noImportWorker: true });
    ports.orchestrator = await getPort();
    ports.gpu = await getPort();
    ports.importer = await getPort();
    orchestrator = spawnEntry('workers/orchestrator.ts', {
      ...stack.processEnv(),
      ORCHESTRATOR_METRICS_PORT: String(ports.orchestrator),
    });
    importer = spawnEntry('workers/import.ts', { ...stack.processEnv(), IMPORT_METRICS_PORT: String(ports.importer) });
    gpu = await spawnGpuWorker(stack, engine.url, {
      GPU_METRICS_PORT: String(ports.gpu),
      GPU_MAX_INFLIGHT: '16',
      GPU_CONCURRENT_CHUNKS: '1',
      GPU_SMALL_BATCH_CHUNKS: '1',
      GPU_INDEX: '2',
    });
    await Promise.all([
      orchestrator.waitFor('orchestrator worker ready'),
      importer.waitFor('import worker ready'),
      gpu.waitFor('serving /metrics'),
    ]);
  });
  afterAll(async () => {
    await Promise.all([orchestrator.stop(), gpu.stop(), importer.stop()]);
    await stack.stop();
    await engine.close();
  });

  it('counts a batch in the API, the orchestrator and the GPU worker, and shows chunks waiting while it runs', async () => {
    // One line in ten asks for more than the context holds (vLLM's 400: an error line); one attempt in ten gets a 429.
    await setFaults(engine, { errorRates: { '429': 0.1 } });
    const body = (i: number): Record<string, unknown> => ({
      model,
      messages: [{ role: 'user', content: `q${i}` }],
      max_tokens: i % 10 === 0 ? 100_000 : 8,
    });
    const created = await submitBatch(stack, batchLines({ model, count: 300, body }));

    // While it runs: chunks wait for the one GPU worker, and it has requests at its engine.
    let pendingSeen = 0;
    let inflightSeen = 0;
    for (;;) {
      const [orch, worker] = await Promise.all([scrape(base(ports.orchestrator)), scrape(base(ports.gpu))]);
      pendingSeen = Math.max(pendingSeen, sample(orch, 'gpu_batch_pending_chunks', { model }) ?? 0);
      inflightSeen = Math.max(inflightSeen, sample(worker, 'gpu_batch_inflight_requests', { model }) ?? 0);
      if ((await stack.openai.batches.retrieve(created.id)).status === 'completed') break;
      await new Promise((r) => setTimeout(r, 150));
    }
    const batch = await waitForBatch(stack.openai, created.id);
    await setFaults(engine, {});
    expect(batch.request_counts).toEqual({ total: 300, completed: 270, failed: 30 });
    expect(pendingSeen).toBeGreaterThan(0);
    expect(inflightSeen).toBeGreaterThan(0);
    expect(inflightSeen).toBeLessThanOrEqual(16);

    const worker = await scrape(base(ports.gpu));
    expect(sample(worker, 'gpu_batch_requests_total', { model, outcome: 'completed' })).toBe(270);
    expect(sample(worker, 'gpu_batch_requests_total', { model, outcome: 'failed' })).toBe(30);
    expect(sample(worker, 'gpu_batch_tokens_total', { model, kind: 'completion' })).toBe(270 * 8);
    expect(sample(worker, 'gpu_batch_tokens_total', { model, kind: 'prompt' })).toBeGreaterThan(0);
    expect(sample(worker, 'gpu_batch_engine_retries_total', { model, reason: 'http_429' })).toBeGreaterThan(0);
    const attempts = sample(worker, 'gpu_batch_engine_request_duration_seconds_count', { model, outcome: 'ok' }) ?? 0;
    expect(attempts).toBe(270);
    // 160 ms a request: the median attempt sits between the 0.1 s and 0.25 s buckets.
    expect(
      sample(worker, 'gpu_batch_engine_request_duration_seconds_bucket', { model, outcome: 'ok', le: '0.1' }),
    ).toBeLessThan(attempts / 2);
    expect(
      sample(worker, 'gpu_batch_engine_request_duration_seconds_bucket', { model, outcome: 'ok', le: '0.5' }),
    ).toBeGreaterThan(attempts / 2);
    expect(sample(worker, 'gpu_batch_inflight_requests', { model })).toBe(0);
    // The 429s cut the adaptive limit (it may have grown back since), and the worker says why.
    expect(sample(worker, 'gpu_batch_inflight_limit', { gpu: '2' })).toBeLessThanOrEqual(16);
    expect(
      sample(worker, 'gpu_batch_inflight_limit_changes_total', { gpu: '2', reason: 'rate_limited' }),
    ).toBeGreaterThan(0);
    expect(sample(worker, 'gpu_batch_chunks_total', { model, outcome: 'completed' })).toBe(Math.ceil(300 / 25));

    const orch = await scrape(base(ports.orchestrator));
    expect(sample(orch, 'gpu_batch_batches_finished_total', { status: 'completed' })).toBe(1);
    // Temporal's backlog count is approximate and catches up within seconds.
    const drained = Date.now() + 30_000;
    let pending = sample(orch, 'gpu_batch_pending_chunks', { model });
    while (pending !== 0 && Date.now() < drained) {
      await new Promise((r) => setTimeout(r, 500));
      pending = sample(await scrape(base(ports.orchestrator)), 'gpu_batch_pending_chunks', { model });
    }
    expect(pending).toBe(0);

    const api = await scrape(stack.apiUrl);
    expect(sample(api, 'gpu_batch_batches', { status: 'completed' })).toBe(1);
    expect(
      sample(api, 'gpu_batch_http_requests_total', { method: 'GET', route: '/v1/batches/:batch_id', status: '200' }),
    ).toBeGreaterThan(0);
    expect(sample(api, 'gpu_batch_http_requests_total', { method: 'POST', route: '/v1/batches', status: '200' })).toBe(
      1,
    );
    // Import progress: no Label Studio here, so the import (which starts once the batch has ended) is recorded as skipped.
    const imported = Date.now() + 10_000;
    let skipped = sample(api, 'gpu_batch_curation_imports', { status: 'skipped' });
    while (skipped !== 1 && Date.now() < imported) {
      await new Promise((r) => setTimeout(r, 250));
      skipped = sample(await scrape(stack.apiUrl), 'gpu_batch_curation_imports', { status: 'skipped' });
    }
    expect(skipped).toBe(1);
  });

  it('has every metric the Grafana dashboard queries', async () => {
    const dashboard = JSON.parse(await readFile('deploy/grafana/gpu-batch.json', 'utf8')) as {
      panels: { targets?: { expr: string }[] }[];
    };
    const queried = new Set(
      dashboard.panels
        .flatMap((p) => p.targets ?? [])
        .flatMap((t) => [...t.expr.matchAll(/\b(gpu_batch_\w+|process_\w+)/g)].map((m) => m[1] ?? '')),
    );
    expect(queried.size).toBeGreaterThan(15);
    const exposed = (
      await Promise.all([
        scrape(stack.apiUrl),
        scrape(base(ports.orchestrator)),
        scrape(base(ports.gpu)),
        scrape(base(ports.importer)),
      ])
    ).join('\n');
    const declared = new Set(
      [...exposed.matchAll(/^# TYPE (\w+) (\w+)$/gm)].flatMap((m) =>
        m[2] === 'histogram' ? [`${m[1]}_bucket`, `${m[1]}_count`, `${m[1]}_sum`] : [m[1] ?? ''],
      ),
    );
    expect([...queried].filter((name) => !declared.has(name))).toEqual([]);
  });

  it('answers health and readiness on every worker', async () => {
    for (const port of [ports.orchestrator, ports.gpu, ports.importer]) {
      expect((await fetch(`${base(port)}/healthz`)).status).toBe(200);
      const ready = (await (await fetch(`${base(port)}/readyz`)).json()) as {
        status: string;
        checks: Record<string, { ok: boolean }>;
      };
      expect(ready.status).toBe('ready');
    }
    const gpuReady = (await (await fetch(`${base(ports.gpu)}/readyz`)).json()) as {
      checks: Record<string, { ok: boolean }>;
    };
    expect(Object.keys(gpuReady.checks).sort()).toEqual([
      'database',
      'engine',
      'file_store',
      'temporal',
      'temporal_worker',
    ]);
    // Ready means its Temporal worker runs and Temporal lists it among the task queue's pollers.
    expect(gpuReady.checks.temporal_worker?.ok).toBe(true);
  });

  it('logs structured JSON naming the batch, the chunk and the worker', () => {
    const lines = gpu
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'GPU worker ready')).toMatchObject({
      worker: expect.stringMatching(/^gpu-worker-2@/),
      level: 30,
    });
    const orchestratorLines = orchestrator
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(orchestratorLines.find((l) => l.msg === 'batch finalized')).toMatchObject({
      batchId: expect.stringMatching(/^batch_/),
      status: 'completed',
    });
  });
});

describe('readiness', () => {
  let postgres: RunningPostgres;
  let stack: TestStack;
  let gpu: ChildUnderTest;
  let dir: string;
  let pgPort: number;
  let gpuPort: number;

  const ready = async (
    url: string,
  ): Promise<{ code: number; body: { status: string; checks: Record<string, { ok: boolean; error?: string }> } }> => {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) });
    return {
      code: res.status,
      body: (await res.json()) as { status: string; checks: Record<string, { ok: boolean; error?: string }> },
    };
  };
  /** Readiness once it says 200, or as it last answered after 20 s. */
  const readyWithin = async (url: string): ReturnType<typeof ready> => {
    const deadline = Date.now() + 20_000;
    let answer = await ready(url);
    while (answer.code !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      answer = await ready(url);
    }
    return answer;
  };
  const startPostgres = async (): Promise<RunningPostgres> => {
    const log = (await import('../../lib/logger.js')).createLogger('readiness-pg', { level: 'warn', format: 'json' });
    return startEmbeddedPostgres({
      dataDir: path.join(dir, 'pg'),
      port: pgPort,
      database: 'postgres',
      log,
      durable: false,
    });
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'readiness-'));
    const { chmod } = await import('node:fs/promises');
    await chmod(dir, 0o755);
    pgPort = await getPort();
    gpuPort = await getPort();
    postgres = await startPostgres();
    stack = await startTestStack({
      engines: [],
      postgresServerUrl: postgres.serverUrl,
      env: { READY_TIMEOUT_MS: '1000' },
    });
    gpu = await spawnGpuWorker(stack, inject('services').simulatorUrl, {
      GPU_METRICS_PORT: String(gpuPort),
      READY_TIMEOUT_MS: '1000',
    });
    await gpu.waitFor('serving /metrics');
  });
  afterAll(async () => {
    await gpu.kill9();
    await stack.stop();
    await postgres.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails while the database is stopped, stays alive, and recovers when it is back', async () => {
    // Ready only once its worker polls and Temporal lists it, which comes after /metrics is served.
    expect(await readyWithin(stack.apiUrl)).toMatchObject({ code: 200, body: { status: 'ready' } });
    expect((await readyWithin(`http://127.0.0.1:${gpuPort}`)).code).toBe(200);

    await postgres.stop();
    for (const url of [stack.apiUrl, `http://127.0.0.1:${gpuPort}`]) {
      const down = await ready(url);
      expect(down.code).toBe(503);
      expect(down.body.status).toBe('not_ready');
      expect(down.body.checks.database?.ok).toBe(false);
      expect(down.body.checks.database?.error).toBeTruthy();
      expect(down.body.checks.temporal?.ok).toBe(true);
      expect(down.body.checks.file_store?.ok).toBe(true);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    }
    // Metrics still answer, with every series but the ones read from the database, and say what failed.
    await scrape(stack.apiUrl);
    const metrics = await scrape(stack.apiUrl); // a failure is counted by the scrape after the one it happened in
    expect(
      sample(metrics, 'gpu_batch_scrape_read_errors_total', { gauge: 'gpu_batch_batches' }),
    ).toBeGreaterThanOrEqual(1);
    expect(sample(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    postgres = await startPostgres();
    for (const url of [stack.apiUrl, `http://127.0.0.1:${gpuPort}`]) {
      expect((await readyWithin(url)).code, url).toBe(200);
    }
  });
});
