// vLLM's Prometheus metrics (vllm/v1/metrics/loggers.py, PrometheusStatLogger): the same names,
// help texts, buckets and labels {engine="0", model_name=<the first served name>}, all present from
// start-up. Fed by the engine loop: scheduler state after every step, and each request's times.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import type { EngineObserver } from './engine.js';
import type { EngineRequest, Scheduler, SchedulerConfig, StepOutcome, StepPlan } from './scheduler.js';
import { pyFloat } from './validation.js';

const FINISH_REASONS = ['stop', 'length', 'abort', 'error', 'repetition'] as const;
const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
  640.0, 2560.0,
];
const ITL_BUCKETS = [
  0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0,
  7680.0,
];
const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const REQUEST_PARAMS_N_BUCKETS = [1, 2, 5, 10, 20];
const REQUEST_NUM_PREEMPTIONS_BUCKETS = [1, 2, 3, 4, 5, 10, 20];
const PROMPT_SOURCES = ['local_compute', 'local_cache_hit', 'external_kv_transfer'] as const;
const CACHE_HIT_SOURCES = ['device', 'host', 'p2p', 'disk', 'external_unspecified'] as const;
const ADMISSION_REASONS = ['max_num_queued_reqs', 'max_num_queued_tokens'] as const;
const SLEEP_STATES = ['awake', 'weights_offloaded', 'discard_all'] as const;

/** vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max. */
function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 1; ; exp *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * exp > max) return out;
      out.push(m * exp);
    }
  }
}

export class VllmMetrics implements EngineObserver {
  private readonly labels: { engine: string; model_name: string };
  private readonly running: Gauge<'engine' | 'model_name'>;
  private readonly waiting: Gauge<'engine' | 'model_name'>;
  private readonly waitingByReason: Gauge<'engine' | 'model_name' | 'reason'>;
  private readonly kvUsage: Gauge<'engine' | 'model_name'>;
  private readonly prefixQueries: Counter<'engine' | 'model_name'>;
  private readonly prefixHits: Counter<'engine' | 'model_name'>;
  private readonly preemptions: Counter<'engine' | 'model_name'>;
  private readonly promptTokens: Counter<'engine' | 'model_name'>;
  private readonly promptTokensBySource: Counter<'engine' | 'model_name' | 'source'>;
  private readonly promptTokensCached: Counter<'engine' | 'model_name'>;
  private readonly promptTokensCachedBySource: Counter<'engine' | 'model_name' | 'source'>;
  private readonly generationTokens: Counter<'engine' | 'model_name'>;
  private readonly success: Counter<'engine' | 'finished_reason' | 'model_name'>;
  private readonly histograms: Record<
    | 'promptTokensRequest'
    | 'generationTokensRequest'
    | 'iterationTokens'
    | 'maxNumGenerationTokens'
    | 'paramsN'
    | 'paramsMaxTokens'
    | 'ttft'
    | 'itl'
    | 'timePerOutputToken'
    | 'e2e'
    | 'queue'
    | 'inference'
    | 'prefill'
    | 'decode'
    | 'numPreemptions'
    | 'prefillKvComputed',
    Histogram<'engine' | 'model_name'>
  >;
  private readonly seen = { queries: 0, hits: 0, preemptions: 0 };

  constructor(
    registry: Registry,
    modelName: string,
    maxModelLen: number,
    cache?: Pick<SchedulerConfig, 'blockSize' | 'numGpuBlocks' | 'enablePrefixCaching'>,
  ) {
    this.labels = { engine: '0', model_name: modelName };
    const registers = [registry];
    const labelNames = ['engine', 'model_name'] as const;
    const gauge = (name: string, help: string): Gauge<'engine' | 'model_name'> =>
      new Gauge({ name, help, labelNames, registers });
    const counter = (name: string, help: string): Counter<'engine' | 'model_name'> =>
      new Counter({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]): Histogram<'engine' | 'model_name'> =>
      new Histogram({ name, help, labelNames, buckets, registers });
    // A metric with one label more than engine and model_name (vLLM's by-reason, by-source families).
    const gaugeBy = <L extends string>(name: string, help: string, label: L): Gauge<'engine' | 'model_name' | L> =>
      new Gauge({ name, help, labelNames: [...labelNames, label], registers });
    const counterBy = <L extends string>(name: string, help: string, label: L): Counter<'engine' | 'model_name' | L> =>
      new Counter({ name, help, labelNames: [...labelNames, label], registers });
    this.running = gauge('vllm:num_requests_running', 'Number of requests in model execution batches.');
    this.waiting = gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.');
    this.waitingByReason = gaugeBy(
      'vllm:num_requests_waiting_by_reason',
      "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints " +
        '(LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.',
      'reason',
    );
    const sleepState = gaugeBy(
      'vllm:engine_sleep_state',
      'Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.',
      'sleep_state',
    );
    this.kvUsage = gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.');
    this.prefixQueries = counter(
      'vllm:prefix_cache_queries_total',
      'Prefix cache queries, in terms of number of queried tokens.',
    );
    this.prefixHits = counter(
      'vllm:prefix_cache_hits_total',
      'Prefix cache hits, in terms of number of cached tokens.',
    );
    // No KV connector and no multi-modal cache: these stay at 0, as they do in a vLLM without them.
    const zero = [
      counter(
        'vllm:external_prefix_cache_queries_total',
        'External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.',
      ),
      counter(
        'vllm:external_prefix_cache_hits_total',
        'External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.',
      ),
      counter('vllm:mm_cache_queries_total', 'Multi-modal cache queries, in terms of number of queried items.'),
      counter('vllm:mm_cache_hits_total', 'Multi-modal cache hits, in terms of number of cached items.'),
    ];
    this.preemptions = counter('vllm:num_preemptions_total', 'Cumulative number of preemption from the engine.');
    this.promptTokens = counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.');
    this.promptTokensBySource = counterBy(
      'vllm:prompt_tokens_by_source_total',
      'Number of prompt tokens by source.',
      'source',
    );
    this.promptTokensCached = counter(
      'vllm:prompt_tokens_cached_total',
      'Number of cached prompt tokens (local + external).',
    );
    this.promptTokensCachedBySource = counterBy(
      'vllm:prompt_tokens_cached_by_source_total',
      'Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) ' +
        'or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.',
      'source',
    );
    this.generationTokens = counter('vllm:generation_tokens_total', 'Number of generation tokens processed.');
    this.success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['engine', 'finished_reason', 'model_name'] as const,
      registers,
    });
    // The simulator has no --max-num-queued-reqs: it never rejects at admission, so these stay at 0.
    const admissionRejections = new Counter({
      name: 'vllm:admission_rejections_total',
      help: 'Number of admission attempts rejected by a queue limit, by reason.',
      labelNames: ['model_name', 'reason'] as const,
      registers,
    });
    const tokenBuckets = buckets125(maxModelLen);
    this.histograms = {
      promptTokensRequest: histogram('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', tokenBuckets),
      generationTokensRequest: histogram(
        'vllm:request_generation_tokens',
        'Number of generation tokens processed.',
        tokenBuckets,
      ),
      iterationTokens: histogram(
        'vllm:iteration_tokens_total',
        'Histogram of number of tokens per engine_step.',
        ITERATION_TOKEN_BUCKETS,
      ),
      maxNumGenerationTokens: histogram(
        'vllm:request_max_num_generation_tokens',
        'Histogram of maximum number of requested generation tokens.',
        tokenBuckets,
      ),
      paramsN: histogram('vllm:request_params_n', 'Histogram of the n request parameter.', REQUEST_PARAMS_N_BUCKETS),
      paramsMaxTokens: histogram(
        'vllm:request_params_max_tokens',
        'Histogram of the max_tokens request parameter.',
        tokenBuckets,
      ),
      ttft: histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS),
      itl: histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS),
      timePerOutputToken: histogram(
        'vllm:request_time_per_output_token_seconds',
        'Histogram of time_per_output_token_seconds per request.',
        ITL_BUCKETS,
      ),
      e2e: histogram(
        'vllm:e2e_request_latency_seconds',
        'Histogram of e2e request latency in seconds.',
        REQUEST_LATENCY_BUCKETS,
      ),
      queue: histogram(
        'vllm:request_queue_time_seconds',
        'Histogram of time spent in WAITING phase for request.',
        REQUEST_LATENCY_BUCKETS,
      ),
      inference: histogram(
        'vllm:request_inference_time_seconds',
        'Histogram of time spent in RUNNING phase for request.',
        REQUEST_LATENCY_BUCKETS,
      ),
      prefill: histogram(
        'vllm:request_prefill_time_seconds',
        'Histogram of time spent in PREFILL phase for request.',
        REQUEST_LATENCY_BUCKETS,
      ),
      decode: histogram(
        'vllm:request_decode_time_seconds',
        'Histogram of time spent in DECODE phase for request.',
        REQUEST_LATENCY_BUCKETS,
      ),
      numPreemptions: histogram(
        'vllm:request_num_preemptions',
        'Histogram of the number of times a request was preempted.',
        REQUEST_NUM_PREEMPTIONS_BUCKETS,
      ),
      prefillKvComputed: histogram(
        'vllm:request_prefill_kv_computed_tokens',
        'Histogram of new KV tokens computed during prefill (excluding cached tokens).',
        tokenBuckets,
      ),
    };
    if (cache !== undefined) {
      const info = new Gauge({
        name: 'vllm:cache_config_info',
        help: 'Information of the LLMEngine CacheConfig',
        labelNames: Object.keys(cacheConfigLabels(cache, maxModelLen)),
        registers,
      });
      info.set(cacheConfigLabels(cache, maxModelLen), 1);
    }
    // Present from start-up, as vLLM's are.
    for (const g of [this.running, this.waiting, this.kvUsage]) g.set(this.labels, 0);
    for (const reason of ['capacity', 'deferred']) this.waitingByReason.set({ ...this.labels, reason }, 0);
    for (const sleep_state of SLEEP_STATES)
      sleepState.set({ ...this.labels, sleep_state }, sleep_state === 'awake' ? 1 : 0);
    for (const c of [
      this.prefixQueries,
      this.prefixHits,
      ...zero,
      this.preemptions,
      this.promptTokens,
      this.promptTokensCached,
      this.generationTokens,
    ])
      c.inc(this.labels, 0);
    for (const source of PROMPT_SOURCES) this.promptTokensBySource.inc({ ...this.labels, source }, 0);
    for (const source of CACHE_HIT_SOURCES) this.promptTokensCachedBySource.inc({ ...this.labels, source }, 0);
    for (const finished_reason of FINISH_REASONS)
      this.success.inc({ engine: '0', finished_reason, model_name: modelName }, 0);
    for (const reason of ADMISSION_REASONS) admissionRejections.inc({ model_name: modelName, reason }, 0);
    for (const h of Object.values(this.histograms)) h.zero(this.labels);
  }

  onState(scheduler: Scheduler): void {
    this.running.set(this.labels, scheduler.running.length);
    this.waiting.set(this.labels, scheduler.numWaiting);
    this.waitingByReason.set({ ...this.labels, reason: 'capacity' }, scheduler.numWaiting);
    this.kvUsage.set(this.labels, scheduler.kv.pool.usage);
    const c = scheduler.counters;
    if (c.prefixQueries > this.seen.queries) this.prefixQueries.inc(this.labels, c.prefixQueries - this.seen.queries);
    if (c.prefixHits > this.seen.hits) {
      const hits = c.prefixHits - this.seen.hits;
      this.prefixHits.inc(this.labels, hits);
      this.promptTokensCachedBySource.inc({ ...this.labels, source: 'device' }, hits);
    }
    if (c.preemptions > this.seen.preemptions) this.preemptions.inc(this.labels, c.preemptions - this.seen.preemptions);
    this.seen.queries = c.prefixQueries;
    this.seen.hits = c.prefixHits;
    this.seen.preemptions = c.preemptions;
  }

  onStep(plan: StepPlan, outcome: StepOutcome): void {
    this.histograms.iterationTokens.observe(this.labels, plan.tokens);
    if (outcome.tokens.length > 0) this.generationTokens.inc(this.labels, outcome.tokens.length);
  }

  /** A request's prompt, counted once it is computed: where its tokens came from. */
  private countPrompt(request: EngineRequest): void {
    const cached = Math.max(0, request.numCached);
    this.promptTokens.inc(this.labels, request.numPromptTokens);
    this.promptTokensBySource.inc({ ...this.labels, source: 'local_compute' }, request.numPromptTokens - cached);
    this.promptTokensBySource.inc({ ...this.labels, source: 'local_cache_hit' }, cached);
    this.promptTokensCached.inc(this.labels, cached);
  }

  onToken(request: EngineRequest, atMs: number): void {
    if (request.numOutput === 1) {
      this.countPrompt(request);
      this.histograms.ttft.observe(this.labels, Math.max(0, atMs - request.arrivedAt) / 1000);
    } else if (this.previousToken.has(request)) {
      this.histograms.itl.observe(this.labels, Math.max(0, atMs - (this.previousToken.get(request) ?? atMs)) / 1000);
    }
    this.previousToken.set(request, atMs);
  }

  private readonly previousToken = new WeakMap<EngineRequest, number>();

  onFinish(request: EngineRequest, atMs: number): void {
    const reason = request.finishReason ?? 'abort';
    this.success.inc({ engine: '0', finished_reason: reason, model_name: this.labels.model_name });
    if (reason === 'abort') return;
    // A pooling request's prompt is counted when it ends (it has no first token).
    if (request.maxTokens === 0) this.countPrompt(request);
    const s = (ms: number): number => Math.max(0, ms) / 1000;
    const scheduled = request.scheduledAt ?? request.arrivedAt;
    const firstToken = request.firstTokenAt ?? atMs;
    this.histograms.e2e.observe(this.labels, s(atMs - request.arrivedAt));
    this.histograms.queue.observe(this.labels, s(scheduled - request.arrivedAt));
    this.histograms.inference.observe(this.labels, s(atMs - scheduled));
    this.histograms.prefill.observe(this.labels, s(firstToken - scheduled));
    this.histograms.decode.observe(this.labels, s(atMs - firstToken));
    this.histograms.timePerOutputToken.observe(
      this.labels,
      request.numOutput > 1 ? s(atMs - firstToken) / (request.numOutput - 1) : 0,
    );
    this.histograms.numPreemptions.observe(this.labels, request.numPreemptions);
    this.histograms.prefillKvComputed.observe(this.labels, request.numPromptTokens - Math.max(0, request.numCached));
    this.histograms.promptTokensRequest.observe(this.labels, request.numPromptTokens);
    this.histograms.generationTokensRequest.observe(this.labels, request.numOutput);
  }

  /**
   * The API request (with its n samples) has ended: its n, each sample's max_tokens (vLLM's
   * max_tokens_param, after the context cap), and the longest of its outputs.
   */
  onParentFinished(n: number, maxTokens: number[], outputs: number[]): void {
    this.histograms.paramsN.observe(this.labels, n);
    for (const m of maxTokens) this.histograms.paramsMaxTokens.observe(this.labels, m);
    this.histograms.maxNumGenerationTokens.observe(this.labels, Math.max(0, ...outputs));
  }
}

/** vLLM's vllm:cache_config_info labels (CacheConfig.metrics_info()), with the simulator's values. */
function cacheConfigLabels(
  cache: Pick<SchedulerConfig, 'blockSize' | 'numGpuBlocks' | 'enablePrefixCaching'>,
  maxModelLen: number,
): Record<string, string> {
  const py = (b: boolean): string => (b ? 'True' : 'False');
  const tokens = cache.numGpuBlocks * cache.blockSize;
  return {
    _block_size_resolved: 'True',
    block_size: String(cache.blockSize),
    cache_dtype: 'auto',
    cache_hit_alignment_tokens: 'None',
    effective_attention_block_size: String(cache.blockSize),
    enable_mamba_shared_prefix_checkpoint: 'False',
    enable_prefix_caching: py(cache.enablePrefixCaching),
    engine: '0',
    gpu_memory_utilization: '0.9',
    hash_block_size: 'None',
    is_attention_free: 'False',
    kv_cache_dtype_skip_layers: '[]',
    kv_cache_layout: 'None',
    kv_cache_max_concurrency: pyFloat(tokens / maxModelLen),
    kv_cache_memory_bytes: 'None',
    kv_cache_size_tokens: String(tokens),
    kv_offloading_backend: 'native',
    kv_offloading_size: 'None',
    kv_sharing_fast_prefill: 'False',
    mamba_block_size: 'None',
    mamba_cache_dtype: 'auto',
    mamba_cache_mode: 'none',
    mamba_page_size_padded: 'None',
    mamba_ssm_cache_dtype: 'auto',
    num_cpu_blocks: 'None',
    num_gpu_blocks: String(cache.numGpuBlocks),
    num_gpu_blocks_override: 'None',
    prefix_cache_retention_interval: '0',
    prefix_caching_hash_algo: 'sha256',
    prefix_match_unit: 'None',
    replayssm_buffer_len: '16',
    skip_page_size_padded: 'None',
    sliding_window: 'None',
    swa_bounded_replay: 'True',
    use_kda_recoverssm: 'False',
    use_replayssm: 'False',
    user_specified_block_size: 'False',
  };
}
