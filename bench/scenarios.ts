// The benchmark scenarios. Each starts what it needs, runs `runs` times, and reports its figures.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { sql } from 'kysely';
import OpenAI from 'openai';

import { persistResults, resultRow } from '../activities/results.js';
import { NEW_BATCH } from '../api/services/batches.js';
import { addKey } from '../api/services/keys.js';
import { ensureDatabase } from '../dev/embedded-postgres.js';
import { TINY_MODEL_NAME } from '../dev/vllm-local.js';
import { loadConfig } from '../lib/config.js';
import { LocalFileStore } from '../lib/file-store.js';
import { histogramTotals, sampleSum } from '../lib/prometheus-text.js';
import { dbOptions, openDatabase } from '../schema/db.js';
import { H100_LLAMA_8B } from '../simulator/capacity.js';
import { prng } from '../simulator/text.js';
import { setCapacity } from '../tests/support/simulator.js';
import { runDirect } from './direct.js';
import {
  cpuMeter,
  engineSettings,
  idealRate,
  log,
  pinApart,
  pinTo,
  probeEngine,
  processMetric,
  renice,
  requestLines,
  rssMb,
  runBatch,
  sampleRss,
  startCpuVllm,
  startEngine,
  startInfra,
  startStack,
  upload,
  type CpuUse,
  type Engine,
  type EngineOptions,
  type EngineSettings,
  type Infra,
  type InfraOptions,
  type LocalVllm,
  type Stack,
} from './harness.js';
import { quantile, runOnline } from './online.js';
import { summarise, type Metric, type ScenarioResult } from './report.js';

export interface Options {
  runs: number;
  quick: boolean;
  /** --profile: where the stack's Node processes write CPU profiles (a folder each for API, orchestrator, GPU workers). */
  profileDir?: string;
  /** A running engine (vLLM's OpenAI server) to use instead of starting one: overhead and vllm only. */
  engineUrl?: string;
  /** The model that engine serves. */
  model?: string;
  /** Requests in flight, for both the system and the direct client (overhead, vllm). */
  concurrency?: number;
  /** Requests per run (overhead, vllm). */
  requests?: number;
  /** One max_tokens for every request (overhead, vllm). */
  maxTokens?: number;
  /** overhead: only these of its workloads (chat, 2kb, embeddings), for a look at one of them. */
  workloads?: string[];
  /** More environment for the stack's processes, to try a setting (e.g. ENGINE_KEEP_ALIVE_MS=60000). */
  stackEnv?: Record<string, string>;
  /** vllm, diagnosis: vLLM on one CPU, the system and the client on the other. */
  pin?: boolean;
}

async function withInfra<T>(use: (infra: Infra) => Promise<T>, options: InfraOptions = {}): Promise<T> {
  const infra = await startInfra(options);
  try {
    return await use(infra);
  } finally {
    await infra.stop();
  }
}

/**
 * Infra, `engines` simulated engines and a stack whose GPU workers use them (`gpuWorkersEach` per
 * engine), for `use`; everything stopped afterwards, whatever happens.
 */
async function withSimulatedStack(
  o: Options,
  engineOptions: EngineOptions,
  setup: { engines?: number; gpuWorkersEach?: number; env?: Record<string, string> },
  use: (running: { infra: Infra; stack: Stack; engine: Engine; engines: Engine[] }) => Promise<void>,
): Promise<void> {
  await withInfra(async (infra) => {
    const [engine, ...more] = await Promise.all([
      startEngine(engineOptions),
      ...Array.from({ length: (setup.engines ?? 1) - 1 }, () => startEngine(engineOptions)),
    ]);
    const engines = [engine, ...more];
    const stack = await startStack(infra, {
      engines: engines.flatMap((e) => Array.from({ length: setup.gpuWorkersEach ?? 1 }, () => e)),
      env: { ...setup.env, ...o.stackEnv },
      profileDir: o.profileDir,
    });
    try {
      await use({ infra, stack, engine, engines });
    } finally {
      await stack.stop();
      await Promise.all(engines.map((e) => e.process.stop()));
    }
  });
}

/** A simulated engine whose steps take no time, answering `outputTokens` tokens. */
function instantEngine(model: string, maxNumSeqs: number, outputTokens: number): EngineOptions {
  return { model, maxNumSeqs, stepBaseMs: 0, stepTokenMs: 0, outputTokens: String(outputTokens) };
}

function metric(name: string, unit: string, better: Metric['better'], target?: Metric['target']): Metric {
  return target === undefined ? { name, unit, values: [], better } : { name, unit, values: [], better, target };
}

/** Seconds from the first request arriving at any engine to the last one answered. */
const span = (engines: { firstRequestAt: number | null; lastServedAt: number | null }[]): number => {
  const first = Math.min(...engines.map((s) => s.firstRequestAt ?? Infinity));
  const last = Math.max(...engines.map((s) => s.lastServedAt ?? -Infinity));
  return (last - first) / 1000;
};

const int = (x: number): string => x.toLocaleString('en-US');
const fixed = (x: number, digits = 1): string => x.toFixed(digits);

/** What a simulated engine is, in a sentence. */
function describeEngine(s: EngineSettings): string {
  if (s.stepBaseMs === 0 && s.stepTokenMs === 0)
    return `the simulator's vLLM scheduler with steps that take no time (up to ${int(s.maxNumSeqs)} sequences; a request is admitted, prefilled and given all its tokens within a turn or two of the engine's event loop)`;
  const calibrated = s.stepBaseMs === H100_LLAMA_8B.stepBaseMs && s.stepTokenMs === H100_LLAMA_8B.stepTokenMs;
  return `the simulator's vLLM scheduler with ${calibrated ? "the H100 / Llama-3.1-8B calibration's step time, " : 'steps of '}${s.stepBaseMs} ms + ${s.stepTokenMs} ms per token in the step, at most ${int(s.maxNumBatchedTokens)} tokens a step and ${int(s.maxNumSeqs)} sequences, ${int(s.numGpuBlocks)} KV blocks of 16 tokens, prefix caching on${s.schedulingPolicy === 'priority' ? ', `--scheduling-policy priority`' : ''}`;
}

/** The names cpuMeter gives a stack's processes (and its simulated engines', if any). */
function processNames(infra: Infra, stack: Stack, engines: Engine[] = []): Record<number, string> {
  const names: Record<number, string> = { [stack.api.child.pid ?? -1]: 'API' };
  for (const o of stack.orchestrators) names[o.child.pid ?? -1] = 'orchestrator';
  for (const pid of infra.temporal.pids()) names[pid] = 'Temporal';
  for (const w of stack.gpuWorkers) names[w.child.pid ?? -1] = 'GPU workers';
  for (const e of engines) names[e.process.child.pid ?? -1] = 'simulated engines';
  return names;
}

/** Cores each group used on average over a measurement, largest first. */
function coresByGroup(uses: CpuUse[]): string {
  const totals = new Map<string, number>();
  let wall = 0;
  for (const use of uses) {
    wall += use.wallSeconds;
    for (const [group, seconds] of Object.entries(use.seconds)) totals.set(group, (totals.get(group) ?? 0) + seconds);
  }
  const label = (group: string): string =>
    group === 'bench' ? 'the benchmark itself' : group === 'outside' ? 'work outside this benchmark' : group;
  return [...totals.entries()]
    .map(([group, seconds]) => ({ group, cores: seconds / Math.max(wall, 1e-9) }))
    .filter((g) => g.cores >= 0.005)
    .sort((a, b) => b.cores - a.cores)
    .map((g) => `${label(g.group)} ${fixed(g.cores, 2)}`)
    .join(', ');
}

/** Answers of 100 to 300 tokens (mean 200), each line its own: traffic varies, and sequences do not all end in the same step. */
const spreadTokens = (i: number): number => 100 + ((i * 37) % 201);

/** One kind of traffic the overhead scenario sends both ways. */
interface Workload {
  /** Its name for --workload. */
  key: string;
  /** Prefixes its metrics' names. */
  label: string;
  /** What its requests are, for the setup text. */
  describe: string;
  model: string;
  endpoint: '/v1/chat/completions' | '/v1/embeddings';
  lines: string[];
}

/** Chat requests with prompts of 200 characters (about 60 tokens), answers `tokens` long (ignore_eos). */
function chatWorkload(
  key: string,
  label: string,
  model: string,
  requests: number,
  tokens: number | undefined,
): Workload {
  const lengths = tokens === undefined ? 'answers of 100 to 300 tokens (mean 200)' : `answers of ${tokens} tokens`;
  return {
    key,
    label,
    describe: `${int(requests)} chat requests (prompts of 200 characters, about 60 tokens; ${lengths}, fixed by max_tokens with ignore_eos)`,
    model,
    endpoint: '/v1/chat/completions',
    lines: requestLines(model, requests, { promptChars: 200, maxTokens: tokens ?? spreadTokens, ignoreEos: true }),
  };
}

/**
 * What the scenario sends: given --engine-url or --max-tokens, that one chat workload; otherwise
 * mixed chat answers, 2 KB answers, and 4,096-dimension embeddings of 1,000-character passages.
 */
function overheadWorkloads(o: Options): Workload[] {
  const scale = (n: number): number => o.requests ?? (o.quick ? Math.round(n / 5) : n);
  if (o.engineUrl !== undefined || o.maxTokens !== undefined)
    return [chatWorkload('chat', '', o.model ?? 'llama-sim', scale(10_000), o.maxTokens)];
  const embeddings = scale(4000);
  const all: Workload[] = [
    chatWorkload('chat', 'chat, 100–300 tokens: ', 'llama-sim', scale(5000), undefined),
    // 340 tokens of the simulator's words are about 2 KB of answer text (output lines of about 3 KB).
    chatWorkload('2kb', 'chat, 2 KB answers: ', 'llama-sim', scale(2500), 340),
    {
      key: 'embeddings',
      label: 'embeddings, 4,096 dimensions: ',
      describe: `${int(embeddings)} embeddings requests (passages of 1,000 characters, about 250 tokens; 4,096 dimensions: output lines of about 88 KB)`,
      model: 'embed-sim',
      endpoint: '/v1/embeddings',
      lines: embeddingLines('embed-sim', embeddings, 4096, 1000),
    },
  ];
  const unknown = (o.workloads ?? []).filter((k) => !all.some((w) => w.key === k));
  if (unknown.length > 0)
    throw new Error(
      `unknown workload ${unknown.join(', ')}: the overhead scenario has ${all.map((w) => w.key).join(', ')}`,
    );
  return o.workloads === undefined ? all : all.filter((w) => o.workloads?.includes(w.key));
}

/** 1. The whole system against a minimal direct client, on a vLLM-like engine. */
export async function overhead(o: Options): Promise<ScenarioResult> {
  const concurrency = o.concurrency ?? 256;
  const external = o.engineUrl;
  if (external !== undefined && o.model === undefined)
    throw new Error('--engine-url needs --model: the name the engine serves');
  const workloads = overheadWorkloads(o);
  const metrics: Metric[] = [];
  const notes = [
    'The ratio is direct time ÷ system time: 1.0 means the system adds nothing over sending the requests yourself.',
  ];
  let settings: EngineSettings | undefined;
  for (const w of workloads) {
    const ratio = metric(`${w.label}throughput vs direct client`, 'ratio', 'higher', { op: '>=', value: 0.97 });
    const direct = metric(`${w.label}direct client time`, 's', 'lower');
    const system = metric(`${w.label}system time, create to completed`, 's', 'lower');
    const engineBusy = metric(`${w.label}system time at the engine, first to last request`, 's', 'lower');
    const finalizing = metric(`${w.label}system time finalizing (polled every 100 ms)`, 's', 'lower');
    metrics.push(ratio, direct, system, engineBusy, finalizing);
    await withInfra(async (infra) => {
      // An H100 serving an 8B model, as calibrated: every capacity setting is the simulator's default.
      const engine = external === undefined ? await startEngine({ model: w.model }) : undefined;
      settings = engine?.settings;
      const endpoint = engine ?? { url: external ?? '', model: w.model };
      const stack = await startStack(infra, {
        engines: [endpoint],
        env: { GPU_MAX_INFLIGHT: String(concurrency), ...o.stackEnv },
        profileDir: o.profileDir,
      });
      try {
        // A real engine: one direct pass first, not counted, so both sides of every run meet the same
        // prefix cache (each prompt seen once before) and a warm engine.
        if (engine === undefined) await runDirect(endpoint.url, w.lines, concurrency);
        // Prompt tokens the engine found in its prefix cache: both sides should find (about) the same.
        const cacheHits = async (): Promise<number> =>
          sampleSum(await (await fetch(`${endpoint.url}/metrics`)).text(), 'vllm:prefix_cache_hits_total') ?? 0;
        for (let run = 0; run < o.runs; run++) {
          // The simulator: both sides start from an empty prefix cache, as a batch of new prompts would.
          await engine?.resetPrefixCache();
          await engine?.resetStats();
          const hits0 = await cacheHits();
          const d = await runDirect(endpoint.url, w.lines, concurrency);
          if (d.failed > 0) throw new Error(`the direct client saw ${d.failed} failures`);
          direct.values.push(d.seconds);
          const fileId = await upload(stack, w.lines);
          await engine?.resetPrefixCache();
          await engine?.resetStats();
          const hits1 = await cacheHits();
          const probe = engine === undefined ? probeEngine(endpoint.url) : undefined;
          const { createdAt, seen } = await runBatch(stack, fileId, 100, w.endpoint);
          const seconds = (Date.now() - createdAt) / 1000;
          finalizing.values.push(((seen.completed ?? 0) - (seen.finalizing ?? seen.completed ?? 0)) / 1000);
          const hits2 = await cacheHits();
          log.info(
            { workload: w.label, run, cachedPromptTokens: { direct: hits1 - hits0, system: hits2 - hits1 } },
            'prefix cache',
          );
          system.values.push(seconds);
          engineBusy.values.push(
            engine === undefined ? ((await probe?.())?.busySeconds ?? 0) : span([await engine.stats()]),
          );
          ratio.values.push(d.seconds / seconds);
          // A run far off the others (one embeddings run took 140 s against 55) keeps what the processes said.
          if (seconds > 1.5 * d.seconds) {
            const file = path.resolve('.data', `bench-overhead-slow-run-${Date.now()}.log`);
            const parts = [
              ['orchestrator', stack.orchestrator],
              ...stack.gpuWorkers.map((w, i) => [`GPU worker ${i}`, w] as const),
              ...(engine === undefined ? [] : [['engine', engine.process] as const]),
            ] as const;
            await writeFile(file, parts.map(([label, p]) => `===== ${label}\n${p.output()}`).join('\n'));
            log.warn({ workload: w.label, run, seconds, direct: d.seconds, file }, 'a slow run: process output kept');
          }
          log.info(
            {
              workload: w.label,
              run,
              direct: d.seconds,
              system: seconds,
              finalizing: finalizing.values.at(-1),
              ratio: d.seconds / seconds,
            },
            'overhead run',
          );
        }
      } finally {
        await stack.stop();
        await engine?.process.stop();
      }
    });
    if (settings !== undefined && w.endpoint === '/v1/chat/completions') {
      // What the engine could do at most with these requests, never short of work: its scheduler in simulated time.
      const s = { ...settings, maxNumSeqs: Math.min(settings.maxNumSeqs, concurrency) };
      const ideal = w.lines.length / idealRate(s, w.lines);
      notes.push(
        `${w.label === '' ? '' : `${w.label.replace(/: $/, '')}: `}the engine alone, never short of work (its scheduler in simulated time, ${concurrency} at a time), would take ${fixed(ideal)} s: ${fixed((concurrency * ideal) / w.lines.length, 2)} s a request.`,
      );
    }
  }
  let on: string;
  if (settings === undefined) {
    on = `an engine already running at ${external ?? ''} (model \`${o.model ?? ''}\`), after one direct pass over every request that is not counted (so both sides meet the same prefix cache)`;
    notes.push("The engine span is sampled from the engine's vllm:num_requests_running every 250 ms.");
  } else {
    on = `the same simulated engine (one for each workload, started with it): ${describeEngine(settings)}. With ${concurrency} running, a decode step takes about ${fixed(settings.stepBaseMs + settings.stepTokenMs * concurrency)} ms`;
  }
  return {
    name: 'overhead',
    title: 'Overhead ratio',
    setup: `${workloads.map((w) => `${w.label === '' ? '' : `${w.label.replace(/: $/, '')}: `}${w.describe}`).join('; ')}. Each through the whole system (upload excluded: from \`batches.create\` to \`completed\`, finalize included) against a minimal direct client (a keep-alive HTTP pool, same ${concurrency} concurrent requests, answers read and discarded) on ${on}. One GPU worker with ${concurrency} requests in flight, default chunk size (500). Direct client first, then the system, in each run.`,
    metrics,
    notes,
  };
}

/** 2. Requests per second through the whole system against an engine that takes no time. */
export async function ceiling(o: Options): Promise<ScenarioResult> {
  const requests = o.quick ? 5000 : 20_000;
  const gpuWorkers = 2;
  const inFlight = 256;
  // Output lines of about 1 KB: a 16-token chat answer is that, with its usage and the rest of vLLM's object.
  const answerTokens = 16;
  const engineOptions = instantEngine('instant', 1024, answerTokens);
  const rate = metric('requests per second (engine span)', 'req/s', 'higher', { op: '>=', value: 5000 });
  const ofDirect = metric('engine-span rate ÷ bare client rate', 'ratio', 'higher', { op: '>=', value: 0.5 });
  const bare = metric('bare client: requests per second', 'req/s', 'higher');
  const endToEnd = metric('requests per second (create to completed)', 'req/s', 'higher');
  // cpuMeter's groups: the stack's processes by name, Postgres by its command.
  const processes = {
    API: 'API',
    orchestrator: 'orchestrator',
    'GPU workers': 'GPU workers',
    Temporal: 'Temporal',
    Postgres: 'postgres',
    'the simulated engine': 'simulated engines',
  };
  const perProcess = Object.entries(processes).map(([label, group]) => ({
    group,
    metric: metric(`CPU per 1,000 requests: ${label}`, 'core-s', 'lower'),
  }));
  const cpu: CpuUse[] = [];
  let settings = engineSettings(engineOptions);
  await withSimulatedStack(
    o,
    engineOptions,
    { gpuWorkersEach: gpuWorkers, env: { GPU_MAX_INFLIGHT: String(inFlight) } },
    async ({ infra, stack, engine }) => {
      settings = engine.settings;
      const lines = requestLines(engine.model, requests, { maxTokens: answerTokens, ignoreEos: true });
      // One batch first, not counted: the GPU workers' JIT needs a few seconds of this load to warm up.
      await runBatch(stack, await upload(stack, lines));
      for (let run = 0; run < o.runs; run++) {
        // The same requests straight to the same engine, as many at once as the GPU workers keep in flight.
        const direct = await runDirect(engine.url, lines, gpuWorkers * inFlight);
        if (direct.failed > 0) throw new Error(`the bare client saw ${direct.failed} failures`);
        bare.values.push(requests / direct.seconds);
        const fileId = await upload(stack, lines);
        await engine.resetStats();
        const meter = cpuMeter(processNames(infra, stack, [engine]));
        const { createdAt } = await runBatch(stack, fileId);
        const used = meter();
        cpu.push(used);
        const elapsed = (Date.now() - createdAt) / 1000;
        rate.values.push(requests / span([await engine.stats()]));
        ofDirect.values.push((rate.values.at(-1) ?? 0) / (bare.values.at(-1) ?? 1));
        endToEnd.values.push(requests / elapsed);
        for (const p of perProcess) p.metric.values.push(((used.seconds[p.group] ?? 0) * 1000) / requests);
        log.info(
          { run, rate: rate.values.at(-1), bare: bare.values.at(-1), endToEnd: endToEnd.values.at(-1) },
          'ceiling run',
        );
      }
    },
  );
  const systemMs = perProcess
    .filter((p) => p.group !== 'simulated engines')
    .reduce((sum, p) => sum + summarise(p.metric.values).median, 0);
  return {
    name: 'ceiling',
    title: 'Orchestrator ceiling',
    setup: `${int(requests)} requests (answers of ${answerTokens} tokens: output lines of about 1 KB) against an engine that takes no time: ${describeEngine(settings)}. ${gpuWorkers} GPU worker processes with ${inFlight} in flight each, everything — API, orchestrator, GPU workers, engine, Temporal, Postgres — on this machine. One warm-up batch runs first and is not counted. In each run a bare client (a keep-alive HTTP pool, ${gpuWorkers * inFlight} at once) first sends the same requests straight to the same engine.`,
    metrics: [rate, ofDirect, bare, endToEnd, ...perProcess.map((p) => p.metric)],
    notes: [
      'The engine span (first request to last at the engine) is the sustained rate; create-to-completed adds validation, planning and finalize.',
      "The simulated engine still does a scheduler's work on this machine's CPU for every request (admission, a prefix-cache lookup, KV blocks, a step per token), which the GPU would not take from the orchestrator's cores; the bare client meets the same engine.",
      `CPU in cores from create to completed (mean of the runs): ${coresByGroup(cpu)}. CPU per 1,000 requests is each process's CPU time from create to completed (validation and finalize included) per 1,000 requests.`,
      `The system's own processes (all but the engine) used ${fixed(systemMs, 2)} core-ms a request (medians): this machine's two cores, with nothing else on them, would carry at most ${int(Math.round(2000 / Math.max(systemMs, 1e-9)))} requests/s.`,
      "At about 32 requests a second per GPU for an 8B model on an H100 (the simulator's calibration), this is enough to feed dozens of GPUs from one orchestrator.",
    ],
  };
}

/** 3. 1, 2, 4 and 8 GPUs (a GPU worker and an engine each) on one batch, against linear scaling. */
export async function scaleOut(o: Options): Promise<ScenarioResult> {
  const seqs = 32;
  const outputTokens = 64;
  // A small GPU: the H100 calibration's step time, but 32 sequences at most.
  const engineOptions: EngineOptions = { model: 'scaled', maxNumSeqs: seqs };
  const settings = engineSettings(engineOptions);
  const linesFor = (count: number): string[] =>
    requestLines(engineOptions.model, count, { maxTokens: outputTokens, ignoreEos: true });
  // What one engine can do at most: its scheduler in simulated time, never short of work.
  const perGpu = idealRate(settings, linesFor(seqs * 40));
  const seconds = o.quick ? 6 : 15;
  const sizes = o.quick ? [1, 2, 4] : [1, 2, 4, 8];
  const metrics: Metric[] = [];
  const cpuNotes: string[] = [];
  for (const gpus of sizes) {
    const cpu: CpuUse[] = [];
    const efficiency = metric(
      `${gpus} GPU${gpus === 1 ? '' : 's'}: throughput ÷ linear`,
      'ratio',
      'higher',
      gpus === 1 ? undefined : { op: '>=', value: 0.9 },
    );
    const throughput = metric(`${gpus} GPU${gpus === 1 ? '' : 's'}: throughput`, 'req/s', 'higher');
    const requests = Math.round(gpus * perGpu * seconds);
    await withSimulatedStack(
      o,
      engineOptions,
      { engines: gpus, env: { GPU_MAX_INFLIGHT: String(seqs), BATCH_CHUNK_SIZE: String(seqs * 4) } },
      async ({ infra, stack, engines }) => {
        const lines = linesFor(requests);
        for (let run = 0; run < o.runs; run++) {
          const fileId = await upload(stack, lines);
          await Promise.all(engines.map((e) => e.resetStats()));
          const meter = cpuMeter(processNames(infra, stack, engines));
          await runBatch(stack, fileId);
          cpu.push(meter());
          const rate = requests / span(await Promise.all(engines.map((e) => e.stats())));
          throughput.values.push(rate);
          efficiency.values.push(rate / (gpus * perGpu));
          log.info({ gpus, run, rate, ideal: gpus * perGpu }, 'scale-out run');
        }
      },
    );
    metrics.push(efficiency, throughput);
    cpuNotes.push(`${gpus} GPU${gpus === 1 ? '' : 's'}: ${coresByGroup(cpu)}`);
  }
  return {
    name: 'scaleout',
    title: 'Scale-out',
    setup: `N simulated GPUs, each its own engine process (${describeEngine(settings)}; requests of about 24 prompt and ${outputTokens} output tokens: with 32 running, a step takes about ${fixed(settings.stepBaseMs + settings.stepTokenMs * seqs)} ms plus the prompts admitted in it, and the engine manages ${fixed(perGpu)} requests a second at most, its scheduler's figure in simulated time with requests always waiting) with its own GPU worker process (${seqs} in flight); one batch of ${seconds} seconds of ideal work (N × ${int(Math.round(perGpu * seconds))} requests) in chunks of at most ${seqs * 4} (BATCH_CHUNK_SIZE), which shrink to give each GPU worker 16 of them (BATCH_CHUNKS_PER_WORKER) but never below its ${seqs} in flight. Linear is N × ${fixed(perGpu)} requests a second.`,
    metrics,
    notes: [
      "All the processes of all the GPUs share this machine's two cores, which a real fleet would not.",
      `With ${seqs} in flight and ${seqs} sequences, a finished request's slot stays empty until the GPU worker's next request arrives, which the engine admits at its next step: about one step in ${outputTokens + 1} is lost to that even with one GPU.`,
      'With fixed chunks of 128, 8 GPUs reached 0.875 of linear: 60 chunks over 8 workers is 7.5 each, so in the last wave half the GPUs sat idle. Sizing chunks by the number of live workers fixed that.',
      `CPU in cores while the batch ran (mean of the runs): ${cpuNotes.join('; ')}.`,
    ],
  };
}

/**
 * 3b. Batch throughput on a production-shaped Temporal cluster (four services as processes, Postgres
 * persistence): 1, 2 and 4 orchestrator replicas, 2 history shards against 16, and the dev server.
 */
export async function cluster(o: Options): Promise<ScenarioResult> {
  const batches = 4;
  const perBatch = o.quick ? 1000 : 5000;
  const inFlight = 256;
  const answerTokens = 16;
  const engineOptions = instantEngine('instant', 1024, answerTokens);
  const rate = (what: string): Metric => metric(`requests per second: ${what}`, 'req/s', 'higher');
  const plural = (n: number): string => `${n} orchestrator${n === 1 ? '' : 's'}`;
  const configs = [
    { shards: 2, orchestrators: 1 },
    { shards: 2, orchestrators: 2 },
    { shards: 2, orchestrators: 4 },
    { shards: 16, orchestrators: 1 },
    { shards: 16, orchestrators: 4 },
  ].map((c) => ({ ...c, metric: rate(`${c.shards} history shards, ${plural(c.orchestrators)}`) }));
  const dev = rate('the dev server (one process, SQLite), 1 orchestrator');
  const orchestratorCpu = metric('CPU per 1,000 requests: orchestrators, 2 shards, 4 orchestrators', 'core-s', 'lower');
  const temporalCpu = metric('CPU per 1,000 requests: Temporal, 2 shards, 1 orchestrator', 'core-s', 'lower');
  const temporalCpuDev = metric('CPU per 1,000 requests: Temporal, the dev server', 'core-s', 'lower');
  const postgresCpu = metric(
    "CPU per 1,000 requests: Postgres (the stack's and the cluster's), 2 shards, 1 orchestrator",
    'core-s',
    'lower',
  );
  const postgresCpuDev = metric("CPU per 1,000 requests: Postgres (the stack's), the dev server", 'core-s', 'lower');
  let settings = engineSettings(engineOptions);

  // Each configuration on its own stack: `batches` batches at once, each run, after one warm-up batch.
  const measure = async (infra: Infra, orchestrators: number, into: Metric, cpu?: (used: CpuUse) => void) => {
    const engine = await startEngine(engineOptions);
    settings = engine.settings;
    const stack = await startStack(infra, {
      engines: [engine, engine],
      orchestrators,
      env: { GPU_MAX_INFLIGHT: String(inFlight), ...o.stackEnv },
      profileDir: o.profileDir,
    });
    try {
      const lines = requestLines(engine.model, perBatch, { maxTokens: answerTokens, ignoreEos: true });
      await runBatch(stack, await upload(stack, lines));
      for (let run = 0; run < o.runs; run++) {
        const files = await Promise.all(Array.from({ length: batches }, () => upload(stack, lines)));
        const meter = cpuMeter(processNames(infra, stack, [engine]));
        const started = Date.now();
        await Promise.all(files.map((f) => runBatch(stack, f)));
        const seconds = (Date.now() - started) / 1000;
        cpu?.(meter());
        into.values.push((batches * perBatch) / seconds);
        log.info({ metric: into.name, run, rate: into.values.at(-1) }, 'cluster run');
      }
    } finally {
      await stack.stop();
      await engine.process.stop();
    }
  };
  const per1000 = (used: CpuUse, group: string): number => ((used.seconds[group] ?? 0) * 1000) / (batches * perBatch);

  await withInfra((infra) =>
    measure(infra, 1, dev, (used) => {
      temporalCpuDev.values.push(per1000(used, 'Temporal'));
      postgresCpuDev.values.push(per1000(used, 'postgres'));
    }),
  );
  for (const shards of [2, 16]) {
    await withInfra(
      async (infra) => {
        for (const c of configs.filter((x) => x.shards === shards))
          await measure(infra, c.orchestrators, c.metric, (used) => {
            if (shards === 2 && c.orchestrators === 1) {
              temporalCpu.values.push(per1000(used, 'Temporal'));
              postgresCpu.values.push(per1000(used, 'postgres'));
            }
            if (shards === 2 && c.orchestrators === 4) orchestratorCpu.values.push(per1000(used, 'orchestrator'));
          });
      },
      { cluster: { numHistoryShards: shards } },
    );
  }
  // Of the medians: the configurations ran one after another on stacks of their own, so their runs pair up by nothing.
  const ratio = (name: string, top: Metric, bottom: Metric): Metric => {
    const m = metric(`${name}, of the medians`, 'ratio', 'higher');
    m.values = [summarise(top.values).median / summarise(bottom.values).median];
    return m;
  };
  const at = (shards: number, orchestrators: number): Metric => {
    const found = configs.find((c) => c.shards === shards && c.orchestrators === orchestrators);
    if (found === undefined) throw new Error(`no configuration of ${shards} shards and ${orchestrators} orchestrators`);
    return found.metric;
  };
  return {
    name: 'cluster',
    title: 'Temporal cluster: orchestrator replicas and history shards',
    setup: `${batches} batches of ${int(perBatch)} requests at once (answers of ${answerTokens} tokens) against an engine that takes no time (${describeEngine(settings)}), 2 GPU worker processes with ${inFlight} in flight each, the API, and 1, 2 or 4 orchestrator processes; Temporal is a cluster of four service processes (frontend, history, matching, worker) on Postgres, built from go.temporal.io/server ${loadConfig().temporalCluster.serverVersion} (\`npm run temporal:cluster\`), with 2 or 16 history shards and task queues of Temporal's default partitions, or the dev server. Temporal's CPU is its service processes' (or the dev server's, SQLite included); the cluster's Postgres counts with the stack's under Postgres. Everything on this machine's two cores. Requests per second are from the first create to the last batch completed, one warm-up batch first on each stack.`,
    metrics: [
      ...configs.map((c) => c.metric),
      dev,
      ratio('2 orchestrators ÷ 1 (2 shards)', at(2, 2), at(2, 1)),
      ratio('4 orchestrators ÷ 1 (2 shards)', at(2, 4), at(2, 1)),
      ratio('16 shards ÷ 2 (1 orchestrator)', at(16, 1), at(2, 1)),
      ratio('cluster (2 shards) ÷ dev server, 1 orchestrator', at(2, 1), dev),
      temporalCpu,
      temporalCpuDev,
      postgresCpu,
      postgresCpuDev,
      orchestratorCpu,
    ],
    notes: [
      'On one machine every process shares the same two cores, so replicas and shards cannot add capacity here: these figures say what the cluster and the replicas cost, not what they would carry on hosts of their own (docs/scale.md projects that).',
      'A batch is one workflow: its workflow tasks run one at a time on whichever orchestrator takes them, so orchestrator replicas share work across batches, not within one.',
    ],
  };
}

/** 4. Memory while receiving, validating and running a 200 MB, 50,000-line file; validation time. */
export async function memory(o: Options): Promise<ScenarioResult> {
  const requests = 50_000;
  // About 200 MB (decimal) at full size: the issue's figure, and under the 200 MiB upload limit.
  const promptChars = o.quick ? 400 : 3860;
  const engineOptions = instantEngine('big-file', 1024, 8);
  const apiRss = metric('API peak RSS while receiving the upload', 'MB', 'lower', { op: '<=', value: 300 });
  const orchestratorRss = metric('orchestrator peak RSS while validating', 'MB', 'lower', { op: '<=', value: 300 });
  const gpuRss = metric('GPU worker peak RSS while running it', 'MB', 'lower');
  const validation = metric('validation time (create to in_progress)', 's', 'lower', { op: '<=', value: 5 });
  const size = metric('file size', 'MB', 'higher');
  const lines = requestLines(engineOptions.model, requests, { promptChars, maxTokens: 8, ignoreEos: true });
  const bytes = lines.reduce((sum, l) => sum + Buffer.byteLength(l) + 1, 0);
  await withSimulatedStack(o, engineOptions, { env: { GPU_MAX_INFLIGHT: '256' } }, async ({ stack }) => {
    for (let run = 0; run < o.runs; run++) {
      size.values.push(bytes / 1e6);
      const baseline = { api: rssMb(stack.api.child.pid ?? 0) };
      const stopApi = sampleRss({ api: stack.api.child.pid ?? 0 });
      const fileId = await upload(stack, lines);
      apiRss.values.push(stopApi().api ?? 0);
      const stopWorkers = sampleRss({
        orchestrator: stack.orchestrator.child.pid ?? 0,
        gpu: stack.gpuWorkers[0]?.child.pid ?? 0,
      });
      const { seen } = await runBatch(stack, fileId, 25);
      const peaks = stopWorkers();
      orchestratorRss.values.push(peaks.orchestrator ?? 0);
      gpuRss.values.push(peaks.gpu ?? 0);
      validation.values.push(((seen.in_progress ?? 0) - (seen.validating ?? 0)) / 1000);
      log.info(
        {
          run,
          mb: bytes / 1e6,
          apiBefore: baseline.api,
          peaks,
          apiPeak: apiRss.values.at(-1),
          validation: validation.values.at(-1),
        },
        'memory run',
      );
    }
  });
  return {
    name: 'memory',
    title: 'Memory and validation',
    setup: `A ${Math.round(bytes / 1e6)} MB file of ${requests.toLocaleString('en-US')} requests (prompts of ${promptChars} characters), uploaded with the openai SDK, validated by the orchestrator and run on one GPU worker (256 in flight) against an engine that takes no time (${describeEngine(engineSettings(engineOptions))}; 8 tokens an answer). RSS is sampled from /proc every 50 ms.`,
    metrics: [apiRss, orchestratorRss, gpuRss, validation, size],
    notes: [
      'Validation runs in the orchestrator worker (streaming the file); the API only streams the upload to the file store.',
    ],
  };
}

/** Postgres's write-ahead log position, in bytes: everything the database wrote, tables, indexes and all. */
async function walBytes(stack: Stack): Promise<number> {
  const { rows } = await sql<{ bytes: number }>`select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') as bytes`.execute(
    stack.db,
  );
  return rows[0]?.bytes ?? 0;
}

async function databaseBytes(stack: Stack): Promise<number> {
  const { rows } = await sql<{ bytes: number }>`select pg_database_size(current_database()) as bytes`.execute(stack.db);
  return rows[0]?.bytes ?? 0;
}

/** 4,096-dimension embeddings requests: answers of about 80 KB (a float as JSON is about 20 characters). */
/** Embeddings requests of `dimensions`; each input `Text <i>`, padded to about `inputChars` characters. */
function embeddingLines(model: string, count: number, dimensions: number, inputChars = 0): string[] {
  const pad = 'x'.repeat(Math.max(0, inputChars - 12));
  return Array.from({ length: count }, (_, i) =>
    JSON.stringify({
      custom_id: `e${i}`,
      method: 'POST',
      url: '/v1/embeddings',
      body: { model, input: `Text ${i}${pad === '' ? '' : `. ${pad}`}`, dimensions },
    }),
  );
}

/** 7. What Postgres writes per request, for small, 2 KB and embeddings answers: answers go to the file store. */
export async function pgWrites(o: Options): Promise<ScenarioResult> {
  const requests = o.quick ? 1000 : 5000;
  const cases: { label: string; model: string; tokens: number; env?: Record<string, string> }[] = [
    { label: '16-token answers', model: 'instant', tokens: 16 },
    { label: '2 KB answers', model: 'instant', tokens: 340 },
    { label: '4,096-dimension embeddings', model: 'instant-embed', tokens: 0 },
    // A GPU serving ~30 requests a second flushes about 8 every RESULT_FLUSH_MS (250 ms): the fixed cost of a flush shows.
    { label: '2 KB answers, flushes of 8 rows', model: 'instant', tokens: 340, env: { RESULT_FLUSH_ROWS: '8' } },
  ];
  const metrics = cases.flatMap((c) => [
    metric(`${c.label}: Postgres WAL per request`, 'bytes', 'lower', { op: '<=', value: 200 }),
    metric(`${c.label}: database growth per request`, 'bytes', 'lower'),
    metric(`${c.label}: output line`, 'bytes', 'higher'),
  ]);
  for (const [i, c] of cases.entries()) {
    const engineOptions = instantEngine(c.model, 1024, Math.max(c.tokens, 1));
    await withSimulatedStack(o, engineOptions, { env: { GPU_MAX_INFLIGHT: '256', ...c.env } }, async ({ stack }) => {
      const lines =
        c.tokens === 0
          ? embeddingLines(c.model, requests, 4096)
          : requestLines(c.model, requests, { maxTokens: c.tokens, ignoreEos: true });
      const endpoint = c.tokens === 0 ? '/v1/embeddings' : '/v1/chat/completions';
      for (let run = 0; run < o.runs; run++) {
        const fileId = await upload(stack, lines);
        const [wal, size] = [await walBytes(stack), await databaseBytes(stack)];
        const { batch } = await runBatch(stack, fileId, 100, endpoint);
        const walPerRequest = ((await walBytes(stack)) - wal) / requests;
        const growthPerRequest = ((await databaseBytes(stack)) - size) / requests;
        const output = await stack.openai.files.retrieve(batch.output_file_id ?? '');
        metrics[3 * i]?.values.push(walPerRequest);
        metrics[3 * i + 1]?.values.push(growthPerRequest);
        metrics[3 * i + 2]?.values.push(output.bytes / requests);
        log.info({ case: c.label, run, walPerRequest, growthPerRequest }, 'postgres writes');
      }
    });
  }
  return {
    name: 'pgwrites',
    title: 'Postgres writes per request',
    setup: `${int(requests)} requests a run, one GPU worker (256 in flight) on an engine that takes no time: chat answers of 16 and 340 tokens (ignore_eos), and 4,096-dimension embeddings, in flushes of up to 200 rows (the default RESULT_FLUSH_ROWS; with an instant engine every flush is full), and once in flushes of 8. Postgres's WAL position (pg_current_wal_lsn: every byte it wrote, tables, indexes and the batch's own rows) and the database's size (pg_database_size), from batches.create to completed, divided by the requests.`,
    metrics,
    notes: [
      'Answers go to the file store as one segment object per flush of results; Postgres gets one small row per flush and 1,024-line bucket (the lines it counts, the failed ones, a byte range) and the batch counters, so what it writes per request does not grow with the answer.',
      "The WAL figure includes the batch's life around its results: its row's updates, its files' rows, the GPU workers' heartbeats while it runs, and full-page images after a checkpoint.",
    ],
  };
}

/** 8. Finalize of a 50,000-line batch of about 40 KB answers: its time, and the orchestrator's memory. */
export async function finalize(o: Options): Promise<ScenarioResult> {
  const requests = o.quick ? 5000 : 50_000;
  const dimensions = 2048;
  const engineOptions = instantEngine('finalize-embed', 1024, 1);
  const time = metric('finalize time (finalizing to completed)', 's', 'lower');
  const peak = metric('orchestrator peak RSS over the batch (validation and finalize)', 'MB', 'lower');
  const before = metric('orchestrator RSS before the batch', 'MB', 'lower');
  const rate = metric('finalize rate', 'MB/s', 'higher');
  const size = metric('output file', 'MB', 'higher');
  await withSimulatedStack(o, engineOptions, { env: { GPU_MAX_INFLIGHT: '256' } }, async ({ stack }) => {
    const lines = embeddingLines(engineOptions.model, requests, dimensions);
    for (let run = 0; run < o.runs; run++) {
      const fileId = await upload(stack, lines);
      before.values.push(rssMb(stack.orchestrator.child.pid ?? 0));
      const stop = sampleRss({ orchestrator: stack.orchestrator.child.pid ?? 0 });
      const { batch, seen } = await runBatch(stack, fileId, 50, '/v1/embeddings');
      const peaks = stop();
      const seconds = ((seen.completed ?? 0) - (seen.finalizing ?? seen.in_progress ?? 0)) / 1000;
      const mb = (await stack.openai.files.retrieve(batch.output_file_id ?? '')).bytes / 1e6;
      time.values.push(seconds);
      peak.values.push(peaks.orchestrator ?? 0);
      size.values.push(mb);
      rate.values.push(mb / Math.max(seconds, 0.001));
      log.info({ run, seconds, mb, peaks }, 'finalize run');
      // Each run's output is hundreds of MB: the next one should not fill the disk.
      await stack.openai.files.delete(batch.output_file_id ?? '');
    }
  });
  return {
    name: 'finalize',
    title: 'Finalize of large answers',
    setup: `${int(requests)} embeddings requests (${int(dimensions)} dimensions: answers of about 44 KB) on one GPU worker (256 in flight) against an engine that takes no time; the orchestrator writes the output file from the result segments in the local file store. Finalize time is from the batch first seen \`finalizing\` to \`completed\` (status polled every 50 ms); RSS is sampled from /proc every 50 ms over the whole batch.`,
    metrics: [time, rate, peak, before, size],
    notes: [
      "Finalize merges each 1,024-line bucket's segments in input order, holding one read window (RESULT_READ_BYTES) per segment of the bucket, so its memory does not grow with the batch.",
    ],
  };
}

/**
 * 9. How many flushes of results one batch takes a second from many writers at once: what its
 * segments' writes and Postgres's commits allow (writers of a batch queue only per 1,024-line bucket).
 */
export async function flushes(o: Options): Promise<ScenarioResult> {
  const writers = 32;
  const rowsPerFlush = 8;
  const seconds = o.quick ? 5 : 15;
  const rate = metric(
    `flushes per second into one batch (${writers} writers, ${rowsPerFlush} rows each)`,
    'flushes/s',
    'higher',
  );
  const rows = metric('results per second into one batch', 'rows/s', 'higher');
  await withInfra(async (infra) => {
    const name = `f${randomBytes(4).toString('hex')}`;
    await ensureDatabase(infra.postgres.serverUrl, name);
    const db = await openDatabase(`${infra.postgres.serverUrl}/${name}`, {
      ...dbOptions(loadConfig()),
      poolSize: writers,
    });
    const store = new LocalFileStore(path.join(infra.dir, name));
    try {
      const now = Math.floor(Date.now() / 1000);
      await db.insertInto('projects').values({ id: 'proj_bench', name: 'bench', created_at: now }).execute();
      for (let run = 0; run < o.runs; run++) {
        const batchId = `batch_flush${run}`;
        await db
          .insertInto('batches')
          .values({
            ...NEW_BATCH,
            id: batchId,
            project_id: 'proj_bench',
            endpoint: '/v1/chat/completions',
            input_file_id: 'file-none',
            completion_window: '24h',
            created_at: now,
            expires_at: now + 86_400,
            status: 'in_progress',
            model: 'm',
            request_total: 10_000_000,
          })
          .execute();
        const answer = 'x'.repeat(2000);
        let done = 0;
        const deadline = performance.now() + seconds * 1000;
        await Promise.all(
          // Each writer its own range of lines, as each chunk has.
          Array.from({ length: writers }, async (_, writer) => {
            let next = 1 + writer * 1_000_000;
            while (performance.now() < deadline) {
              const first = next;
              next += rowsPerFlush;
              const flush = Array.from({ length: rowsPerFlush }, (_, i) =>
                resultRow(batchId, first + i, `r${first + i}`, {
                  kind: 'ok',
                  status: 200,
                  requestId: null,
                  raw: `{"answer":"${answer}"}`,
                  body: {},
                  attempts: 1,
                  errors: [],
                }),
              );
              await persistResults(db, store, batchId, flush);
              done++;
            }
          }),
        );
        rate.values.push(done / seconds);
        rows.values.push((done * rowsPerFlush) / seconds);
        log.info({ run, flushes: done / seconds }, 'flush ceiling');
      }
    } finally {
      await db.destroy();
    }
  });
  return {
    name: 'flushes',
    title: 'Result flushes into one batch',
    setup: `${writers} writers (as many chunks writing at once, each in its own range of lines) persist flushes of ${rowsPerFlush} results of about 2 KB into one batch for ${seconds} s: each flush writes its segment to the local file store (with fsync) and runs its transaction (take the bucket's advisory lock, read the bucket's rows, insert one) on a durable Postgres on the same disk.`,
    metrics: [rate, rows],
    notes: [
      "Each writer has its own 1,024-line buckets, as each chunk does, so writers do not wait for each other's locks; each flush costs two fsyncs on this machine's one disk (its segment's and Postgres's commit), which bound the figure here. docs/scale.md says what it means for RESULT_FLUSH_MS at scale.",
    ],
  };
}

/** 5. Temporal history events per batch at 1k, 10k and 50k requests. */
export async function history(o: Options): Promise<ScenarioResult> {
  const sizes = o.quick ? [1000, 10_000] : [1000, 10_000, 50_000];
  const engineOptions = instantEngine('history', 1024, 8);
  const metrics = sizes.map((n) =>
    metric(
      `${n.toLocaleString('en-US')} requests`,
      'events',
      'lower',
      n === 50_000 ? { op: '<=', value: 1000 } : undefined,
    ),
  );
  await withSimulatedStack(o, engineOptions, { env: { GPU_MAX_INFLIGHT: '256' } }, async ({ infra, stack }) => {
    const connection = await Connection.connect({ address: infra.temporal.address });
    const client = new Client({ connection });
    try {
      for (const [i, n] of sizes.entries()) {
        // The history of a batch depends on its size, not on chance: one run says it.
        const fileId = await upload(stack, requestLines(engineOptions.model, n, { maxTokens: 8, ignoreEos: true }));
        const { batch } = await runBatch(stack, fileId);
        const handle = client.workflow.getHandle(batch.id);
        await handle.result();
        const events = (await handle.fetchHistory()).events?.length ?? 0;
        metrics[i]?.values.push(events);
        log.info({ requests: n, events }, 'history');
      }
    } finally {
      await connection.close();
    }
  });
  return {
    name: 'history',
    title: 'History size',
    setup: `Temporal events in one BatchWorkflow's history, default chunk size (500 requests), one GPU worker (256 in flight) on an engine that takes no time (${describeEngine(engineSettings(engineOptions))}; 8 tokens an answer): requests and results never enter history, so it grows with chunks, not requests. Measured once per size: it varies by a few events between runs, with how many chunk completions one workflow task picks up together.`,
    metrics,
    notes: ['Temporal warns at 10,240 events and stops a workflow at 51,200.'],
  };
}

/** 6. From POST /v1/batches to the first request at the engine. */
export async function latency(o: Options): Promise<ScenarioResult> {
  const engineOptions = instantEngine('first', 256, 8);
  const small = metric('100-request batch', 'ms', 'lower', { op: '<=', value: 1000 });
  const large = metric('10,000-request batch (validated in full first)', 'ms', 'lower');
  await withSimulatedStack(o, engineOptions, {}, async ({ stack, engine }) => {
    for (const [target, n] of [
      [small, 100],
      [large, 10_000],
    ] as const) {
      const fileId = await upload(stack, requestLines(engineOptions.model, n, { maxTokens: 8, ignoreEos: true }));
      for (let run = 0; run < Math.max(o.runs, 3); run++) {
        await engine.resetStats();
        const { createdAt } = await runBatch(stack, fileId);
        target.values.push(((await engine.stats()).firstRequestAt ?? 0) - createdAt);
      }
    }
  });
  return {
    name: 'latency',
    title: 'Latency to first request',
    setup: `From the \`batches.create\` call to the first request arriving at the engine: workflow start, validation of the whole file, planning, and the first chunk reaching a GPU worker (default settings: 256 in flight, chunks of 500). The engine takes no time (${describeEngine(engineSettings(engineOptions))}), so each run ends soon after; its speed does not enter the figure.`,
    metrics: [small, large],
    notes: [
      "OpenAI's contract has the whole file validated before any request runs, so a larger file waits for its validation.",
    ],
  };
}

/** Polls every 200 ms until `done` says so; a benchmark that waits longer than ten minutes has failed. */
async function pollUntil(what: string, done: () => Promise<boolean>, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts a batch of the file and waits until it has answered `answered` requests (the engine full of it). */
async function batchUnderWay(stack: Stack, fileId: string, answered = 500): Promise<string> {
  const { id } = await stack.openai.batches.create({
    input_file_id: fileId,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
  });
  await pollUntil(`batch ${id} to answer ${answered} requests`, async () => {
    const batch = await stack.openai.batches.retrieve(id);
    if (batch.status !== 'validating' && batch.status !== 'in_progress')
      throw new Error(`batch ${id} ended ${batch.status}`);
    return (batch.request_counts?.completed ?? 0) >= answered;
  });
  return id;
}

/** Cancels a batch and waits until it has ended. */
async function cancelBatch(stack: Stack, id: string): Promise<void> {
  await stack.openai.batches.cancel(id);
  await pollUntil(`batch ${id} to end after its cancel`, async () => {
    const status = (await stack.openai.batches.retrieve(id)).status;
    return status === 'cancelled' || status === 'completed';
  });
}

/**
 * 12. Fairness between projects: a 100-request batch of one project alone, then submitted while a
 * large batch of another project keeps the engine full; with the small-batch lane (the default) and
 * without it (`SMALL_BATCH_MAX_REQUESTS=0`: the chunk waits for a slot behind the large batch's).
 */
export async function fairness(o: Options): Promise<ScenarioResult> {
  const largeCount = o.quick ? 5000 : 50_000;
  const smallCount = 100;
  const lineOptions = { maxTokens: 128, ignoreEos: true };
  const metrics: Metric[] = [];
  let settings: EngineSettings | undefined;
  for (const lane of [true, false]) {
    const label = lane ? '' : 'without the small-batch lane: ';
    const ratio = metric(
      `${label}small batch behind a large one ÷ alone`,
      'ratio',
      'lower',
      lane ? { op: '<=', value: 2 } : undefined,
    );
    const alone = metric(`${label}small batch alone, create to completed`, 's', 'lower');
    const behind = metric(`${label}small batch behind a large one, create to completed`, 's', 'lower');
    metrics.push(ratio, alone, behind);
    await withInfra(async (infra) => {
      const engine = await startEngine({ model: 'fair' });
      settings = engine.settings;
      const stack = await startStack(infra, {
        engines: [engine],
        env: { ...(lane ? {} : { SMALL_BATCH_MAX_REQUESTS: '0' }), ...o.stackEnv },
        profileDir: o.profileDir,
      });
      try {
        const otherKey = `sk-bench-other-${randomBytes(4).toString('hex')}`;
        await addKey({ db: stack.db }, 'other-project', otherKey);
        const other: Stack = {
          ...stack,
          openai: new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: otherKey, maxRetries: 2 }),
        };
        const smallFile = await upload(other, requestLines('fair', smallCount, lineOptions));
        const largeFile = await upload(stack, requestLines('fair', largeCount, lineOptions));
        // Seconds from create to completed (seen by polling every 100 ms).
        const timed = async (): Promise<number> => {
          const before = await engine.stats();
          const { createdAt, seen } = await runBatch(other, smallFile, 50);
          const ended = Date.now();
          const after = await engine.stats();
          // Where the time went (seconds from create to each status first seen), and whether the
          // simulator kept its modelled pace (time lost: its event loop starved of CPU), for the log.
          log.info(
            {
              ...Object.fromEntries(Object.entries(seen).map(([status, at]) => [status, (at - createdAt) / 1000])),
              engineLostSeconds: (after.lostMs - before.lostMs) / 1000,
            },
            'small batch',
          );
          return (ended - createdAt) / 1000;
        };
        for (let run = 0; run < o.runs; run++) {
          const a = await timed();
          // The engine full of the large batch's requests before the small one comes.
          const large = await batchUnderWay(stack, largeFile);
          const b = await timed();
          const largeDone = (await stack.openai.batches.retrieve(large)).request_counts?.completed ?? 0;
          await cancelBatch(stack, large);
          alone.values.push(a);
          behind.values.push(b);
          ratio.values.push(b / a);
          log.info({ lane, run, alone: a, behind: b, ratio: b / a, largeDone }, 'fairness run');
        }
      } finally {
        await stack.stop();
        await engine.process.stop();
      }
    });
  }
  return {
    name: 'fairness',
    title: 'Fairness between projects',
    setup: `A batch of ${smallCount} requests of one project, first alone, then submitted once a ${int(largeCount)}-request batch of another project has ${int(500)} answers (the engine full of it; cancelled once the small one is done); each request ${lineOptions.maxTokens} tokens out. One GPU worker, default settings (256 in flight, chunks of 500), on ${settings === undefined ? 'a simulated engine' : describeEngine(settings)}. Times from \`batches.create\` to \`completed\`, validation and finalize included. Then the same on a stack with \`SMALL_BATCH_MAX_REQUESTS=0\`, where the small batch's chunk queues behind the large one's.`,
    metrics,
    notes: [
      "The small batch's requests share an engine already running 256 of the large batch's: each of its decode steps is longer than on an idle engine, which no order of requests removes.",
    ],
  };
}

/**
 * 13. Overload: the engine loses half of itself mid-batch (half the sequences, as if another tenant
 * took half its KV memory, and steps twice as long, half its compute), then gets it back. Each phase's
 * throughput against what the engine can do in it; with the adaptive in-flight limit (the default) and
 * with the limit fixed at GPU_MAX_INFLIGHT.
 */
export async function overload(o: Options): Promise<ScenarioResult> {
  const phaseSeconds = o.quick ? 30 : 60;
  const lineOptions = { maxTokens: 128, ignoreEos: true };
  const full: { maxNumSeqs: number; stepBaseMs: number; stepTokenMs: number } = {
    maxNumSeqs: 256,
    stepBaseMs: H100_LLAMA_8B.stepBaseMs,
    stepTokenMs: H100_LLAMA_8B.stepTokenMs,
  };
  const halved = { maxNumSeqs: 128, stepBaseMs: full.stepBaseMs * 2, stepTokenMs: full.stepTokenMs * 2 };
  const settings = engineSettings({ model: 'overload', ...full });
  // What the engine manages at most in each phase (its own scheduler in simulated time).
  const sample = requestLines('overload', 3000, lineOptions);
  const capacityFull = idealRate(settings, sample);
  const capacityHalved = idealRate({ ...settings, ...halved }, sample);
  // Enough lines for the three phases at full speed, and the start; the rest is cancelled.
  const count = Math.ceil(capacityFull * phaseSeconds * 3.5) + 1000;
  const metrics: Metric[] = [];
  for (const adaptive of [true, false]) {
    const label = adaptive ? '' : 'fixed limit: ';
    const failed = metric(
      `${label}requests failed`,
      'requests',
      'lower',
      adaptive ? { op: '<=', value: 0 } : undefined,
    );
    const followDown = metric(
      `${label}halved: seconds until throughput is within 10% of the engine's capacity`,
      's',
      'lower',
      adaptive ? { op: '<=', value: 60 } : undefined,
    );
    const followUp = metric(
      `${label}restored: seconds until throughput is within 10% of the engine's capacity`,
      's',
      'lower',
      adaptive ? { op: '<=', value: 60 } : undefined,
    );
    const shareFull = metric(`${label}full: throughput ÷ capacity, second half of the phase`, 'ratio', 'higher');
    const shareHalved = metric(`${label}halved: throughput ÷ capacity, second half of the phase`, 'ratio', 'higher');
    const shareRestored = metric(
      `${label}restored: throughput ÷ capacity, second half of the phase`,
      'ratio',
      'higher',
    );
    const waiting = metric(
      `${label}halved: requests waiting in the engine's queue, second half (mean)`,
      'requests',
      'lower',
    );
    const limit = metric(`${label}halved: in-flight limit at the end of the phase`, 'requests', 'lower');
    metrics.push(failed, followDown, followUp, shareFull, shareHalved, shareRestored, waiting, limit);
    await withInfra(async (infra) => {
      const engine = await startEngine(settings);
      const stack = await startStack(infra, {
        engines: [engine],
        env: { GPU_MAX_INFLIGHT: String(full.maxNumSeqs), GPU_ADAPTIVE_INFLIGHT: String(adaptive), ...o.stackEnv },
        profileDir: o.profileDir,
      });
      const gpu = stack.gpuWorkers[0];
      try {
        const fileId = await upload(stack, requestLines('overload', count, lineOptions));
        for (let run = 0; run < o.runs; run++) {
          await setCapacity(engine, full);
          const batch = await batchUnderWay(stack, fileId);
          // One sample a second of each phase: requests answered, the engine's queue, the worker's limit.
          const phase = async (): Promise<{ served: number; waiting: number; limit: number }[]> => {
            const samples: { served: number; waiting: number; limit: number }[] = [];
            const start = Date.now();
            for (let s = 0; s <= phaseSeconds; s++) {
              const stats = await engine.stats();
              const workerLimit =
                gpu === undefined ? Number.NaN : (await processMetric(gpu, 'gpu_batch_inflight_limit')).total;
              samples.push({ served: stats.served, waiting: stats.waiting, limit: workerLimit });
              await new Promise((r) => setTimeout(r, Math.max(0, start + (s + 1) * 1000 - Date.now())));
            }
            return samples;
          };
          const a = await phase();
          await setCapacity(engine, halved);
          const b = await phase();
          await setCapacity(engine, full);
          const c = await phase();
          const atEnd = await stack.openai.batches.retrieve(batch);
          failed.values.push(atEnd.request_counts?.failed ?? 0);
          await cancelBatch(stack, batch);
          // Requests a second over the 5 s before each sample (from the phase's sixth sample on).
          const rates = (samples: { served: number }[]): number[] =>
            samples.slice(5).map((x, i) => (x.served - (samples[i]?.served ?? x.served)) / 5);
          const follow = (samples: { served: number }[], capacity: number): number => {
            const at = rates(samples).findIndex((r) => r >= 0.9 * capacity);
            return at < 0 ? phaseSeconds : at + 5;
          };
          const secondHalf = <T>(samples: T[]): T[] => samples.slice(Math.floor(samples.length / 2));
          const share = (samples: { served: number }[], capacity: number): number => {
            const half = secondHalf(samples);
            const first = half[0];
            const last = half.at(-1);
            if (first === undefined || last === undefined) return 0;
            return (last.served - first.served) / (half.length - 1) / capacity;
          };
          followDown.values.push(follow(b, capacityHalved));
          followUp.values.push(follow(c, capacityFull));
          shareFull.values.push(share(a, capacityFull));
          shareHalved.values.push(share(b, capacityHalved));
          shareRestored.values.push(share(c, capacityFull));
          waiting.values.push(mean(secondHalf(b).map((x) => x.waiting)));
          limit.values.push(b.at(-1)?.limit ?? Number.NaN);
          log.info(
            {
              adaptive,
              run,
              rates: { full: rates(a), halved: rates(b), restored: rates(c) },
              limits: b.map((x) => x.limit),
            },
            'overload run',
          );
        }
      } finally {
        await stack.stop();
        await engine.process.stop();
      }
    });
  }
  return {
    name: 'overload',
    title: 'Overload: the engine halved mid-batch',
    setup: `One GPU worker (\`GPU_MAX_INFLIGHT=256\`) and ${describeEngine(settings)}, running a batch of ${int(count)} requests of ${lineOptions.maxTokens} tokens out. Once 500 are answered: ${phaseSeconds} s as is (capacity ${fixed(capacityFull)} requests/s), ${phaseSeconds} s halved (\`max_num_seqs\` 128, steps twice as long: ${fixed(capacityHalved)} requests/s), ${phaseSeconds} s restored; then the batch is cancelled. Capacity is what the engine's own scheduler manages in simulated time with every request waiting; throughput is requests answered a second over 5 s, sampled every second. With the adaptive in-flight limit (the default), then with it fixed (\`GPU_ADAPTIVE_INFLIGHT=false\`).`,
    metrics,
    notes: [
      "With the limit fixed, the engine's queue holds what it cannot run (each of those requests waits there, its timeout running); the adaptive limit keeps them at the worker, where they go to whichever project's turn it is, and the engine's queue stays short.",
    ],
  };
}

/**
 * 14. A GPU shared with online users: streamed requests arriving at random at half the engine's
 * capacity for them, first alone, then beside a large batch; the engine runs vLLM's priority
 * scheduling. With the adaptive limit steered by a time-to-first-token target, and with the limit
 * fixed at GPU_MAX_INFLIGHT.
 */
/** The shared GPU's inter-token target: the engine's mean with the online users alone, and this factor. */
const ITL_TARGET_FACTOR = 1.1;
/** The nice of the simulated engine and the online client in the shared-GPU scenario (the stack keeps 0). */
const FAVOURED_NICE = -10;
/** The shared-GPU scenario's CPUs: the simulated engine and the online client on one, the rest on the other. */
const ENGINE_CPU = 1;
const STACK_CPU = 0;

export async function shared(o: Options): Promise<ScenarioResult> {
  const seconds = o.quick ? 30 : 60;
  // Long enough for the batch to validate and its first requests to answer.
  const warmup = 20;
  const model = 'shared';
  const onlineShape = { maxTokens: 64, promptChars: 2000, timeoutMs: 60_000 };
  const settings = engineSettings({ model, schedulingPolicy: 'priority' });
  const capacity = idealRate(
    settings,
    requestLines(model, 2000, {
      maxTokens: onlineShape.maxTokens,
      ignoreEos: true,
      promptChars: onlineShape.promptChars,
    }),
  );
  const rate = capacity / 2;
  const largeCount = o.quick ? 20_000 : 50_000;
  const batchLinesShape = { maxTokens: 128, ignoreEos: true };
  const metrics: Metric[] = [];
  // Set inside the runs' callbacks (an object, so the setup text below does not read a narrowed `false`).
  const cpu = { favoured: false, pinned: false };
  for (const adaptive of [true, false]) {
    const label = adaptive ? '' : 'fixed limit: ';
    const ratio = metric(
      `${label}online p99 time to first token, beside the batch ÷ alone`,
      'ratio',
      'lower',
      adaptive ? { op: '<=', value: 1.1 } : undefined,
    );
    const aloneP99 = metric(`${label}online p99 time to first token, alone`, 'ms', 'lower');
    const sharedP99 = metric(`${label}online p99 time to first token, beside the batch`, 'ms', 'lower');
    const busy = metric(
      `${label}engine busy beside the batch (time in steps)`,
      '%',
      'higher',
      adaptive ? { op: '>=', value: 95 } : undefined,
    );
    const busyAlone = metric(`${label}engine busy with online traffic alone`, '%', 'higher');
    const itlAlone = metric(`${label}engine mean inter-token latency, online alone`, 'ms', 'lower');
    const itlShared = metric(`${label}engine mean inter-token latency, beside the batch`, 'ms', 'lower');
    const batchRate = metric(`${label}batch requests answered a second beside online traffic`, 'requests/s', 'higher');
    // The p99 of one phase's ~1,000 first tokens moves by ±10-25% between phases alone; over every run's
    // samples together it is steadier (one value per scenario run, not a median over runs).
    const pooled = metric(
      `${label}online p99 time to first token over every run's samples together, beside the batch ÷ alone`,
      'ratio',
      'lower',
    );
    metrics.push(ratio, pooled, aloneP99, sharedP99, busy, busyAlone, batchRate, itlAlone, itlShared);
    await withInfra(async (infra) => {
      const engine = await startEngine(settings);
      // The engine stands for a GPU, whose steps do not wait for the host's CPU; here they would
      // wait for the stack's processes on the same two cores, and so would the online client's clock.
      // This process has started the infrastructure: only its own threads (the online client's).
      cpu.favoured =
        renice(engine.process.child.pid ?? -1, FAVOURED_NICE, { tree: true }) &&
        renice(process.pid, FAVOURED_NICE, { tree: false });
      // And a core of their own: the infrastructure (and the stack, below) on CPU 0, the engine and
      // this process on CPU 1, as a GPU host's serving stack does not share the GPU's compute.
      cpu.pinned =
        availableParallelism() >= 2 &&
        pinTo(process.pid, STACK_CPU, { tree: true }) &&
        pinTo(engine.process.child.pid ?? -1, ENGINE_CPU, { tree: true }) &&
        pinTo(process.pid, ENGINE_CPU, { tree: false });
      try {
        // A phase: the online client for warm-up + the measured seconds, and its first tokens' times
        // in the measured part, with the engine's time in steps and mean time between tokens then.
        // Phases with the same seed get the same arrivals (alone and beside the batch in a run). The
        // batch, when there is one, starts with the online traffic, as a batch joins a GPU that
        // already serves users, and is cancelled after.
        const measure = async (
          seed: number,
          batch?: { stack: Stack; fileId: string },
        ): Promise<{
          p99: number;
          p50: number;
          ttftMs: number[];
          itlMs: number;
          busyPct: number;
          batchAnswered: number;
        }> => {
          const itl = async () =>
            histogramTotals(
              await (await fetch(`${engine.url}/metrics`)).text(),
              'vllm:inter_token_latency_seconds',
            ) ?? {
              sum: Number.NaN,
              count: 0,
            };
          const begun = Date.now();
          const online = runOnline(
            engine.url,
            { rate, seconds: warmup + seconds, warmupSeconds: warmup, model, ...onlineShape },
            prng(seed),
          );
          const id =
            batch === undefined
              ? undefined
              : (
                  await batch.stack.openai.batches.create({
                    input_file_id: batch.fileId,
                    endpoint: '/v1/chat/completions',
                    completion_window: '24h',
                  })
                ).id;
          await new Promise((r) => setTimeout(r, Math.max(0, begun + warmup * 1000 - Date.now())));
          if (batch !== undefined && id !== undefined) {
            const running = await batch.stack.openai.batches.retrieve(id);
            if (running.status !== 'in_progress' || (running.request_counts?.completed ?? 0) === 0)
              throw new Error(`batch ${id} is not running after the ${warmup} s warm-up (${running.status})`);
          }
          const answered = async (): Promise<number> =>
            batch === undefined || id === undefined
              ? 0
              : ((await batch.stack.openai.batches.retrieve(id)).request_counts?.completed ?? 0);
          await engine.resetStats();
          const itlBefore = await itl();
          const answeredBefore = await answered();
          const started = Date.now();
          const result = await online;
          const stats = await engine.stats();
          const wallMs = Date.now() - started;
          const itlAfter = await itl();
          const batchAnswered = (await answered()) - answeredBefore;
          if (batch !== undefined && id !== undefined) await cancelBatch(batch.stack, id);
          return {
            p99: quantile(result.ttftMs, 0.99),
            p50: quantile(result.ttftMs, 0.5),
            ttftMs: result.ttftMs,
            itlMs: (1000 * (itlAfter.sum - itlBefore.sum)) / (itlAfter.count - itlBefore.count),
            busyPct: (100 * stats.busyMs) / wallMs,
            batchAnswered,
          };
        };
        const alone = await measure(0);
        // The online users' inter-token target, as an operator would set it: what the engine does for them alone, and a tenth.
        const stack = await startStack(infra, {
          engines: [engine],
          env: {
            GPU_ADAPTIVE_INFLIGHT: String(adaptive),
            GPU_ADAPTIVE_ITL_MS: String(Math.round(alone.itlMs * ITL_TARGET_FACTOR * 10) / 10),
            ...o.stackEnv,
          },
          profileDir: o.profileDir,
        });
        // The stack's processes inherited this one's nice and CPU: back to the usual, on the stack's CPU.
        for (const child of [stack.api, ...stack.orchestrators, ...stack.gpuWorkers]) {
          renice(child.child.pid ?? -1, 0, { tree: true });
          if (cpu.pinned) pinTo(child.child.pid ?? -1, STACK_CPU, { tree: true });
        }
        try {
          const fileId = await upload(stack, requestLines(model, largeCount, batchLinesShape));
          const samples = { alone: [] as number[], beside: [] as number[] };
          for (let run = 0; run < o.runs; run++) {
            const a = run === 0 ? alone : await measure(run);
            const b = await measure(run, { stack, fileId });
            aloneP99.values.push(a.p99);
            sharedP99.values.push(b.p99);
            ratio.values.push(b.p99 / a.p99);
            samples.alone.push(...a.ttftMs);
            samples.beside.push(...b.ttftMs);
            busyAlone.values.push(a.busyPct);
            itlAlone.values.push(a.itlMs);
            itlShared.values.push(b.itlMs);
            busy.values.push(b.busyPct);
            batchRate.values.push(b.batchAnswered / seconds);
            const cuts = stack.gpuWorkers[0]?.output().match(/^.*in-flight limit cut.*$/gm) ?? [];
            const { ttftMs: _a, ...aloneFigures } = a;
            const { ttftMs: _b, ...sharedFigures } = b;
            log.info(
              {
                adaptive,
                run,
                alone: aloneFigures,
                shared: sharedFigures,
                cuts: cuts.length,
                lastCuts: cuts.slice(-8),
              },
              'shared run',
            );
          }
          pooled.values.push(quantile(samples.beside, 0.99) / quantile(samples.alone, 0.99));
        } finally {
          await stack.stop();
        }
      } finally {
        await engine.process.stop();
        // The next infrastructure starts at the usual nice, on every CPU, too.
        renice(process.pid, 0, { tree: false });
        if (cpu.pinned) pinTo(process.pid, `0-${availableParallelism() - 1}`, { tree: false });
      }
    });
  }
  return {
    name: 'shared',
    title: 'A GPU shared with online traffic',
    setup: `Online users send streamed chat requests (prompts of ${int(onlineShape.promptChars)} characters, ${onlineShape.maxTokens} tokens out) at random (Poisson) at ${fixed(rate)} a second, half of the ${fixed(capacity)} the engine manages at most, for ${seconds} s after ${warmup} s of warm-up (not timed): first alone, then beside a ${int(largeCount)}-request batch (${batchLinesShape.maxTokens} tokens out) created as the online phase starts, as a batch joins a GPU that already serves users, and cancelled after it; in each run both phases have the same arrivals (one seeded generator), so their p99s meet the same bursts, with prompts of their own (nothing from the other phase's cache). ${describeEngine(settings)}: online requests have vLLM's priority 0, batch requests \`ENGINE_BATCH_PRIORITY\` (100) + 3. Time to first token is the online client's, to the first streamed event; busy is the engine's time in steps over the wall time. With the adaptive limit and \`GPU_ADAPTIVE_ITL_MS\` at ${ITL_TARGET_FACTOR} times the engine's mean inter-token latency with the online users alone (their inter-token target, as an operator would set it), then with the limit fixed at 256 (\`GPU_ADAPTIVE_INFLIGHT=false\`). ${cpu.favoured ? `The engine and the online client run at nice ${FAVOURED_NICE}, the stack at 0: a GPU's steps do not wait for its host's CPU, and on this two-core machine the stack's processes would otherwise delay the simulated steps and the client's clock.` : 'The engine and the online client could not be given a higher CPU priority (not root): the stack shares the two cores with them at the same nice.'}${cpu.pinned ? ` They also have CPU ${ENGINE_CPU} to themselves: the stack and its infrastructure (Temporal, Postgres, MinIO) are bound to CPU ${STACK_CPU}.` : ''}`,
    metrics,
    notes: [],
  };
}

/** Deterministic words for a system prompt of its own: group `g`'s text differs from its first token. */
function systemPrompt(g: number, chars: number): string {
  const words = ['policy', 'customer', 'invoice', 'refund', 'account', 'shipping', 'contract', 'support', 'review'];
  let text = `You are assistant ${g}. `;
  for (let i = 0; text.length < chars; i++)
    text += `${words[(i * 7 + g * 3) % words.length] ?? ''} ${(i * 31 + g) % 97} `;
  return text.slice(0, chars);
}

/**
 * 15. A prefix-heavy workload: a few long system prompts, each with many user turns, shuffled in the
 * file. The system (prefix-aware planning, the default) against a direct client sending the lines in
 * file order at the same concurrency, on an engine whose KV cache cannot hold every prompt beside
 * the requests running; and the system with `PREFIX_GROUPING=false`.
 */
export async function prefix(o: Options): Promise<ScenarioResult> {
  const prompts = 20;
  const turns = o.quick ? 100 : 250;
  const promptTokens = 1000;
  const maxTokens = 128;
  const concurrency = 256;
  const model = 'prefix';
  // What a 24 GB GPU leaves Llama-3.1-8B for its KV cache at gpu_memory_utilization 0.85 (0.85 × 24 GiB
  // − 15 GiB of weights − about 2 GiB of activations ≈ 3.4 GiB, 128 KiB a token): 1,740 blocks of 16.
  const settings = engineSettings({
    model,
    numGpuBlocks: 1740,
    maxNumSeqs: concurrency,
    maxModelLen: 8192,
    outputTokens: `${maxTokens}`,
  });
  const texts = Array.from({ length: prompts }, (_, g) => systemPrompt(g, promptTokens * 4));
  // A fixed shuffle (a multiplicative step through the lines), the same for both sides.
  const count = prompts * turns;
  const step = 7919;
  const lines = Array.from({ length: count }, (_, k) => {
    const i = (k * step) % count;
    const body = {
      model,
      messages: [
        { role: 'system', content: texts[i % prompts] },
        { role: 'user', content: `Question ${i}: what should happen next with case ${i}?` },
      ],
      max_tokens: maxTokens,
      ignore_eos: true,
    };
    return JSON.stringify({ custom_id: `r${k}`, method: 'POST', url: '/v1/chat/completions', body });
  });
  const ratio = metric('throughput vs direct client in file order', 'ratio', 'higher', { op: '>=', value: 1.3 });
  const system = metric('system time, create to completed', 's', 'lower');
  const direct = metric('direct client time, file order', 's', 'lower');
  const ungrouped = metric('system time with PREFIX_GROUPING=false', 's', 'lower');
  const cachedSystem = metric('prompt tokens from the prefix cache, system', '%', 'higher');
  const cachedDirect = metric('prompt tokens from the prefix cache, direct client', '%', 'higher');
  const cachedUngrouped = metric('prompt tokens from the prefix cache, PREFIX_GROUPING=false', '%', 'higher');
  const promptTotal = async (engine: Engine): Promise<{ prompt: number; cached: number }> => {
    const text = await (await fetch(`${engine.url}/metrics`)).text();
    return {
      prompt: sampleSum(text, 'vllm:prefix_cache_queries_total') ?? 0,
      cached: sampleSum(text, 'vllm:prefix_cache_hits_total') ?? 0,
    };
  };
  await withInfra(async (infra) => {
    const engine = await startEngine(settings);
    // Share of the prompt tokens the engine took from its prefix cache while `run` ran.
    const cachedShare = async (run: () => Promise<void>): Promise<number> => {
      await engine.resetPrefixCache();
      const before = await promptTotal(engine);
      await run();
      const after = await promptTotal(engine);
      return (100 * (after.cached - before.cached)) / Math.max(1, after.prompt - before.prompt);
    };
    try {
      for (const grouping of [true, false]) {
        const stack = await startStack(infra, {
          engines: [engine],
          env: { GPU_MAX_INFLIGHT: String(concurrency), PREFIX_GROUPING: String(grouping), ...o.stackEnv },
          profileDir: o.profileDir,
        });
        try {
          const fileId = await upload(stack, lines);
          for (let run = 0; run < o.runs; run++) {
            if (grouping) {
              let seconds = 0;
              cachedDirect.values.push(
                await cachedShare(async () => {
                  const d = await runDirect(engine.url, lines, concurrency);
                  if (d.failed > 0) throw new Error(`the direct client saw ${d.failed} failures`);
                  seconds = d.seconds;
                }),
              );
              direct.values.push(seconds);
            }
            let seconds = 0;
            const share = await cachedShare(async () => {
              const { createdAt } = await runBatch(stack, fileId);
              seconds = (Date.now() - createdAt) / 1000;
            });
            if (grouping) {
              system.values.push(seconds);
              cachedSystem.values.push(share);
              ratio.values.push((direct.values.at(-1) ?? 0) / seconds);
            } else {
              ungrouped.values.push(seconds);
              cachedUngrouped.values.push(share);
            }
            log.info({ grouping, run, seconds, cachedShare: share }, 'prefix run');
          }
        } finally {
          await stack.stop();
        }
      }
    } finally {
      await engine.process.stop();
    }
  });
  return {
    name: 'prefix',
    title: 'A prefix-heavy workload',
    setup: `${int(count)} chat requests: ${prompts} system prompts of ${int(promptTokens)} tokens, each with ${int(turns)} user turns of about 16 tokens, shuffled in the file; ${maxTokens} tokens out each. ${describeEngine(settings)} (the KV cache a 24 GB GPU leaves Llama-3.1-8B at \`gpu_memory_utilization\` 0.85: the ${prompts} prompts take ${int((prompts * promptTokens) / 16)} of its blocks). The direct client sends the lines in file order, ${concurrency} at a time; the system runs one GPU worker with \`GPU_MAX_INFLIGHT=${concurrency}\`, timed from \`batches.create\` to \`completed\`, validation and finalize included; each side starts from an empty prefix cache. Cached share: vLLM's prefix_cache_hits over prefix_cache_queries (prompt tokens looked up).`,
    metrics: [ratio, system, direct, ungrouped, cachedSystem, cachedDirect, cachedUngrouped],
    notes: [],
  };
}

/** Mean of the values (0 for none). */
const mean = (values: number[]): number =>
  values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;

/**
 * 7. The system against a direct client on real vLLM: its CPU build serving the tiny random-weight
 * model, sharing this machine's two cores with everything else.
 */
export async function vllm(o: Options): Promise<ScenarioResult> {
  const concurrency = o.concurrency ?? 16;
  const requests = o.requests ?? (o.quick ? 64 : 160);
  const maxTokens = o.maxTokens ?? 16;
  const ratio = metric('throughput vs direct client', 'ratio', 'higher');
  const direct = metric('direct client time', 's', 'lower');
  const system = metric('system time, create to completed', 's', 'lower');
  const directBusy = metric('direct client time at the engine, first to last request running', 's', 'lower');
  const systemBusy = metric('system time at the engine, first to last request running', 's', 'lower');
  const validating = metric('system: create to in_progress (validation, planning)', 's', 'lower');
  const finalizing = metric('system: finalizing to completed (output file)', 's', 'lower');
  const stepsDirect = metric('engine steps, direct client', 'steps', 'lower');
  const stepsSystem = metric('engine steps, system', 'steps', 'lower');
  const stepMsDirect = metric('time per engine step while busy, direct client', 'ms', 'lower');
  const stepMsSystem = metric('time per engine step while busy, system', 'ms', 'lower');
  const runningDirect = metric('sequences running at the engine while busy, direct client', 'mean', 'higher');
  const runningSystem = metric('sequences running at the engine while busy, system', 'mean', 'higher');
  const vllmCpuDirect = metric('vLLM CPU per request, direct client', 'core-ms', 'lower');
  const vllmCpuSystem = metric('vLLM CPU per request, system', 'core-ms', 'lower');
  const stackCpu = metric(
    "the system's own processes during its run (API, orchestrator, GPU worker, Temporal, Postgres)",
    'cores',
    'lower',
  );
  const outsideDirect = metric("other work on the machine, direct client's runs", 'cores', 'lower');
  const outsideSystem = metric("other work on the machine, system's runs", 'cores', 'lower');
  const retries = metric('engine requests retried by the GPU worker', 'requests', 'lower');
  const breakdown = new Map<string, number[]>();
  const model = o.model ?? TINY_MODEL_NAME;
  const lines = requestLines(model, requests, { maxTokens, ignoreEos: true });
  let started: LocalVllm | undefined;
  await withInfra(async (infra) => {
    started = o.engineUrl === undefined ? await startCpuVllm({ maxNumSeqs: concurrency }) : undefined;
    const endpoint = started ?? { url: o.engineUrl ?? '', model };
    const stack = await startStack(infra, {
      engines: [endpoint],
      env: { GPU_MAX_INFLIGHT: String(concurrency), ...o.stackEnv },
      profileDir: o.profileDir,
    });
    const gpu = stack.gpuWorkers[0];
    const names = processNames(infra, stack);
    if (o.pin === true) {
      if (started === undefined) throw new Error('--pin needs the vLLM this scenario starts (not --engine-url)');
      pinApart(started.pid);
      log.warn('vLLM pinned to CPU 1, the system and the client to CPU 0 (diagnosis)');
    }
    const perRequestMs = (cpu: CpuUse): number => ((cpu.seconds.vllm ?? 0) * 1000) / requests;
    const stackSeconds = (cpu: CpuUse): number =>
      Object.entries(cpu.seconds).reduce(
        (sum, [group, s]) => (group === 'vllm' || group === 'bench' || group === 'outside' ? sum : sum + s),
        0,
      );
    try {
      // Not counted: vLLM's first requests are slow, and the prefix cache gets every prompt once, so
      // both sides of every run find the same in it; the stack's JIT warms up on a small batch.
      await runDirect(endpoint.url, lines, concurrency);
      await runBatch(stack, await upload(stack, lines.slice(0, Math.min(lines.length, 2 * concurrency))));
      // vLLM's histogram of tokens per engine step counts the steps: the same work in more steps is emptier steps.
      const engineSteps = async (): Promise<number> =>
        sampleSum(await (await fetch(`${endpoint.url}/metrics`)).text(), 'vllm:iteration_tokens_total_count') ?? 0;
      const runDirectSide = async (): Promise<{
        seconds: number;
        cpu: CpuUse;
        running: number;
        busy: number;
        steps: number;
      }> => {
        const steps0 = await engineSteps();
        const probe = probeEngine(endpoint.url, 500);
        const meter = cpuMeter(names, started?.pid);
        const d = await runDirect(endpoint.url, lines, concurrency);
        const cpu = meter();
        const p = await probe();
        if (d.failed > 0) throw new Error(`the direct client saw ${d.failed} failures`);
        return {
          seconds: d.seconds,
          cpu,
          running: p.meanRunning,
          busy: p.busySeconds,
          steps: (await engineSteps()) - steps0,
        };
      };
      const runSystemSide = async (): Promise<{
        seconds: number;
        cpu: CpuUse;
        running: number;
        busy: number;
        retried: number;
        seen: Record<string, number>;
        createdAt: number;
        steps: number;
      }> => {
        const fileId = await upload(stack, lines);
        const steps0 = await engineSteps();
        const retriedBefore =
          gpu === undefined ? undefined : await processMetric(gpu, 'gpu_batch_engine_retries_total');
        const probe = probeEngine(endpoint.url, 500);
        const meter = cpuMeter(names, started?.pid);
        const { createdAt, seen } = await runBatch(stack, fileId);
        const seconds = (Date.now() - createdAt) / 1000;
        const cpu = meter();
        const p = await probe();
        const retriedAfter = gpu === undefined ? undefined : await processMetric(gpu, 'gpu_batch_engine_retries_total');
        const retried = (retriedAfter?.total ?? 0) - (retriedBefore?.total ?? 0);
        if (retried > 0)
          log.warn(
            { before: retriedBefore?.byLabels, after: retriedAfter?.byLabels },
            'the GPU worker retried engine requests',
          );
        return {
          seconds,
          cpu,
          running: p.meanRunning,
          busy: p.busySeconds,
          retried,
          seen,
          createdAt,
          steps: (await engineSteps()) - steps0,
        };
      };
      for (let run = 0; run < o.runs; run++) {
        // Alternating which side goes first, so a machine getting busier or quieter favours neither.
        let d: Awaited<ReturnType<typeof runDirectSide>>;
        let sys: Awaited<ReturnType<typeof runSystemSide>>;
        if (run % 2 === 0) {
          d = await runDirectSide();
          sys = await runSystemSide();
        } else {
          sys = await runSystemSide();
          d = await runDirectSide();
        }
        direct.values.push(d.seconds);
        system.values.push(sys.seconds);
        ratio.values.push(d.seconds / sys.seconds);
        directBusy.values.push(d.busy);
        systemBusy.values.push(sys.busy);
        validating.values.push(((sys.seen.in_progress ?? sys.createdAt) - sys.createdAt) / 1000);
        finalizing.values.push(((sys.seen.completed ?? 0) - (sys.seen.finalizing ?? sys.seen.completed ?? 0)) / 1000);
        stepsDirect.values.push(d.steps);
        stepsSystem.values.push(sys.steps);
        stepMsDirect.values.push((d.busy * 1000) / Math.max(1, d.steps));
        stepMsSystem.values.push((sys.busy * 1000) / Math.max(1, sys.steps));
        runningDirect.values.push(d.running);
        runningSystem.values.push(sys.running);
        vllmCpuDirect.values.push(perRequestMs(d.cpu));
        vllmCpuSystem.values.push(perRequestMs(sys.cpu));
        stackCpu.values.push(stackSeconds(sys.cpu) / sys.cpu.wallSeconds);
        outsideDirect.values.push((d.cpu.seconds.outside ?? 0) / d.cpu.wallSeconds);
        outsideSystem.values.push((sys.cpu.seconds.outside ?? 0) / sys.cpu.wallSeconds);
        retries.values.push(sys.retried);
        for (const [group, s] of Object.entries(sys.cpu.seconds))
          breakdown.set(group, [...(breakdown.get(group) ?? []), s / sys.cpu.wallSeconds]);
        log.info(
          {
            run,
            direct: d.seconds,
            system: sys.seconds,
            ratio: d.seconds / sys.seconds,
            running: { direct: d.running, system: sys.running },
            cpuDirect: d.cpu.seconds,
            cpuSystem: sys.cpu.seconds,
            retried: sys.retried,
          },
          'vllm run',
        );
      }
    } finally {
      await stack.stop();
      await started?.stop();
    }
  });
  const shares = [...breakdown.entries()]
    .filter(([group]) => group !== 'outside')
    .map(([group, values]) => ({ group, cores: mean(values) }))
    .sort((a, b) => b.cores - a.cores)
    .map(({ group, cores }) => `${group === 'bench' ? 'this benchmark (polling)' : group} ${fixed(cores, 2)}`);
  const engine =
    o.engineUrl === undefined
      ? `vLLM ${loadConfig({ ...process.env, LOG_LEVEL: 'warn' }).vllmLocal.version}'s CPU build serving the tiny random-weight Llama (\`npm run vllm\`; 2 layers, hidden size 128), started once for the scenario with \`--max-num-seqs ${concurrency} --max-model-len 2048 --enforce-eager --enable-prompt-tokens-details\`, prefix caching on (its default)`
      : `the vLLM already running at ${o.engineUrl} (model \`${model}\`)`;
  return {
    name: 'vllm',
    title: 'Real vLLM (CPU)',
    setup: `${int(requests)} chat requests (prompts of about 20 tokens, answers of ${maxTokens} tokens: max_tokens with ignore_eos) through the whole system (from \`batches.create\` to \`completed\`) against the minimal direct client, both at ${concurrency} concurrent requests, on real vLLM: ${engine}. One GPU worker with GPU_MAX_INFLIGHT=${concurrency}, default chunk size (500: one chunk). **CPU vLLM shares this machine's two cores with the whole system under test — API, orchestrator, GPU worker, Temporal, Postgres — and with this benchmark's client**, which a GPU does not: on a GPU the engine's speed does not depend on what the system's processes use. Before the runs, one direct pass over every request and one small batch through the system (not counted) warm vLLM, its prefix cache and the stack up; then each run times both sides on the same request bodies, the direct client first in odd runs and the system first in even ones.`,
    metrics: [
      ratio,
      direct,
      system,
      directBusy,
      systemBusy,
      validating,
      finalizing,
      stepsDirect,
      stepsSystem,
      stepMsDirect,
      stepMsSystem,
      runningDirect,
      runningSystem,
      vllmCpuDirect,
      vllmCpuSystem,
      stackCpu,
      outsideDirect,
      outsideSystem,
      retries,
    ],
    notes: [
      'The ratio is direct time ÷ system time. Before this issue it was measured at 0.71 and 0.94 in two runs (same concurrency and request count).',
      "Sequences running are sampled from vLLM's vllm:num_requests_running every 500 ms while it had any. CPU is read from /proc: vLLM's process group (API server, engine core, worker), each process the benchmark started, and the rest of the machine (\"other work\": other people's jobs on this shared machine).",
      `CPU in cores during the system's runs (mean): ${shares.join(', ')}.`,
    ],
  };
}

export const SCENARIOS = {
  overhead,
  ceiling,
  scaleout: scaleOut,
  cluster,
  memory,
  history,
  latency,
  vllm,
  pgwrites: pgWrites,
  finalize,
  flushes,
  fairness,
  overload,
  shared,
  prefix,
} as const;
export type ScenarioName = keyof typeof SCENARIOS;
