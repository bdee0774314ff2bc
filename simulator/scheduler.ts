// vLLM's v1 scheduler (vllm/v1/core/sched/scheduler.py), reduced to what decides time and memory.
// There is no prefill or decode phase: each request has tokens (prompt + output so far) and
// computed tokens, and each step gives requests tokens to catch up, under one token budget
// (max_num_batched_tokens; long prompts are cut into chunks). Running requests come first, in
// order; a running request that cannot get a KV block preempts the most recently admitted one
// (or, with the priority policy, the lowest priority), which loses its KV cache and goes back to
// the front of the waiting queue to be recomputed later. Waiting requests are admitted only when
// no request was preempted in the step, while fewer than max_num_seqs run and their blocks fit,
// after a prefix-cache lookup. A request whose step reaches the end of its known tokens samples
// one output token. The scheduler is synchronous and knows nothing of time: the engine
// (engine.ts) runs it, in real time for the HTTP server or in simulated time for calibration.
import { createHash } from 'node:crypto';

import { KVCacheManager, type CacheHit, type KVRequest } from './kv-cache.js';

export type SchedulingPolicy = 'fcfs' | 'priority';
export type FinishReason = 'stop' | 'length' | 'abort';

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  blockSize: number;
  /** KV cache size in blocks, vLLM's num_gpu_blocks (block 0 is reserved, as in vLLM). */
  numGpuBlocks: number;
  maxModelLen: number;
  enablePrefixCaching: boolean;
  policy: SchedulingPolicy;
}

export interface EngineRequestInput {
  /** The prompt as token identities (any strings; equal strings are the same token). */
  prompt: readonly string[];
  /** Output tokens to generate; 0 for a pooling (embedding) request, which ends with its prefill. */
  maxTokens: number;
  /** How a request that reaches maxTokens reports its end. */
  finishReason?: 'stop' | 'length';
  /** Lower runs first under the priority policy (vLLM's convention); ignored under fcfs. */
  priority?: number;
  /** Makes the output tokens' identities, so a recomputed request finds its own output blocks. */
  outputSeed?: number;
}

export type RequestStatus = 'waiting' | 'running' | 'preempted' | 'finished';

let nextRequestId = 0;

function chainHash(parent: string, tokens: readonly string[]): string {
  return createHash('sha1').update(parent).update('\u0000').update(tokens.join('\u0001')).digest('base64');
}

export class EngineRequest implements KVRequest {
  readonly id = nextRequestId++;
  readonly prompt: readonly string[];
  readonly maxTokens: number;
  readonly priority: number;
  readonly finishAs: 'stop' | 'length';
  private readonly outputSeed: number;
  status: RequestStatus = 'waiting';
  numComputed = 0;
  numOutput = 0;
  /** Prompt tokens found in the prefix cache when first scheduled (vLLM's num_cached_tokens); -1 before. */
  numCached = -1;
  numPreemptions = 0;
  finishReason: FinishReason | null = null;
  /** Engine times in ms: arrival, first scheduled, first and latest token, end. */
  arrivedAt = 0;
  scheduledAt: number | null = null;
  firstTokenAt: number | null = null;
  lastTokenAt: number | null = null;
  finishedAt: number | null = null;
  private readonly hashes: string[] = [];
  /** Told of each output token and of the end (set by whoever submitted the request). */
  listener: ((request: EngineRequest, event: 'token' | 'finish') => void) | undefined;

  constructor(
    input: EngineRequestInput,
    private readonly blockSize: number,
  ) {
    this.prompt = input.prompt;
    this.maxTokens = input.maxTokens;
    this.priority = input.priority ?? 0;
    this.finishAs = input.finishReason ?? 'stop';
    this.outputSeed = input.outputSeed ?? this.id;
  }

  get numPromptTokens(): number {
    return this.prompt.length;
  }

  get numTokens(): number {
    return this.prompt.length + this.numOutput;
  }

  private token(i: number): string {
    return i < this.prompt.length ? (this.prompt[i] ?? '') : `\u0002${this.outputSeed}:${i - this.prompt.length}`;
  }

  blockHash(i: number): string {
    for (let b = this.hashes.length; b <= i; b++) {
      const tokens: string[] = [];
      for (let t = b * this.blockSize; t < (b + 1) * this.blockSize; t++) tokens.push(this.token(t));
      this.hashes.push(chainHash(b === 0 ? '' : (this.hashes[b - 1] ?? ''), tokens));
    }
    return this.hashes[i] ?? '';
  }
}

/** Waiting requests: arrival order (fcfs), or by (priority, arrival) as vLLM's priority queue. */
class WaitingQueue {
  private readonly items: EngineRequest[] = [];
  constructor(private readonly policy: SchedulingPolicy) {}

  get length(): number {
    return this.items.length;
  }

  peek(): EngineRequest | undefined {
    return this.items[0];
  }

  pop(): EngineRequest | undefined {
    return this.items.shift();
  }

  private before(a: EngineRequest, b: EngineRequest): boolean {
    return a.priority !== b.priority
      ? a.priority < b.priority
      : a.arrivedAt !== b.arrivedAt
        ? a.arrivedAt < b.arrivedAt
        : a.id < b.id;
  }

  add(request: EngineRequest): void {
    if (this.policy === 'fcfs') {
      this.items.push(request);
      return;
    }
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = this.items[mid];
      if (other !== undefined && !this.before(request, other)) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, request);
  }

  /** A preempted request: first in line under fcfs; in its place under priority (a heap has no front). */
  prepend(request: EngineRequest): void {
    if (this.policy === 'fcfs') this.items.unshift(request);
    else this.add(request);
  }

  remove(request: EngineRequest): boolean {
    const i = this.items.indexOf(request);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }
}

export interface StepPlan {
  /** Requests given tokens this step, and how many each. */
  scheduled: Map<EngineRequest, number>;
  tokens: number;
  /** Tokens of requests still in prefill (or recompute) vs one-token decodes. */
  prefillTokens: number;
  decodeTokens: number;
  preempted: EngineRequest[];
  admitted: EngineRequest[];
}

export interface StepOutcome {
  /** Requests that got an output token this step. */
  tokens: EngineRequest[];
  /** Requests that ended (their last token is in `tokens`, except for pooling requests). */
  finished: EngineRequest[];
}

export interface SchedulerCounters {
  steps: number;
  preemptions: number;
  /** Prefix-cache lookups of requests admitted for the first time, in tokens (vllm:prefix_cache_queries). */
  prefixQueries: number;
  prefixHits: number;
  promptTokens: number;
  generationTokens: number;
  /** Tokens actually computed in prefill or recompute, after cache hits (what the steps paid for). */
  computedPrefillTokens: number;
}

export class Scheduler {
  readonly kv: KVCacheManager;
  readonly running: EngineRequest[] = [];
  private readonly waitingQueue: WaitingQueue;
  readonly counters: SchedulerCounters = {
    steps: 0,
    preemptions: 0,
    prefixQueries: 0,
    prefixHits: 0,
    promptTokens: 0,
    generationTokens: 0,
    computedPrefillTokens: 0,
  };

  constructor(readonly config: SchedulerConfig) {
    const { maxNumSeqs, maxNumBatchedTokens, blockSize, numGpuBlocks, maxModelLen } = config;
    for (const [name, value] of Object.entries({
      maxNumSeqs,
      maxNumBatchedTokens,
      blockSize,
      numGpuBlocks,
      maxModelLen,
    })) {
      if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
    }
    // vLLM refuses to start when one sequence of max_model_len cannot fit in the KV cache.
    const kvTokens = (numGpuBlocks - 1) * blockSize;
    if (kvTokens < maxModelLen) {
      throw new Error(
        `the KV cache (${numGpuBlocks} blocks of ${blockSize} tokens, ${kvTokens} usable) cannot hold one sequence of max_model_len ${maxModelLen}: ` +
          'raise the number of KV blocks or lower max_model_len (vLLM refuses to start in this case too)',
      );
    }
    this.kv = new KVCacheManager(numGpuBlocks, blockSize, maxModelLen, config.enablePrefixCaching);
    this.waitingQueue = new WaitingQueue(config.policy);
  }

  get numWaiting(): number {
    return this.waitingQueue.length;
  }

  get hasWork(): boolean {
    return this.running.length > 0 || this.waitingQueue.length > 0;
  }

  create(input: EngineRequestInput): EngineRequest {
    if (!Number.isInteger(input.maxTokens) || input.maxTokens < 0)
      throw new Error(`maxTokens must be a non-negative integer, got ${input.maxTokens}`);
    if (input.prompt.length === 0 && input.maxTokens > 0)
      throw new Error('a generation request needs at least one prompt token');
    return new EngineRequest(input, this.config.blockSize);
  }

  add(request: EngineRequest, now: number): void {
    request.arrivedAt = now;
    request.status = 'waiting';
    this.waitingQueue.add(request);
  }

  /** Ends a request wherever it is (a client went away): its blocks are freed, it leaves the queue. */
  abort(request: EngineRequest, now: number): boolean {
    if (request.status === 'finished') return false;
    if (request.status === 'running') {
      const i = this.running.indexOf(request);
      if (i >= 0) this.running.splice(i, 1);
      this.kv.free(request);
    } else {
      this.waitingQueue.remove(request);
    }
    request.status = 'finished';
    request.finishReason = 'abort';
    request.finishedAt = now;
    return true;
  }

  /** Picks this step's tokens, allocating (and preempting) KV blocks. The plan's tokens count as computed. */
  schedule(now: number): StepPlan {
    const { maxNumBatchedTokens, maxNumSeqs, policy } = this.config;
    const scheduled = new Map<EngineRequest, number>();
    const preempted: EngineRequest[] = [];
    const admitted: EngineRequest[] = [];
    let budget = maxNumBatchedTokens;

    // First the running requests, in order.
    let i = 0;
    while (i < this.running.length && budget > 0) {
      const request = this.running[i];
      if (request === undefined) break;
      const numNew = Math.min(request.numTokens - request.numComputed, budget);
      if (numNew <= 0) {
        i++;
        continue;
      }
      let allocated = false;
      for (;;) {
        if (this.kv.allocateSlots(request, numNew)) {
          allocated = true;
          break;
        }
        let victim: EngineRequest | undefined;
        if (policy === 'priority') {
          victim = this.running.reduce(
            (worst, r) =>
              r.priority > worst.priority || (r.priority === worst.priority && r.arrivedAt > worst.arrivedAt)
                ? r
                : worst,
            request,
          );
          const at = this.running.indexOf(victim);
          this.running.splice(at, 1);
          const given = scheduled.get(victim);
          if (given !== undefined) {
            scheduled.delete(victim);
            budget += given;
            victim.numComputed -= given;
          }
          if (at < i) i--;
        } else {
          victim = this.running.pop();
        }
        if (victim === undefined) break;
        this.preempt(victim);
        preempted.push(victim);
        if (victim === request) break;
      }
      if (!allocated) break;
      scheduled.set(request, numNew);
      // Counted now, as vLLM's _update_after_schedule does, so a chunk continues in the next step.
      request.numComputed += numNew;
      budget -= numNew;
      i++;
    }

    // Then the waiting ones, unless this step had to preempt.
    if (preempted.length === 0) {
      while (this.waitingQueue.length > 0 && budget > 0 && this.running.length < maxNumSeqs) {
        const request = this.waitingQueue.peek();
        if (request === undefined) break;
        const hit: CacheHit = request.numComputed === 0 ? this.kv.computedBlocks(request) : KVCacheManager.noHit;
        const numNew = Math.min(request.numTokens - hit.tokens, budget);
        if (!this.kv.allocateSlots(request, numNew, hit)) break;
        this.waitingQueue.pop();
        this.running.push(request);
        if (request.numPreemptions === 0 && this.config.enablePrefixCaching) {
          this.counters.prefixQueries += request.numTokens;
          this.counters.prefixHits += hit.tokens;
        }
        if (request.numCached < 0) request.numCached = hit.tokens;
        request.scheduledAt ??= now;
        request.status = 'running';
        request.numComputed = hit.tokens + numNew;
        scheduled.set(request, numNew);
        admitted.push(request);
        budget -= numNew;
      }
    }

    let tokens = 0;
    let decodeTokens = 0;
    for (const [request, n] of scheduled) {
      tokens += n;
      // A one-token step right after the request's own previous token is a decode; anything else computes prompt (or recomputes).
      if (n === 1 && request.numOutput > 0 && request.numComputed === request.numTokens) decodeTokens += n;
    }
    const prefillTokens = tokens - decodeTokens;
    this.counters.computedPrefillTokens += prefillTokens;
    if (tokens > 0) this.counters.steps++;
    return { scheduled, tokens, prefillTokens, decodeTokens, preempted, admitted };
  }

  private preempt(request: EngineRequest): void {
    this.kv.free(request);
    request.status = 'preempted';
    request.numComputed = 0;
    request.numPreemptions++;
    this.counters.preemptions++;
    this.waitingQueue.prepend(request);
  }

  /** The step's model output: a token for every request whose computed tokens caught up with its tokens. */
  update(plan: StepPlan, now: number): StepOutcome {
    const outcome: StepOutcome = { tokens: [], finished: [] };
    for (const request of plan.scheduled.keys()) {
      // Aborted (or, in principle, preempted) while the step ran: its output is dropped, as vLLM does.
      if (request.status !== 'running') continue;
      if (request.numComputed < request.numTokens) continue; // a prefill chunk: no token yet
      if (request.numOutput === 0) this.counters.promptTokens += request.numPromptTokens;
      if (request.maxTokens === 0) {
        this.finish(request, request.finishAs, now);
        outcome.finished.push(request);
        continue;
      }
      request.numOutput++;
      this.counters.generationTokens++;
      request.firstTokenAt ??= now;
      request.lastTokenAt = now;
      outcome.tokens.push(request);
      if (request.numOutput >= request.maxTokens) {
        this.finish(request, request.finishAs, now);
        outcome.finished.push(request);
      } else if (request.numTokens >= this.config.maxModelLen) {
        this.finish(request, 'length', now);
        outcome.finished.push(request);
      }
    }
    return outcome;
  }

  private finish(request: EngineRequest, reason: FinishReason, now: number): void {
    const i = this.running.indexOf(request);
    if (i >= 0) this.running.splice(i, 1);
    this.kv.free(request);
    request.status = 'finished';
    request.finishReason = reason;
    request.finishedAt = now;
  }
}
