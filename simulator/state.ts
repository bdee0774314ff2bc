// The simulator's running state: one engine for every served name, vLLM's metrics registry, the
// faults in force and the counts /control/stats reports. execute() runs a prepared request
// (requests.ts) through the engine, each prompt × n sample an engine request of its own.
import { createHash } from 'node:crypto';
import { Counter, Registry } from 'prom-client';

import { AbortedError, sleep } from '../lib/abortable.js';
import { resolveCapacity } from './capacity.js';
import { Engine } from './engine.js';
import { decideFault, noFaults, type Faults } from './faults.js';
import { VllmMetrics } from './metrics.js';
import { embeddingModelsOf, VLLM_VERSION, type ModelKind, type SimulatorOptions } from './options.js';
import { BOS, type Prepared, type Served } from './requests.js';
import type { EngineRequest, EngineRequestInput } from './scheduler.js';
import { prng, seedOf } from './text.js';

export interface SimulatorStats {
  received: number;
  served: number;
  rejected: number;
  aborted: number;
  faults: { error: number; hang: number; drop: number; spike: number; stall: number; truncate: number };
  running: number;
  waiting: number;
  maxRunning: number;
  /** Milliseconds the engine spent in steps (its GPU busy), since start or the last reset. */
  busyMs: number;
  /** Milliseconds its clock fell behind and gave up catching up (the simulator starved of CPU), since start. */
  lostMs: number;
  /** Epoch milliseconds of the first and the latest inference request (null before any). */
  firstRequestAt: number | null;
  lastRequestAt: number | null;
  /** Epoch milliseconds at which the latest request was answered. */
  lastServedAt: number | null;
}

export class SimulatorState implements Served {
  faults: Faults;
  readonly engine: Engine;
  readonly registry = new Registry();
  readonly requestCounts = new Map<string, number>();
  readonly embeddingModels: Set<string>;
  /** vLLM's system_fingerprint: the version and a digest of the configuration. */
  readonly fingerprint: string;
  private readonly metrics: VllmMetrics;
  private readonly random: () => number;
  private readonly stats = {
    received: 0,
    served: 0,
    rejected: 0,
    aborted: 0,
    faults: { error: 0, hang: 0, drop: 0, spike: 0, stall: 0, truncate: 0 },
    maxRunning: 0,
    busyMs: 0,
    firstRequestAt: null as number | null,
    lastRequestAt: null as number | null,
    lastServedAt: null as number | null,
  };
  private readonly faultCounter: Counter<'kind'>;

  constructor(readonly options: SimulatorOptions) {
    this.faults = options.faults ?? noFaults;
    this.random = prng(options.seed ?? 1);
    this.embeddingModels = embeddingModelsOf(options);
    for (const m of this.embeddingModels)
      if (!options.models.includes(m))
        throw new Error(`embedding model "${m}" is not a served model (${options.models.join(', ')})`);
    const capacity = resolveCapacity(options);
    const { scheduler, timing } = capacity;
    this.fingerprint = `vllm-${VLLM_VERSION}-${createHash('sha256')
      .update(JSON.stringify([options.models, options.maxModelLen, scheduler]))
      .digest('hex')
      .slice(0, 8)}`;
    // One engine serves every model name, as vLLM does with several --served-model-name: its metrics carry the first.
    const metrics = new VllmMetrics(this.registry, this.defaultModel, options.maxModelLen, scheduler);
    this.metrics = metrics;
    this.engine = new Engine(scheduler, timing, {
      onState: (s) => {
        metrics.onState(s);
        if (s.running.length > this.stats.maxRunning) this.stats.maxRunning = s.running.length;
      },
      onStep: (plan, outcome, durationMs) => {
        metrics.onStep(plan, outcome);
        this.stats.busyMs += durationMs;
      },
      onToken: (request, at) => {
        metrics.onToken(request, at);
      },
      onFinish: (request, at) => {
        metrics.onFinish(request, at);
      },
    });
    this.faultCounter = new Counter({
      name: 'sim_faults_injected_total',
      help: 'Faults the simulator injected, by kind.',
      labelNames: ['kind'],
      registers: [this.registry],
    });
  }

  snapshot(): SimulatorStats {
    return {
      ...this.stats,
      faults: { ...this.stats.faults },
      lostMs: this.engine.lostMs,
      running: this.engine.scheduler.running.length,
      waiting: this.engine.scheduler.numWaiting,
    };
  }

  get defaultModel(): string {
    return this.options.models[0] ?? 'model';
  }

  /** The served names of one kind (what a vLLM serving that kind would list). */
  modelsOf(kind: ModelKind): string[] {
    return this.options.models.filter((m) => this.embeddingModels.has(m) === (kind === 'embed'));
  }

  recordArrival(body: string): void {
    this.stats.received++;
    const now = Date.now();
    this.stats.firstRequestAt ??= now;
    this.stats.lastRequestAt = now;
    if (this.options.recordRequests === true) {
      const key = String(seedOf(body));
      this.requestCounts.set(key, (this.requestCounts.get(key) ?? 0) + 1);
    }
  }

  /**
   * Runs a request through the engine: each prompt × n sample is an engine request of its own (an
   * embedding input is one that ends with its prefill). Resolves when all have ended; rejects with
   * AbortedError (and frees their blocks) when the client goes away. onToken hears every output token.
   */
  async execute(
    prepared: Prepared,
    extraLatencyMs: number,
    signal: AbortSignal,
    onToken?: (sequence: number, request: EngineRequest) => void,
  ): Promise<void> {
    const delay = (this.options.prefillMs ?? 0) + extraLatencyMs;
    if (delay > 0) await sleep(delay, signal);
    // A prompt of no tokens still has the tokenizer's begin-of-text token; a cache salt changes the first token's identity.
    const promptOf = (i: number): string[] => {
      const tokens = prepared.prompts[i] ?? [];
      const prompt = tokens.length > 0 ? [...tokens] : [BOS];
      if (prepared.cacheSalt !== undefined) prompt[0] = `${prepared.cacheSalt}\u0003${prompt[0] ?? ''}`;
      return prompt;
    };
    const inputs: EngineRequestInput[] =
      prepared.sequences.length > 0
        ? prepared.sequences.map((s) => ({
            prompt: promptOf(s.prompt),
            maxTokens: s.tokens,
            finishReason: s.finish,
            priority: prepared.priority,
            outputSeed: s.seed,
          }))
        : prepared.prompts.map((_, i) => ({ prompt: promptOf(i), maxTokens: 0, priority: prepared.priority }));
    const requests = await this.runOnEngine(inputs, signal, onToken);
    // vLLM reports each prompt's cached tokens once (the first sample's), summed over prompts; the
    // tokens it wrote to the cache are its full prompt blocks that were not hits.
    const { blockSize, enablePrefixCaching } = this.engine.scheduler.config;
    const counted = new Set<number>();
    prepared.cachedTokens = 0;
    prepared.createdCacheTokens = 0;
    requests.forEach((request, i) => {
      const prompt = prepared.sequences.length > 0 ? (prepared.sequences[i]?.prompt ?? 0) : i;
      if (counted.has(prompt)) return;
      counted.add(prompt);
      const cached = Math.max(0, request.numCached);
      prepared.cachedTokens += cached;
      if (enablePrefixCaching)
        prepared.createdCacheTokens += Math.max(
          0,
          Math.floor(request.numPromptTokens / blockSize) * blockSize - cached,
        );
    });
    if (prepared.sequences.length > 0) {
      this.metrics.onParentFinished(
        prepared.n,
        prepared.sequences.map((s) => s.maxTokens),
        requests.map((r) => r.numOutput),
      );
    }
    this.stats.served++;
    this.stats.lastServedAt = Date.now();
  }

  private runOnEngine(
    inputs: EngineRequestInput[],
    signal: AbortSignal,
    onToken?: (sequence: number, request: EngineRequest) => void,
  ): Promise<EngineRequest[]> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new AbortedError());
        return;
      }
      const requests: EngineRequest[] = [];
      let open = inputs.length;
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        for (const request of requests) this.engine.abort(request);
        reject(new AbortedError());
      };
      const done = (): void => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(requests);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      inputs.forEach((input, sequence) => {
        requests.push(
          this.engine.submit(input, (request, event) => {
            if (settled) return;
            if (event === 'token') onToken?.(sequence, request);
            else if (--open === 0) done();
          }),
        );
      });
      if (open === 0) done();
    });
  }

  close(): void {
    this.engine.close();
  }

  resetStats(): void {
    Object.assign(this.stats, {
      received: 0,
      served: 0,
      rejected: 0,
      aborted: 0,
      maxRunning: 0,
      busyMs: 0,
      firstRequestAt: null,
      lastRequestAt: null,
      lastServedAt: null,
    });
    this.stats.faults = { error: 0, hang: 0, drop: 0, spike: 0, stall: 0, truncate: 0 };
    this.requestCounts.clear();
  }

  countFault(kind: keyof SimulatorStats['faults']): void {
    this.stats.faults[kind]++;
    this.faultCounter.inc({ kind });
  }

  countRejected(): void {
    this.stats.rejected++;
  }

  countAborted(): void {
    this.stats.aborted++;
  }

  rollFault(): ReturnType<typeof decideFault> {
    return decideFault(this.faults, this.random);
  }
}
