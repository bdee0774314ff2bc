// What the benchmarks run on: the real stack as separate processes (like `npm start` or a
// deployment), on a Temporal dev server and a Postgres of their own, with simulators as engines.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import OpenAI, { toFile } from 'openai';

import { ensureDatabase, startEmbeddedPostgres, type RunningPostgres } from '../dev/embedded-postgres.js';
import { cliOptions, resolveTemporalCli } from '../dev/temporal-cli.js';
import { CLUSTER_SERVICES } from '../dev/temporal-cluster-config.js';
import { parseTemporalDevConfig } from '../dev/temporal-dev-config.js';
import { startTemporalDevServer } from '../dev/temporal-dev-server.js';
import { ensureTinyModel, ensureVllm, startVllm, TINY_MODEL_NAME } from '../dev/vllm-local.js';
import { loadConfig, type Config } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { sampleSum } from '../lib/prometheus-text.js';
import { createDb, dbOptions, type Db } from '../schema/db.js';
import { H100_LLAMA_8B, resolveCapacity } from '../simulator/capacity.js';
import { simulate } from '../simulator/engine.js';
import type { EngineRequestInput } from '../simulator/scheduler.js';
import type { SimulatorStats } from '../simulator/state.js';
import { countTokens } from '../simulator/text.js';
import { startTestCluster } from '../tests/support/cluster.js';
import { spawnEntry, type ChildUnderTest, type SpawnOptions } from '../tests/support/processes.js';

export const log: Logger = createLogger('bench', { level: 'info', format: 'pretty' });

/** Where `npm run build` (which `npm run bench` runs first) writes what the stack runs, as the systemd units do. */
const BUILD = 'dist';

export interface Infra {
  temporal: {
    address: string;
    /** Its processes: the dev server, or a cluster's four services. */
    pids(): number[];
    stop(): Promise<void>;
  };
  postgres: RunningPostgres;
  dir: string;
  stop(): Promise<void>;
}

export interface InfraOptions {
  /** A production-shaped cluster with this many history shards instead of the dev server. */
  cluster?: { numHistoryShards: number };
}

/** A Temporal server (as temporal-dev.yaml describes it, in memory, or a cluster) and a durable Postgres. */
export async function startInfra(options: InfraOptions = {}): Promise<Infra> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' });
  const quiet = createLogger('bench-infra', { level: 'warn', format: 'pretty' });
  const dir = await mkdtemp(path.join(tmpdir(), 'gpu-batch-bench-'));
  await chmod(dir, 0o755);
  const temporal =
    options.cluster === undefined ? await startDevServer(config, quiet) : await startCluster(options.cluster, quiet);
  const postgres = await startEmbeddedPostgres({
    dataDir: path.join(dir, 'postgres'),
    port: await getPort(),
    database: 'postgres',
    log: quiet,
  });
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

async function startCluster(o: { numHistoryShards: number }, quiet: Logger): Promise<Infra['temporal']> {
  const cluster = await startTestCluster(quiet, o);
  return {
    address: cluster.address,
    pids: () => CLUSTER_SERVICES.map((s) => cluster.process(s)?.pid ?? -1),
    stop: () => cluster.stop(),
  };
}

async function startDevServer(config: Config, quiet: Logger): Promise<Infra['temporal']> {
  const cli = await resolveTemporalCli(cliOptions(config, quiet));
  const devConfig = {
    ...parseTemporalDevConfig(
      await readFile(config.temporal.devConfigPath, 'utf8'),
      path.dirname(config.temporal.devConfigPath),
    ),
    port: await getPort(),
    httpPort: await getPort(),
    metricsPort: await getPort(),
    headless: true,
    dbFile: undefined,
  };
  const server = await startTemporalDevServer(cli.path, devConfig, quiet);
  return { address: server.address, pids: () => [server.process.pid ?? -1], stop: () => server.stop() };
}

/**
 * A simulated engine: vLLM's v1 scheduler (simulator/README.md). Whatever is left out is the calibrated
 * H100 / Llama-3.1-8B value (simulator/capacity.ts): 1024 sequences, 8192 tokens a step, 27,648 KV
 * blocks of 16 tokens, a step of 6 ms + 0.05 ms per token in it, prefix caching on.
 */
export interface EngineOptions {
  model: string;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  numGpuBlocks?: number;
  stepBaseMs?: number;
  stepTokenMs?: number;
  /** Natural answer length, N or MIN-MAX (a request with ignore_eos runs to its max_tokens instead). */
  outputTokens?: string;
  maxModelLen?: number;
  /** vLLM's --scheduling-policy: fcfs, or priority (lower `priority` first, the highest preempted first). */
  schedulingPolicy?: 'fcfs' | 'priority';
}

export type EngineSettings = Required<EngineOptions>;

/** The options with the simulator's defaults filled in: what the engine will do, for setup texts and ideal rates. */
export function engineSettings(o: EngineOptions): EngineSettings {
  const d = H100_LLAMA_8B;
  return {
    model: o.model,
    maxNumSeqs: o.maxNumSeqs ?? d.maxNumSeqs,
    maxNumBatchedTokens: o.maxNumBatchedTokens ?? d.maxNumBatchedTokens,
    numGpuBlocks: o.numGpuBlocks ?? d.numGpuBlocks,
    stepBaseMs: o.stepBaseMs ?? d.stepBaseMs,
    stepTokenMs: o.stepTokenMs ?? d.stepTokenMs,
    outputTokens: o.outputTokens ?? '16-256',
    maxModelLen: o.maxModelLen ?? 32_768,
    schedulingPolicy: o.schedulingPolicy ?? d.schedulingPolicy,
  };
}

/** Where requests go: a simulator this benchmark started, or a real vLLM. */
export interface EngineEndpoint {
  url: string;
  model: string;
}

export interface Engine extends EngineEndpoint {
  settings: EngineSettings;
  process: ChildUnderTest;
  stats(): Promise<SimulatorStats>;
  resetStats(): Promise<void>;
  /** Empties the engine's prefix cache (it must be idle): each side of a comparison starts cold. */
  resetPrefixCache(): Promise<void>;
}

export async function startEngine(o: EngineOptions): Promise<Engine> {
  const settings = engineSettings(o);
  const port = await getPort();
  // Every capacity knob is given, so nothing in this shell's SIM_* variables changes what is measured.
  const child = spawnEntry(
    'simulator/main.ts',
    {
      HOST: '127.0.0.1',
      SIM_PORT: String(port),
      SIM_MODELS: settings.model,
      SIM_MAX_NUM_SEQS: String(settings.maxNumSeqs),
      SIM_MAX_NUM_BATCHED_TOKENS: String(settings.maxNumBatchedTokens),
      SIM_NUM_GPU_BLOCKS: String(settings.numGpuBlocks),
      SIM_BLOCK_SIZE: String(H100_LLAMA_8B.blockSize),
      SIM_STEP_BASE_MS: String(settings.stepBaseMs),
      SIM_STEP_TOKEN_MS: String(settings.stepTokenMs),
      SIM_ENABLE_PREFIX_CACHING: 'true',
      // As the deployment guide runs vLLM: cached tokens reach the batch's usage.
      SIM_ENABLE_PROMPT_TOKENS_DETAILS: 'true',
      SIM_OUTPUT_TOKENS: settings.outputTokens,
      SIM_MAX_MODEL_LEN: String(settings.maxModelLen),
      SIM_SCHEDULING_POLICY: settings.schedulingPolicy,
      // POST /reset_prefix_cache, as vLLM's dev mode: each side of a comparison can start from a cold cache.
      SIM_SERVER_DEV_MODE: 'true',
    },
    { build: BUILD },
  );
  await child.waitFor('vLLM simulator ready');
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    model: settings.model,
    settings,
    process: child,
    stats: async () => (await (await fetch(`${url}/control/stats`)).json()) as SimulatorStats,
    resetStats: async () => {
      await fetch(`${url}/control/stats/reset`, { method: 'POST' });
    },
    resetPrefixCache: async () => {
      // An answer the client has read may still be leaving the engine: a few tries before giving up.
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(`${url}/reset_prefix_cache`, { method: 'POST' });
        if (!res.ok) throw new Error(`the engine has no POST /reset_prefix_cache (${res.status}): is it in dev mode?`);
        if (((await res.json()) as { success: boolean }).success) return;
        if (attempt === 5) throw new Error('the engine kept its prefix cache: a request still holds KV blocks');
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  };
}

/**
 * Requests a second the simulated engine manages at most on these requests: the simulator's own
 * scheduler run in simulated time (as its calibration runs it), every request waiting from the start,
 * so the engine is never short of work. Needs bodies with max_tokens and ignore_eos (fixed lengths).
 */
export function idealRate(settings: EngineSettings, lines: string[]): number {
  const { scheduler, timing } = resolveCapacity(settings);
  const inputs: EngineRequestInput[] = lines.map((line, r) => {
    const body = (
      JSON.parse(line) as { body: { messages: { content: string }[]; max_tokens?: number; ignore_eos?: boolean } }
    ).body;
    if (body.max_tokens === undefined || body.ignore_eos !== true)
      throw new Error('idealRate needs requests with max_tokens and ignore_eos');
    // Llama 3's chat template around one message: k + 10 tokens (simulator/requests.ts, chatTokens).
    const tokens = body.messages.reduce((n, m) => n + countTokens(m.content.trim()) + 6, 4);
    // Distinct prompts (each request's text differs in its first block), so nothing comes from the prefix cache.
    return {
      prompt: Array.from({ length: tokens }, (_, t) => `${r}:${t}`),
      maxTokens: body.max_tokens,
      finishReason: 'length',
    };
  });
  return lines.length / (simulate(scheduler, timing, inputs).durationMs / 1000);
}

/** vLLM's CPU build serving the tiny random-weight model (dev/vllm-local.ts), started for a scenario. */
export interface LocalVllm extends EngineEndpoint {
  /** Its process group: the API server, its engine core and worker. */
  pid: number;
  stop(): Promise<void>;
}

export async function startCpuVllm(o: { maxNumSeqs: number; maxModelLen?: number }): Promise<LocalVllm> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'warn' });
  const { version, startTimeoutMs } = config.vllmLocal;
  const python = await ensureVllm(config.paths.toolsDir, version, log, { python: config.vllmLocal.python });
  const modelDir = await ensureTinyModel(config.paths.toolsDir, version, log);
  const port = await getPort();
  log.info({ port, maxNumSeqs: o.maxNumSeqs }, 'starting vLLM on the CPU (one to two minutes)');
  const vllm = await startVllm(
    { python, modelDir, host: '127.0.0.1', port, maxNumSeqs: o.maxNumSeqs, maxModelLen: o.maxModelLen ?? 2048 },
    log,
    { timeoutMs: startTimeoutMs },
  );
  return { url: vllm.url, model: TINY_MODEL_NAME, pid: vllm.process.pid ?? 0, stop: () => vllm.stop() };
}

/**
 * Watches an engine through its Prometheus /metrics (vLLM's and the simulator's alike): when it first
 * and last had a request running, and how many ran on average in between.
 */
export function probeEngine(
  url: string,
  everyMs = 250,
): () => Promise<{ busySeconds: number; meanRunning: number; samples: number }> {
  const samples: { at: number; running: number }[] = [];
  let stopped = false;
  const poll = async (): Promise<void> => {
    while (!stopped) {
      const at = Date.now();
      try {
        const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
        samples.push({ at, running: sampleSum(text, 'vllm:num_requests_running') ?? 0 });
      } catch {
        // a missed sample
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - at))));
    }
  };
  const loop = poll();
  return async () => {
    stopped = true;
    await loop;
    const busy = samples.filter((s) => s.running > 0);
    const first = busy[0];
    const last = busy.at(-1);
    if (first === undefined || last === undefined) return { busySeconds: 0, meanRunning: 0, samples: 0 };
    const within = samples.filter((s) => s.at >= first.at && s.at <= last.at);
    return {
      busySeconds: (last.at - first.at) / 1000,
      meanRunning: within.reduce((n, s) => n + s.running, 0) / within.length,
      samples: within.length,
    };
  };
}

/** A metric of a stack process, from its /metrics (the URL it logs when it starts serving them): the sum, and each label set's value. */
export async function processMetric(
  child: ChildUnderTest,
  name: string,
): Promise<{ total: number; byLabels: Record<string, number> }> {
  const url = /"url":"(http:\/\/[^"]+)"[^\n]*serving \/metrics|serving \/metrics[^\n]*"url":"(http:\/\/[^"]+)"/.exec(
    child.output(),
  );
  const base = url?.[1] ?? url?.[2];
  if (base === undefined) throw new Error('the process did not say where it serves /metrics');
  const text = await (await fetch(`${base}/metrics`)).text();
  const byLabels: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`))
      byLabels[line.slice(name.length, line.lastIndexOf(' '))] = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { total: sampleSum(text, name) ?? 0, byLabels };
}

export interface Stack {
  apiUrl: string;
  openai: OpenAI;
  db: Db;
  api: ChildUnderTest;
  /** The first of `orchestrators`. */
  orchestrator: ChildUnderTest;
  orchestrators: ChildUnderTest[];
  gpuWorkers: ChildUnderTest[];
  stop(): Promise<void>;
}

export interface StackOptions {
  /** GPU worker processes: one per engine listed. */
  engines: EngineEndpoint[];
  env?: Record<string, string>;
  /** The benchmark's --profile: each Node process of the stack writes CPU profiles to its folder here. */
  profileDir?: string;
  /** Orchestrator replicas (default one). */
  orchestrators?: number;
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
    SMALL_BATCH_TASK_QUEUE_PREFIX: `inference-small-${name}:`,
    API_KEYS: apiKey,
    API_PORT: String(apiPort),
    API_RATE_LIMIT_PER_MINUTE: '0',
    ORCHESTRATOR_METRICS_PORT: '0',
    GPU_METRICS_PORT: '0',
    WORKFLOW_BUNDLE_PATH: path.resolve(BUILD, 'workflow-bundle.js'),
    ...options.env,
  };
  const deployed = (role: string): SpawnOptions => ({
    build: BUILD,
    nodeArgs:
      options.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.join(options.profileDir, role)}`],
  });
  const orchestrators = Array.from({ length: options.orchestrators ?? 1 }, () =>
    spawnEntry('workers/orchestrator.ts', env, deployed('orchestrator')),
  );
  const [orchestrator] = orchestrators as [ChildUnderTest];
  const gpuWorkers = options.engines.map((engine, i) =>
    spawnEntry('workers/gpu.ts', { ...env, GPU_INDEX: String(i), VLLM_BASE_URL: engine.url }, deployed('gpu')),
  );
  const api = spawnEntry('api/server.ts', env, deployed('api'));
  await Promise.all([
    ...orchestrators.map((w) => w.waitFor('orchestrator worker ready')),
    api.waitFor('API ready'),
    ...gpuWorkers.map((w) => w.waitFor('GPU worker ready')),
  ]);
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const db = createDb(env.DATABASE_URL ?? '', { ...dbOptions(loadConfig()), poolSize: 2 });
  return {
    apiUrl,
    openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey, maxRetries: 2 }),
    db,
    api,
    orchestrator,
    orchestrators,
    gpuWorkers,
    stop: async () => {
      await Promise.all([api.stop(), ...orchestrators.map((w) => w.stop()), ...gpuWorkers.map((w) => w.stop())]);
      await db.destroy();
    },
  };
}

export interface LineOptions {
  /** Prompt length in characters (about four a token); 64 by default. */
  promptChars?: number;
  /** The request's max_tokens: one for all, or each line's own. */
  maxTokens?: number | ((index: number) => number);
  /** vLLM's ignore_eos: each answer runs to its max_tokens, so lengths are the same on every engine and every run. */
  ignoreEos?: boolean;
}

/** One JSONL line per request; prompts are padded to roughly `promptChars` characters. */
export function requestLines(model: string, count: number, options: LineOptions = {}): string[] {
  const pad = 'x'.repeat(Math.max(0, (options.promptChars ?? 64) - 24));
  const lines: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const body: Record<string, unknown> = { model, messages: [{ role: 'user', content: `Request ${i}. ${pad}` }] };
    const maxTokens = typeof options.maxTokens === 'function' ? options.maxTokens(i) : options.maxTokens;
    if (maxTokens !== undefined) body.max_tokens = maxTokens;
    if (options.ignoreEos === true) body.ignore_eos = true;
    lines[i] = JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body });
  }
  return lines;
}

export async function upload(stack: Stack, lines: string[]): Promise<string> {
  const file = await stack.openai.files.create({
    file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'bench.jsonl'),
    purpose: 'batch',
  });
  return file.id;
}

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** Polls until the batch ends; returns it and when its status was first seen in each state. */
export async function runBatch(
  stack: Stack,
  fileId: string,
  pollMs = 100,
  endpoint: '/v1/chat/completions' | '/v1/embeddings' = '/v1/chat/completions',
): Promise<{ batch: OpenAI.Batches.Batch; createdAt: number; seen: Record<string, number> }> {
  const createdAt = Date.now();
  let batch = await stack.openai.batches.create({ input_file_id: fileId, endpoint, completion_window: '24h' });
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

// --- Where the CPU goes -------------------------------------------------------------------------

/** Seconds of CPU a clock tick is (USER_HZ, 100 on Linux). */
const TICK_S = 0.01;

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  comm: string;
  /** Its own CPU and that of the children it has reaped, in ticks. */
  ticks: number;
}

function readProcs(): Map<number, Proc> {
  const procs = new Map<number, Proc>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const f = stat.slice(close + 2).split(' ');
      // After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
      procs.set(Number(name), {
        pid: Number(name),
        ppid: Number(f[1]),
        pgrp: Number(f[2]),
        comm: stat.slice(stat.indexOf('(') + 1, close),
        ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
      });
    } catch {
      // gone meanwhile
    }
  }
  return procs;
}

/** Busy ticks of the whole machine (all CPUs), from /proc/stat. */
function machineTicks(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
}

export interface CpuUse {
  /** Core-seconds per group over the interval. */
  seconds: Record<string, number>;
  wallSeconds: number;
}

/**
 * Counts CPU by who used it: this process (`bench`: the direct client, the pollers), a vLLM process
 * group (`vllm`), each process this benchmark started (named by `names`, else by its command: postgres,
 * temporal...) with its descendants, and `outside`: everything else on the machine (other people's work).
 */
export function cpuMeter(names: Record<number, string>, vllmGroup?: number): () => CpuUse {
  const self = process.pid;
  const groupOf = (p: Proc, procs: Map<number, Proc>): string => {
    if (vllmGroup !== undefined && p.pgrp === vllmGroup) return 'vllm';
    if (p.pid === self) return 'bench';
    for (let cur: Proc | undefined = p, hops = 0; cur !== undefined && hops < 64; cur = procs.get(cur.ppid), hops++) {
      // tsx's esbuild service works for this process.
      if (cur.ppid === self) return names[cur.pid] ?? (cur.comm === 'esbuild' ? 'bench' : cur.comm);
    }
    return 'outside';
  };
  const tally = (): { groups: Map<string, number>; machine: number } => {
    const procs = readProcs();
    const groups = new Map<string, number>();
    for (const p of procs.values()) {
      const g = groupOf(p, procs);
      if (g !== 'outside') groups.set(g, (groups.get(g) ?? 0) + p.ticks);
    }
    return { groups, machine: machineTicks() };
  };
  const start = tally();
  const started = performance.now();
  return () => {
    const end = tally();
    const seconds: Record<string, number> = {};
    let ours = 0;
    for (const [g, ticks] of end.groups) {
      const used = Math.max(0, ticks - (start.groups.get(g) ?? 0)) * TICK_S;
      seconds[g] = used;
      ours += used;
    }
    seconds.outside = Math.max(0, (end.machine - start.machine) * TICK_S - ours);
    return { seconds, wallSeconds: (performance.now() - started) / 1000 };
  };
}

/**
 * How busy the machine was while a scenario ran: the 1-minute load average (sampled every 5 s; it counts
 * the benchmark's own processes too), and the CPU that processes outside this benchmark used (other
 * people's work on a shared machine). Returns a note for the report; the figures are called noisy when
 * the load was above 4 with more than a quarter of a core going to work outside the benchmark.
 */
export function watchMachine(): () => { note: string; noisy: boolean } {
  const loads: number[] = [];
  const sample = (): void => {
    loads.push(loadavg()[0] ?? 0);
  };
  sample();
  const timer = setInterval(sample, 5000);
  const meter = cpuMeter({});
  return () => {
    clearInterval(timer);
    sample();
    const cpu = meter();
    const sorted = [...loads].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const max = sorted.at(-1) ?? 0;
    const outside = (cpu.seconds.outside ?? 0) / Math.max(1, cpu.wallSeconds);
    const noisy = median > 4 && outside > 0.25;
    const note =
      `Machine while measuring: 1-minute load average ${median.toFixed(1)} (median; at most ${max.toFixed(1)}; the benchmark's own processes count in it); work outside this benchmark used ${outside.toFixed(2)} of the 2 cores on average.` +
      (noisy ? ' **The machine was very busy with other work (load above 4): these figures are noisy.**' : '');
    return { note, noisy };
  };
}

/**
 * Diagnosis only: vLLM's process group (all threads) on one CPU, this process and everything else it
 * started on the other, so the system under test cannot take CPU from the engine (other people's work
 * on the machine still can). Processes started later inherit their parent's CPU.
 */
export function pinApart(vllmGroup: number, engineCpu = 1, restCpu = 0): void {
  const procs = readProcs();
  const self = process.pid;
  const inTree = (p: Proc): boolean => {
    for (let cur: Proc | undefined = p, hops = 0; cur !== undefined && hops < 64; cur = procs.get(cur.ppid), hops++)
      if (cur.pid === self) return true;
    return false;
  };
  for (const p of procs.values()) {
    if (!inTree(p)) continue;
    const cpu = p.pgrp === vllmGroup ? engineCpu : restCpu;
    try {
      execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(p.pid)], { stdio: 'ignore' });
    } catch {
      // gone meanwhile
    }
  }
}

/** A process, and with `tree` everything it started (as /proc has them now). */
function processTree(rootPid: number, options: { tree: boolean }): number[] {
  const procs = readProcs();
  const inTree = (p: Proc): boolean => {
    if (!options.tree) return p.pid === rootPid;
    for (let cur: Proc | undefined = p, hops = 0; cur !== undefined && hops < 64; cur = procs.get(cur.ppid), hops++)
      if (cur.pid === rootPid) return true;
    return false;
  };
  return [...procs.values()].filter(inTree).map((p) => p.pid);
}

/**
 * Sets the nice of a process (every thread), and with `tree` of everything it started. The shared-GPU
 * scenario raises what stands in for a GPU (the simulated engine, whose steps run on this machine's
 * CPU) and the client that times it, so the system under test's CPU use on this small machine does
 * not delay them. A negative nice needs root: returns false when refused.
 */
export function renice(rootPid: number, nice: number, options: { tree: boolean }): boolean {
  for (const pid of processTree(rootPid, options)) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // gone meanwhile
    }
    try {
      execFileSync('renice', ['-n', String(nice), '-p', ...tasks], { stdio: 'ignore' });
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Binds a process (every thread), and with `tree` everything it started, to CPUs (`1`, `0-1`); what
 * it starts later inherits the binding. Returns false when `taskset` is missing or a CPU does not exist.
 */
export function pinTo(rootPid: number, cpus: number | string, options: { tree: boolean }): boolean {
  for (const pid of processTree(rootPid, options)) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', String(cpus), String(pid)], { stdio: 'ignore' });
    } catch {
      if (existsSync(`/proc/${pid}`)) return false; // else gone meanwhile
    }
  }
  return true;
}
