// The benchmark scenarios. Each starts what it needs, runs `runs` times, and reports its figures.
import { Connection, Client } from '@temporalio/client';
import { runDirect } from './direct.js';
import {
  log,
  requestLines,
  rssMb,
  runBatch,
  sampleRss,
  startEngine,
  startInfra,
  startStack,
  upload,
  type Engine,
  type Infra,
} from './harness.js';
import type { Metric, ScenarioResult } from './report.js';

export interface Options {
  runs: number;
  quick: boolean;
  /** Node arguments for GPU workers (--profile adds --cpu-prof). */
  gpuNodeArgs: string[];
}

async function withInfra<T>(use: (infra: Infra) => Promise<T>): Promise<T> {
  const infra = await startInfra();
  try {
    return await use(infra);
  } finally {
    await infra.stop();
  }
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

/** 1. The whole system against a minimal direct client, on a vLLM-like engine. */
export async function overhead(o: Options): Promise<ScenarioResult> {
  const requests = o.quick ? 2000 : 10_000;
  const engineOptions = { model: 'llama-sim', maxNumSeqs: 256, prefillMs: 100, tokenLatencyMs: 20, outputTokens: '200' };
  const ratio = metric('throughput vs direct client', 'ratio', 'higher', { op: '>=', value: 0.97 });
  const direct = metric('direct client time', 's', 'lower');
  const system = metric('system time, create to completed', 's', 'lower');
  const engineBusy = metric('system time at the engine, first to last request', 's', 'lower');
  await withInfra(async (infra) => {
    const engine = await startEngine(engineOptions);
    const stack = await startStack(infra, { engines: [engine], env: { GPU_MAX_INFLIGHT: '256' }, gpuNodeArgs: o.gpuNodeArgs });
    try {
      const lines = requestLines(engineOptions.model, requests, { promptChars: 200 });
      for (let run = 0; run < o.runs; run++) {
        await engine.resetStats();
        const d = await runDirect(engine.url, lines, 256);
        if (d.failed > 0) throw new Error(`the direct client saw ${d.failed} failures`);
        direct.values.push(d.seconds);
        const fileId = await upload(stack, lines);
        await engine.resetStats();
        const { createdAt } = await runBatch(stack, fileId);
        const seconds = (Date.now() - createdAt) / 1000;
        system.values.push(seconds);
        engineBusy.values.push(span([await engine.stats()]));
        ratio.values.push(d.seconds / seconds);
        log.info({ run, direct: d.seconds, system: seconds }, 'overhead run');
      }
    } finally {
      await stack.stop();
      await engine.process.stop();
    }
  });
  return {
    name: 'overhead',
    title: 'Overhead ratio',
    setup: `${requests.toLocaleString('en-US')} chat requests through the whole system (upload excluded: from \`batches.create\` to \`completed\`, finalize included) against a minimal direct client (a keep-alive HTTP pool, same ${engineOptions.maxNumSeqs} concurrent requests) on the same engine: ${engineOptions.maxNumSeqs} concurrent sequences, ${engineOptions.prefillMs} ms prefill, ${engineOptions.tokenLatencyMs} ms per output token, ${engineOptions.outputTokens} output tokens (4.1 s a request). One GPU worker with 256 requests in flight, default chunk size (500).`,
    metrics: [ratio, direct, system, engineBusy],
    notes: ['The ratio is direct time ÷ system time: 1.0 means the system adds nothing over sending the requests yourself.'],
  };
}

/** 2. Requests per second through the whole system against an engine that takes no time. */
export async function ceiling(o: Options): Promise<ScenarioResult> {
  const requests = o.quick ? 5000 : 20_000;
  const gpuWorkers = 2;
  const engineOptions = { model: 'instant', maxNumSeqs: 1024, prefillMs: 0, tokenLatencyMs: 0, outputTokens: '16' };
  const rate = metric('requests per second (engine span)', 'req/s', 'higher', { op: '>=', value: 2000 });
  const endToEnd = metric('requests per second (create to completed)', 'req/s', 'higher');
  await withInfra(async (infra) => {
    const engine = await startEngine(engineOptions);
    const stack = await startStack(infra, { engines: Array.from({ length: gpuWorkers }, () => engine), env: { GPU_MAX_INFLIGHT: '256' }, gpuNodeArgs: o.gpuNodeArgs });
    try {
      const lines = requestLines(engineOptions.model, requests, { maxTokens: 16 });
      // One batch first, not counted: the GPU workers' JIT needs a few seconds of this load to warm up.
      await runBatch(stack, await upload(stack, lines));
      for (let run = 0; run < o.runs; run++) {
        const fileId = await upload(stack, lines);
        await engine.resetStats();
        const { createdAt } = await runBatch(stack, fileId);
        const elapsed = (Date.now() - createdAt) / 1000;
        rate.values.push(requests / span([await engine.stats()]));
        endToEnd.values.push(requests / elapsed);
        log.info({ run, rate: rate.values.at(-1), endToEnd: endToEnd.values.at(-1) }, 'ceiling run');
      }
    } finally {
      await stack.stop();
      await engine.process.stop();
    }
  });
  return {
    name: 'ceiling',
    title: 'Orchestrator ceiling',
    setup: `${requests.toLocaleString('en-US')} requests against a zero-latency engine (answers at once, 16 tokens), ${gpuWorkers} GPU worker processes with 256 in flight each, everything — API, orchestrator, GPU workers, engine, Temporal, Postgres — on this machine. One warm-up batch runs first and is not counted.`,
    metrics: [rate, endToEnd],
    notes: [
      'The engine span (first request to last at the engine) is the sustained rate; create-to-completed adds validation, planning and finalize.',
      'At about 30 requests a second per GPU for an 8B model on an H100, this is enough to feed dozens of GPUs from one orchestrator.',
    ],
  };
}

/** 3. 1, 2, 4 and 8 GPUs (a GPU worker and an engine each) on one batch, against linear scaling. */
export async function scaleOut(o: Options): Promise<ScenarioResult> {
  const seqs = 32;
  const engineOptions = { model: 'scaled', maxNumSeqs: seqs, prefillMs: 0, tokenLatencyMs: 10, outputTokens: '50' };
  const perGpu = seqs / 0.5; // requests a second one engine can do: 32 sequences of 0.5 s
  const sizes = o.quick ? [1, 2, 4] : [1, 2, 4, 8];
  const metrics: Metric[] = [];
  for (const gpus of sizes) {
    const efficiency = metric(`${gpus} GPU${gpus === 1 ? '' : 's'}: throughput ÷ linear`, 'ratio', 'higher', gpus === 1 ? undefined : { op: '>=', value: 0.9 });
    const throughput = metric(`${gpus} GPU${gpus === 1 ? '' : 's'}: throughput`, 'req/s', 'higher');
    const requests = gpus * perGpu * (o.quick ? 6 : 15);
    await withInfra(async (infra) => {
      const engines: Engine[] = await Promise.all(Array.from({ length: gpus }, () => startEngine(engineOptions)));
      const stack = await startStack(infra, { engines, env: { GPU_MAX_INFLIGHT: String(seqs), BATCH_CHUNK_SIZE: String(seqs * 4) }, gpuNodeArgs: o.gpuNodeArgs });
      try {
        const lines = requestLines(engineOptions.model, requests, { maxTokens: 50 });
        for (let run = 0; run < o.runs; run++) {
          const fileId = await upload(stack, lines);
          await Promise.all(engines.map((e) => e.resetStats()));
          await runBatch(stack, fileId);
          const rate = requests / span(await Promise.all(engines.map((e) => e.stats())));
          throughput.values.push(rate);
          efficiency.values.push(rate / (gpus * perGpu));
          log.info({ gpus, run, rate, ideal: gpus * perGpu }, 'scale-out run');
        }
      } finally {
        await stack.stop();
        await Promise.all(engines.map((e) => e.process.stop()));
      }
    });
    metrics.push(efficiency, throughput);
  }
  return {
    name: 'scaleout',
    title: 'Scale-out',
    setup: `N simulated GPUs, each its own engine process (${seqs} concurrent sequences, 50 tokens at ${engineOptions.tokenLatencyMs} ms: ${perGpu} requests a second at most) with its own GPU worker process (${seqs} in flight); one batch of ${o.quick ? 6 : 15} seconds of ideal work (N × ${perGpu * (o.quick ? 6 : 15)} requests) in chunks of at most ${seqs * 4} (BATCH_CHUNK_SIZE), which shrink to give each GPU worker 16 of them (BATCH_CHUNKS_PER_WORKER) but never below its ${seqs} in flight. Linear is N × ${perGpu} requests a second.`,
    metrics,
    notes: [
      'All the processes of all the GPUs share this machine\'s two cores, which a real fleet would not.',
      'With fixed chunks of 128, 8 GPUs reached 0.875 of linear: 60 chunks over 8 workers is 7.5 each, so in the last wave half the GPUs sat idle. Sizing chunks by the number of live workers fixed that.',
    ],
  };
}

/** 4. Memory while receiving, validating and running a 200 MB, 50,000-line file; validation time. */
export async function memory(o: Options): Promise<ScenarioResult> {
  const requests = 50_000;
  // About 200 MB (decimal) at full size: the figure, and under the 200 MiB upload limit.
  const promptChars = o.quick ? 400 : 3860;
  const engineOptions = { model: 'big-file', maxNumSeqs: 1024, prefillMs: 0, tokenLatencyMs: 0, outputTokens: '8' };
  const apiRss = metric('API peak RSS while receiving the upload', 'MB', 'lower', { op: '<=', value: 300 });
  const orchestratorRss = metric('orchestrator peak RSS while validating', 'MB', 'lower', { op: '<=', value: 300 });
  const gpuRss = metric('GPU worker peak RSS while running it', 'MB', 'lower');
  const validation = metric('validation time (create to in_progress)', 's', 'lower', { op: '<=', value: 5 });
  const size = metric('file size', 'MB', 'higher');
  const lines = requestLines(engineOptions.model, requests, { promptChars, maxTokens: 8 });
  const bytes = lines.reduce((sum, l) => sum + Buffer.byteLength(l) + 1, 0);
  await withInfra(async (infra) => {
    const engine = await startEngine(engineOptions);
    const stack = await startStack(infra, { engines: [engine], env: { GPU_MAX_INFLIGHT: '256' }, gpuNodeArgs: o.gpuNodeArgs });
    try {
      for (let run = 0; run < o.runs; run++) {
        size.values.push(bytes / 1e6);
        const baseline = { api: rssMb(stack.api.child.pid ?? 0) };
        const stopApi = sampleRss({ api: stack.api.child.pid ?? 0 });
        const fileId = await upload(stack, lines);
        apiRss.values.push(stopApi().api ?? 0);
        const stopWorkers = sampleRss({ orchestrator: stack.orchestrator.child.pid ?? 0, gpu: stack.gpuWorkers[0]?.child.pid ?? 0 });
        const { seen } = await runBatch(stack, fileId, 25);
        const peaks = stopWorkers();
        orchestratorRss.values.push(peaks.orchestrator ?? 0);
        gpuRss.values.push(peaks.gpu ?? 0);
        validation.values.push(((seen.in_progress ?? 0) - (seen.validating ?? 0)) / 1000);
        log.info({ run, mb: bytes / 1e6, apiBefore: baseline.api, peaks, apiPeak: apiRss.values.at(-1), validation: validation.values.at(-1) }, 'memory run');
      }
    } finally {
      await stack.stop();
      await engine.process.stop();
    }
  });
  return {
    name: 'memory',
    title: 'Memory and validation',
    setup: `A ${Math.round(bytes / 1e6)} MB file of ${requests.toLocaleString('en-US')} requests (prompts of ${promptChars} characters), uploaded with the openai SDK, validated by the orchestrator and run on one GPU worker against a zero-latency engine. RSS is sampled from /proc every 50 ms.`,
    metrics: [apiRss, orchestratorRss, gpuRss, validation, size],
    notes: ['Validation runs in the orchestrator worker (streaming the file); the API only streams the upload to the file store.'],
  };
}

/** 5. Temporal history events per batch at 1k, 10k and 50k requests. */
export async function history(o: Options): Promise<ScenarioResult> {
  const sizes = o.quick ? [1000, 10_000] : [1000, 10_000, 50_000];
  const engineOptions = { model: 'history', maxNumSeqs: 1024, prefillMs: 0, tokenLatencyMs: 0, outputTokens: '8' };
  const metrics = sizes.map((n) => metric(`${n.toLocaleString('en-US')} requests`, 'events', 'lower', n === 50_000 ? { op: '<=', value: 1000 } : undefined));
  await withInfra(async (infra) => {
    const engine = await startEngine(engineOptions);
    const stack = await startStack(infra, { engines: [engine], env: { GPU_MAX_INFLIGHT: '256' }, gpuNodeArgs: o.gpuNodeArgs });
    const connection = await Connection.connect({ address: infra.temporal.address });
    const client = new Client({ connection });
    try {
      for (const [i, n] of sizes.entries()) {
        // The history of a batch depends on its size, not on chance: one run says it.
        const fileId = await upload(stack, requestLines(engineOptions.model, n, { maxTokens: 8 }));
        const { batch } = await runBatch(stack, fileId);
        const handle = client.workflow.getHandle(batch.id);
        await handle.result();
        const events = (await handle.fetchHistory()).events?.length ?? 0;
        metrics[i]?.values.push(events);
        log.info({ requests: n, events }, 'history');
      }
    } finally {
      await connection.close();
      await stack.stop();
      await engine.process.stop();
    }
  });
  return {
    name: 'history',
    title: 'History size',
    setup: 'Temporal events in one BatchWorkflow\'s history, default chunk size (500 requests): requests and results never enter history, so it grows with chunks, not requests. Measured once per size: it varies by a few events between runs, with how many chunk completions one workflow task picks up together.',
    metrics,
    notes: ['Temporal warns at 10,240 events and stops a workflow at 51,200.'],
  };
}

/** 6. From POST /v1/batches to the first request at the engine. */
export async function latency(o: Options): Promise<ScenarioResult> {
  const engineOptions = { model: 'first', maxNumSeqs: 256, prefillMs: 0, tokenLatencyMs: 0, outputTokens: '8' };
  const small = metric('100-request batch', 'ms', 'lower', { op: '<=', value: 1000 });
  const large = metric('10,000-request batch (validated in full first)', 'ms', 'lower');
  await withInfra(async (infra) => {
    const engine = await startEngine(engineOptions);
    const stack = await startStack(infra, { engines: [engine], gpuNodeArgs: o.gpuNodeArgs });
    try {
      for (const [target, n] of [[small, 100], [large, 10_000]] as const) {
        const fileId = await upload(stack, requestLines(engineOptions.model, n, { maxTokens: 8 }));
        for (let run = 0; run < Math.max(o.runs, 3); run++) {
          await engine.resetStats();
          const { createdAt } = await runBatch(stack, fileId);
          target.values.push(((await engine.stats()).firstRequestAt ?? 0) - createdAt);
        }
      }
    } finally {
      await stack.stop();
      await engine.process.stop();
    }
  });
  return {
    name: 'latency',
    title: 'Latency to first request',
    setup: 'From the `batches.create` call to the first request arriving at the engine: workflow start, validation of the whole file, planning, and the first chunk reaching a GPU worker.',
    metrics: [small, large],
    notes: ['OpenAI\'s contract has the whole file validated before any request runs, so a larger file waits for its validation.'],
  };
}

export const SCENARIOS = { overhead, ceiling, scaleout: scaleOut, memory, history, latency } as const;
export type ScenarioName = keyof typeof SCENARIOS;
