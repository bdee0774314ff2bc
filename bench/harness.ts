// What the benchmarks run on: the real stack as separate processes (like `npm start` or a
// deployment), on a Temporal dev server and a Postgres of their own, with simulators as engines.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import OpenAI, { toFile } from 'openai';
import { loadConfig } from '../lib/config.js';
import { createDb, type Db } from '../lib/db.js';
import { ensureDatabase, startEmbeddedPostgres, type RunningPostgres } from '../lib/embedded-postgres.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { cliOptions, resolveTemporalCli } from '../lib/temporal-cli.js';
import { parseTemporalDevConfig } from '../lib/temporal-dev-config.js';
import { startTemporalDevServer, type DevServer } from '../lib/temporal-dev-server.js';
import type { SimulatorStats } from '../simulator/server.js';
import { spawnEntry, type ChildUnderTest } from '../tests/support/processes.js';

export const log: Logger = createLogger('bench', { level: 'info', format: 'pretty' });

export interface Infra {
  temporal: DevServer;
  postgres: RunningPostgres;
  dir: string;
  stop(): Promise<void>;
}

/** A Temporal server (as temporal-dev.yaml describes it, in memory) and a durable Postgres. */
export async function startInfra(): Promise<Infra> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' });
  const quiet = createLogger('bench-infra', { level: 'warn', format: 'pretty' });
  const dir = await mkdtemp(path.join(tmpdir(), 'gpu-batch-bench-'));
  await chmod(dir, 0o755);
  const cli = await resolveTemporalCli(cliOptions(config, quiet));
  const devConfig = {
    ...parseTemporalDevConfig(await readFile(config.temporal.devConfigPath, 'utf8'), path.dirname(config.temporal.devConfigPath)),
    port: await getPort(),
    httpPort: await getPort(),
    metricsPort: await getPort(),
    headless: true,
    dbFile: undefined,
  };
  const temporal = await startTemporalDevServer(cli.path, devConfig, quiet);
  const postgres = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres'), port: await getPort(), database: 'postgres', log: quiet });
  return {
    temporal,
    postgres,
    dir,
    stop: async () => {
      await temporal.stop();
      await postgres.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface EngineOptions {
  model: string;
  maxNumSeqs: number;
  prefillMs: number;
  tokenLatencyMs: number;
  outputTokens: string;
}

export interface Engine {
  url: string;
  process: ChildUnderTest;
  stats(): Promise<SimulatorStats>;
  resetStats(): Promise<void>;
}

export async function startEngine(o: EngineOptions): Promise<Engine> {
  const port = await getPort();
  const child = spawnEntry('simulator/main.ts', {
    HOST: '127.0.0.1',
    SIM_PORT: String(port),
    SIM_MODELS: o.model,
    SIM_MAX_NUM_SEQS: String(o.maxNumSeqs),
    SIM_PREFILL_MS: String(o.prefillMs),
    SIM_PREFILL_TOKENS_PER_SEC: '0',
    SIM_TOKEN_LATENCY_MS: String(o.tokenLatencyMs),
    SIM_OUTPUT_TOKENS: o.outputTokens,
    SIM_MAX_MODEL_LEN: '32768',
  });
  await child.waitFor('vLLM simulator ready');
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    process: child,
    stats: async () => (await (await fetch(`${url}/control/stats`)).json()) as SimulatorStats,
    resetStats: async () => {
      await fetch(`${url}/control/stats/reset`, { method: 'POST' });
    },
  };
}

export interface Stack {
  apiUrl: string;
  openai: OpenAI;
  db: Db;
  api: ChildUnderTest;
  orchestrator: ChildUnderTest;
  gpuWorkers: ChildUnderTest[];
  stop(): Promise<void>;
}

export interface StackOptions {
  /** GPU worker processes: one per engine listed. */
  engines: Engine[];
  env?: Record<string, string>;
  /** Node arguments for the GPU workers (the benchmark's --profile passes --cpu-prof). */
  gpuNodeArgs?: string[];
}

export async function startStack(infra: Infra, options: StackOptions): Promise<Stack> {
  const name = `b${randomBytes(4).toString('hex')}`;
  await ensureDatabase(infra.postgres.serverUrl, name);
  const apiPort = await getPort();
  const apiKey = `sk-bench-${name}`;
  const env: Record<string, string> = {
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    DATABASE_URL: `${infra.postgres.serverUrl}/${name}`,
    TEMPORAL_ADDRESS: infra.temporal.address,
    FILE_STORE_DIR: path.join(infra.dir, name, 'files'),
    ORCHESTRATOR_TASK_QUEUE: `orchestrator-${name}`,
    INFERENCE_TASK_QUEUE_PREFIX: `inference-${name}:`,
    API_KEYS: apiKey,
    API_PORT: String(apiPort),
    API_RATE_LIMIT_PER_MINUTE: '0',
    ORCHESTRATOR_METRICS_PORT: '0',
    GPU_METRICS_PORT: '0',
    ...options.env,
  };
  const orchestrator = spawnEntry('workers/orchestrator.ts', env);
  const gpuWorkers = options.engines.map((engine, i) => spawnEntry('workers/gpu.ts', { ...env, GPU_INDEX: String(i), VLLM_BASE_URL: engine.url }, options.gpuNodeArgs));
  const api = spawnEntry('api/server.ts', env);
  await Promise.all([orchestrator.waitFor('orchestrator worker ready'), api.waitFor('API ready'), ...gpuWorkers.map((w) => w.waitFor('GPU worker ready'))]);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const db = createDb(env.DATABASE_URL ?? '', { poolSize: 2 });
  return {
    apiUrl,
    openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey, maxRetries: 2 }),
    db,
    api,
    orchestrator,
    gpuWorkers,
    stop: async () => {
      await Promise.all([api.stop(), orchestrator.stop(), ...gpuWorkers.map((w) => w.stop())]);
      await db.destroy();
    },
  };
}

/** One JSONL line per request; prompts are padded to roughly `promptChars` characters. */
export function requestLines(model: string, count: number, options: { promptChars?: number; maxTokens?: number } = {}): string[] {
  const pad = 'x'.repeat(Math.max(0, (options.promptChars ?? 64) - 24));
  const lines: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const body: Record<string, unknown> = { model, messages: [{ role: 'user', content: `Request ${i}. ${pad}` }] };
    if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens;
    lines[i] = JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body });
  }
  return lines;
}

export async function upload(stack: Stack, lines: string[]): Promise<string> {
  const file = await stack.openai.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'bench.jsonl'), purpose: 'batch' });
  return file.id;
}

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** Polls until the batch ends; returns it and when its status was first seen in each state. */
export async function runBatch(stack: Stack, fileId: string, pollMs = 100): Promise<{ batch: OpenAI.Batches.Batch; createdAt: number; seen: Record<string, number> }> {
  const createdAt = Date.now();
  let batch = await stack.openai.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
  const seen: Record<string, number> = { [batch.status]: createdAt };
  while (!TERMINAL.has(batch.status)) {
    await new Promise((r) => setTimeout(r, pollMs));
    batch = await stack.openai.batches.retrieve(batch.id);
    seen[batch.status] ??= Date.now();
  }
  if (batch.status !== 'completed') throw new Error(`benchmark batch ${batch.id} ended ${batch.status}`);
  return { batch, createdAt, seen };
}

/** Resident memory of a process in MB, from /proc. */
export function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Number(match[1]) / 1024;
  } catch {
    return 0;
  }
}

/** Samples the resident memory of processes until stopped; reports each one's peak. */
export function sampleRss(pids: Record<string, number>, everyMs = 50): () => Record<string, number> {
  const peak: Record<string, number> = Object.fromEntries(Object.keys(pids).map((k) => [k, 0]));
  const timer = setInterval(() => {
    for (const [name, pid] of Object.entries(pids)) peak[name] = Math.max(peak[name] ?? 0, rssMb(pid));
  }, everyMs);
  return () => {
    clearInterval(timer);
    return peak;
  };
}
