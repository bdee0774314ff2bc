// The simulator's capacity model is vLLM's v1 scheduler: one token budget per step, KV blocks,
// preemption with recompute, prefix caching, a waiting queue, and step time growing with the batch.
import { afterEach, describe, expect, it } from 'vitest';

import { loadConfig } from '../../lib/config.js';
import { PUBLISHED, runCalibration } from '../../simulator/calibrate.js';
import { H100_LLAMA_8B, resolveCapacity } from '../../simulator/capacity.js';
import { simulate, stepMs, type StepTiming } from '../../simulator/engine.js';
import { simulatorOptions } from '../../simulator/main.js';
import {
  Scheduler,
  type EngineRequest,
  type EngineRequestInput,
  type SchedulerConfig,
} from '../../simulator/scheduler.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { startTestSimulator } from '../support/simulator.js';

const config = (over: Partial<SchedulerConfig> = {}): SchedulerConfig => ({
  maxNumSeqs: 64,
  maxNumBatchedTokens: 8192,
  blockSize: 16,
  numGpuBlocks: 1000,
  maxModelLen: 2048,
  enablePrefixCaching: true,
  policy: 'fcfs',
  ...over,
});
const prompt = (tag: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${tag}${i}`);
const input = (
  tag: string,
  promptTokens: number,
  maxTokens: number,
  extra: Partial<EngineRequestInput> = {},
): EngineRequestInput => ({
  prompt: prompt(tag, promptTokens),
  maxTokens,
  ...extra,
});

/** Runs the scheduler step by step in simulated time, recording what each step did. */
function steps(
  cfg: SchedulerConfig,
  inputs: EngineRequestInput[],
  timing: StepTiming = { stepBaseMs: 1, stepTokenMs: 0 },
) {
  const record: { tokens: number; running: number; waiting: number; usage: number; preempted: EngineRequest[] }[] = [];
  const finished: EngineRequest[] = [];
  let scheduler: Scheduler | undefined;
  const run = simulate(cfg, timing, inputs, {
    onState: (s) => {
      scheduler = s;
    },
    onStep: (plan) => {
      record.push({
        tokens: plan.tokens,
        running: scheduler?.running.length ?? 0,
        waiting: scheduler?.numWaiting ?? 0,
        usage: scheduler?.kv.pool.usage ?? 0,
        preempted: plan.preempted,
      });
    },
    onFinish: (r) => {
      finished.push(r);
    },
  });
  return { run, record, finished };
}

describe('simulator scheduler (vLLM v1)', () => {
  it('keeps every step within the token budget, cutting long prompts into chunks', () => {
    const { run, record } = steps(config({ maxNumBatchedTokens: 64 }), [
      input('a', 100, 3),
      input('b', 100, 3),
      input('c', 30, 3),
    ]);
    expect(Math.max(...record.map((r) => r.tokens))).toBeLessThanOrEqual(64);
    // 230 prompt tokens need at least four steps of 64 before the last prompt's first token.
    const [a, b, c] = run.requests;
    expect(a?.firstTokenAt).toBe(2); // 64 + 36: a's prompt spans two steps
    expect(c?.firstTokenAt).toBeGreaterThanOrEqual(4);
    expect(run.requests.every((r) => r.numOutput === 3 && r.finishReason === 'stop')).toBe(true);
    expect(b?.numCached).toBe(0);
    expect(run.scheduler.counters.computedPrefillTokens).toBe(230);
  });

  it('caps running sequences by free KV blocks, not only by max_num_seqs', () => {
    // 8 usable blocks; each request holds 3 blocks (40 prompt tokens) once admitted, so two run at once.
    const { run, record } = steps(
      config({ numGpuBlocks: 9, maxModelLen: 128 }),
      Array.from({ length: 6 }, (_, i) => input(`r${i}-`, 40, 4)),
    );
    expect(Math.max(...record.map((r) => r.running))).toBe(2);
    expect(record.some((r) => r.waiting > 0)).toBe(true);
    expect(Math.max(...record.map((r) => r.usage))).toBeLessThanOrEqual(1);
    expect(run.requests.every((r) => r.numOutput === 4)).toBe(true);
    expect(run.scheduler.kv.pool.usage).toBe(0);
  });

  it('preempts the newest running request when KV runs out; it is recomputed and still completes', () => {
    // Two requests of 16 + 60 tokens need 5 blocks each; 8 usable blocks cannot hold both to the end.
    const { run, record, finished } = steps(config({ numGpuBlocks: 9, maxModelLen: 128 }), [
      input('old', 16, 60),
      input('new', 16, 60),
    ]);
    const [first, second] = run.requests;
    const preempted = record.flatMap((r) => r.preempted);
    expect(preempted.length).toBeGreaterThan(0);
    expect(preempted[0]).toBe(second);
    expect(second?.numPreemptions).toBeGreaterThan(0);
    expect(first?.numPreemptions).toBe(0);
    expect(finished).toEqual([first, second]);
    expect(second?.numOutput).toBe(60);
    // Recompute: the preempted request's tokens were computed again.
    expect(run.scheduler.counters.computedPrefillTokens).toBeGreaterThan(32);
    expect(run.scheduler.counters.preemptions).toBe(preempted.length);
  });

  it('with the priority policy, serves lower priority values first and preempts the highest', () => {
    const inputs = [
      input('a', 16, 4, { priority: 5 }),
      input('b', 16, 4, { priority: 1 }),
      input('c', 16, 4, { priority: 0 }),
    ];
    const order = (policy: 'fcfs' | 'priority'): string[] =>
      steps(config({ maxNumSeqs: 1, policy }), inputs).finished.map((r) => r.prompt[0] ?? '');
    expect(order('fcfs')).toEqual(['a0', 'b0', 'c0']);
    expect(order('priority')).toEqual(['c0', 'b0', 'a0']);
  });

  it('shares the blocks of a common prefix: n samples and repeated prompts hit the prefix cache', () => {
    const scheduler = new Scheduler(config({ numGpuBlocks: 101, maxModelLen: 1024 }));
    const samples = Array.from({ length: 4 }, (_, i) => scheduler.create(input('p', 64, 8, { outputSeed: i })));
    for (const r of samples) scheduler.add(r, 0);
    const plan = scheduler.schedule(0);
    expect(plan.admitted).toHaveLength(4);
    // The first sample allocates the prompt's 4 blocks; the others find 3 of them (the last token is always
    // recomputed) and take one block each: 7 blocks instead of 16.
    expect(scheduler.kv.pool.usage).toBeCloseTo(7 / 100);
    expect(samples.map((r) => r.numCached)).toEqual([0, 48, 48, 48]);
    expect(plan.tokens).toBe(64 + 3 * 16);
    expect(scheduler.counters.prefixHits).toBe(3 * 48);
    expect(scheduler.counters.prefixQueries).toBe(4 * 64);
  });

  it('evicts the least recently freed cached blocks first', () => {
    // 12 usable blocks: three prompts of 4 blocks each fill the cache; a fourth must evict the oldest.
    const cfg = config({ numGpuBlocks: 13, maxModelLen: 128, maxNumSeqs: 1 });
    const scheduler = new Scheduler(cfg);
    const runOne = (tag: string): EngineRequest => {
      const r = scheduler.create(input(tag, 64, 1));
      scheduler.add(r, 0);
      while (scheduler.hasWork) scheduler.update(scheduler.schedule(0), 0);
      return r;
    };
    runOne('a');
    runOne('b');
    runOne('c');
    runOne('d'); // evicts a's blocks (freed first), not b's or c's
    expect(runOne('b').numCached).toBe(48);
    expect(runOne('a').numCached).toBe(0);
    expect(scheduler.kv.pool.numCached).toBeLessThanOrEqual(12);
  });

  it('makes a decode step take longer the more sequences it carries', () => {
    const timing: StepTiming = { stepBaseMs: 5, stepTokenMs: 0.1 };
    expect(stepMs(timing, 1)).toBeCloseTo(5.1);
    expect(stepMs(timing, 256)).toBeCloseTo(30.6);
    expect(stepMs(timing, 0)).toBe(0);
    const itl = (batch: number): number => {
      const { run } = steps(
        config(),
        Array.from({ length: batch }, (_, i) => input(`q${i}-`, 8, 50)),
        timing,
      );
      const r = run.requests[0];
      return ((r?.lastTokenAt ?? 0) - (r?.firstTokenAt ?? 0)) / 49;
    };
    expect(itl(1)).toBeCloseTo(5.1);
    expect(itl(64)).toBeCloseTo(5 + 0.1 * 64);
  });

  it("frees an aborted request's blocks and takes it out of the queue", () => {
    const scheduler = new Scheduler(config({ maxNumSeqs: 1 }));
    const [a, b, c] = ['a', 'b', 'c'].map((t) => scheduler.create(input(t, 40, 100)));
    for (const r of [a, b, c]) if (r !== undefined) scheduler.add(r, 0);
    scheduler.update(scheduler.schedule(0), 1);
    expect(scheduler.kv.pool.usage).toBeGreaterThan(0);
    expect(scheduler.abort(a!, 2)).toBe(true);
    expect(scheduler.abort(c!, 2)).toBe(true);
    expect(scheduler.kv.pool.usage).toBe(0);
    expect(scheduler.numWaiting).toBe(1);
    expect(scheduler.schedule(3).admitted).toEqual([b]);
    expect(a?.finishReason).toBe('abort');
  });

  it('refuses to start when one max_model_len sequence cannot fit in the KV cache, as vLLM does', () => {
    expect(() => new Scheduler(config({ numGpuBlocks: 10, maxModelLen: 2048 }))).toThrow(
      /cannot hold one sequence of max_model_len 2048/,
    );
  });
});

describe('simulator capacity options', () => {
  it('defaults to the calibrated H100 figures, in the configuration and without it', () => {
    const sim = loadConfig({}).simulator;
    expect(sim).toMatchObject({
      maxNumSeqs: H100_LLAMA_8B.maxNumSeqs,
      maxNumBatchedTokens: H100_LLAMA_8B.maxNumBatchedTokens,
      blockSize: H100_LLAMA_8B.blockSize,
      numGpuBlocks: H100_LLAMA_8B.numGpuBlocks,
      stepBaseMs: H100_LLAMA_8B.stepBaseMs,
      stepTokenMs: H100_LLAMA_8B.stepTokenMs,
      enablePrefixCaching: true,
      enablePromptTokensDetails: false,
      schedulingPolicy: 'fcfs',
    });
    expect(resolveCapacity({ maxModelLen: 4096 }).timing).toEqual({
      stepBaseMs: H100_LLAMA_8B.stepBaseMs,
      stepTokenMs: H100_LLAMA_8B.stepTokenMs,
    });
  });

  it('still takes the old knobs: token latency is the step base, a prefill rate the per-token cost', () => {
    expect(resolveCapacity({ maxModelLen: 64, tokenLatencyMs: 20, prefillTokensPerSec: 0 }).timing).toEqual({
      stepBaseMs: 20,
      stepTokenMs: 0,
    });
    expect(
      resolveCapacity({ maxModelLen: 64, tokenLatencyMs: 20, prefillTokensPerSec: 10_000, stepBaseMs: 3 }).timing,
    ).toEqual({ stepBaseMs: 3, stepTokenMs: 0.1 });
    expect(loadConfig({ SIM_TOKEN_LATENCY_MS: '20', SIM_PREFILL_TOKENS_PER_SEC: '0' }).simulator).toMatchObject({
      stepBaseMs: 20,
      stepTokenMs: 0,
    });
    expect(
      loadConfig({ SIM_TOKEN_LATENCY_MS: '20', SIM_STEP_BASE_MS: '7', SIM_STEP_TOKEN_MS: '0.2' }).simulator,
    ).toMatchObject({ stepBaseMs: 7, stepTokenMs: 0.2 });
    const { options } = simulatorOptions(loadConfig({}).simulator, [
      '--token-latency-ms',
      '2',
      '--prefill-tokens-per-sec',
      '1000',
      '--enable-prompt-tokens-details',
      '--scheduling-policy',
      'priority',
      '--no-enable-prefix-caching',
      '--num-gpu-blocks-override',
      '600',
    ]);
    expect(options).toMatchObject({
      stepBaseMs: 2,
      stepTokenMs: 1,
      enablePromptTokensDetails: true,
      schedulingPolicy: 'priority',
      enablePrefixCaching: false,
      numGpuBlocks: 600,
    });
    expect(() => simulatorOptions(loadConfig({}).simulator, ['--scheduling-policy', 'lifo'])).toThrow(
      /fcfs or priority/,
    );
  });
});

describe('simulator capacity over HTTP', () => {
  const sims: RunningSimulator[] = [];
  afterEach(async () => {
    await Promise.all(sims.splice(0).map((s) => s.close()));
  });
  async function sim(options: Parameters<typeof startTestSimulator>[0] = {}): Promise<RunningSimulator> {
    const s = await startTestSimulator(options);
    sims.push(s);
    return s;
  }
  const post = (s: RunningSimulator, path: string, body: unknown, init: RequestInit = {}): Promise<Response> =>
    fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...init,
    });
  const until = async (condition: () => boolean, ms = 5000): Promise<void> => {
    const deadline = performance.now() + ms;
    while (!condition()) {
      if (performance.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  // About 1,000 tokens of varied text (4 characters a token).
  const longText = Array.from({ length: 800 }, (_, i) => `w${i}`).join(' ');

  it('reports cached tokens (whole blocks) for a repeated long prompt, with --enable-prompt-tokens-details, and runs it faster', async () => {
    const s = await sim({
      enablePromptTokensDetails: true,
      stepBaseMs: 1,
      stepTokenMs: 0.5,
      prefillMs: 0,
      outputTokens: { min: 1, max: 1 },
    });
    const timed = async (suffix: string): Promise<{ ms: number; usage: any }> => {
      const started = performance.now();
      const res = (await (
        await post(s, '/v1/completions', { model: 'sim-test', prompt: `${longText}${suffix}`, max_tokens: 1 })
      ).json()) as any;
      return { ms: performance.now() - started, usage: res.usage };
    };
    const first = await timed(' first');
    const second = await timed(' second, a different ending');
    // With the flag the details are always there; completions leave created_cache_tokens null, as vLLM's do.
    expect(first.usage.prompt_tokens_details).toEqual({
      cached_tokens: 0,
      created_cache_tokens: null,
      multimodal_tokens: null,
    });
    const cached = second.usage.prompt_tokens_details.cached_tokens as number;
    expect(cached % 16).toBe(0);
    expect(cached).toBeGreaterThan(900);
    expect(cached).toBeLessThan(second.usage.prompt_tokens as number);
    // ~1,000 prompt tokens at 0.5 ms each take about 500 ms; the cached prompt computes a few dozen (~10 ms).
    expect(first.ms).toBeGreaterThan(450);
    expect(second.ms).toBeLessThan(first.ms / 2);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(
      new RegExp(`vllm:prefix_cache_hits_total\\{engine="0",model_name="sim-test"\\} ${cached}\\b`),
    );
  });

  it("forgets its prefix cache on POST /reset_prefix_cache in dev mode (vLLM's VLLM_SERVER_DEV_MODE), but not while a request holds blocks", async () => {
    const s = await sim({
      enablePromptTokensDetails: true,
      serverDevMode: true,
      stepBaseMs: 1,
      stepTokenMs: 0,
      prefillMs: 0,
      outputTokens: { min: 1, max: 1 },
    });
    const cachedTokens = async (suffix: string): Promise<number> => {
      const res = (await (
        await post(s, '/v1/completions', { model: 'sim-test', prompt: `${longText}${suffix}`, max_tokens: 1 })
      ).json()) as { usage: { prompt_tokens_details: { cached_tokens: number } } };
      return res.usage.prompt_tokens_details.cached_tokens;
    };
    const reset = async (): Promise<unknown> => (await post(s, '/reset_prefix_cache', {})).json();
    expect(await cachedTokens(' one')).toBe(0);
    expect(await cachedTokens(' two')).toBeGreaterThan(900);
    // A long answer in flight holds its blocks: vLLM refuses the reset then ({"success": false}).
    const running = post(s, '/v1/completions', {
      model: 'sim-test',
      prompt: `${longText} three`,
      max_tokens: 400,
      ignore_eos: true,
    });
    await until(() => s.state.engine.scheduler.running.length === 1);
    expect(await reset()).toEqual({ success: false });
    await running;
    expect(await cachedTokens(' four')).toBeGreaterThan(900);
    expect(await reset()).toEqual({ success: true });
    expect(await cachedTokens(' five')).toBe(0);
    // Without dev mode the route is not there, as in vLLM.
    const plain = await sim({ outputTokens: { min: 1, max: 1 } });
    expect((await post(plain, '/reset_prefix_cache', {})).status).toBe(404);
  });

  it('reports the full prompt blocks a chat wrote to the cache (created_cache_tokens), then finds them (cached_tokens)', async () => {
    const s = await sim({
      enablePromptTokensDetails: true,
      blockSize: 128,
      numGpuBlocks: 512,
      outputTokens: { min: 1, max: 1 },
    });
    // 4,000 characters: 1,000 tokens of content, 1,010 with the chat template, 7 full blocks of 128.
    const body = { model: 'sim-test', messages: [{ role: 'user', content: 'abcd'.repeat(1000) }], max_tokens: 1 };
    const first = (await (await post(s, '/v1/chat/completions', body)).json()) as any;
    const second = (await (await post(s, '/v1/chat/completions', body)).json()) as any;
    expect(first.usage).toMatchObject({
      prompt_tokens: 1010,
      prompt_tokens_details: { cached_tokens: 0, created_cache_tokens: 896, multimodal_tokens: null },
    });
    expect(second.usage.prompt_tokens_details).toEqual({
      cached_tokens: 896,
      created_cache_tokens: 0,
      multimodal_tokens: null,
    });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain(
      'vllm:prompt_tokens_by_source_total{engine="0",model_name="sim-test",source="local_cache_hit"} 896',
    );
    expect(metrics).toContain(
      'vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="sim-test",source="device"} 896',
    );
    expect(metrics).toMatch(/vllm:cache_config_info\{[^}]*block_size="128"[^}]*\} 1/);
  });

  it('leaves prompt_tokens_details null without the flag, like vLLM', async () => {
    const s = await sim({ outputTokens: { min: 1, max: 1 } });
    await post(s, '/v1/completions', { model: 'sim-test', prompt: longText, max_tokens: 1 });
    const res = (await (
      await post(s, '/v1/completions', { model: 'sim-test', prompt: longText, max_tokens: 1 })
    ).json()) as any;
    expect(res.usage.prompt_tokens_details).toBeNull();
  });

  it("has vLLM's metrics from start-up and shows the waiting queue", async () => {
    const s = await sim({ maxNumSeqs: 2, stepBaseMs: 20, outputTokens: { min: 10, max: 10 } });
    const scrape = async (): Promise<string> => (await fetch(`${s.url}/metrics`)).text();
    const idle = await scrape();
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:prefix_cache_queries_total',
      'vllm:prefix_cache_hits_total',
      'vllm:num_preemptions_total',
      'vllm:prompt_tokens_total',
      'vllm:generation_tokens_total',
    ]) {
      expect(idle).toContain(`${name}{engine="0",model_name="sim-test"} 0`);
    }
    expect(idle).toContain('vllm:request_success_total{engine="0",finished_reason="stop",model_name="sim-test"} 0');
    for (const name of [
      'time_to_first_token_seconds',
      'inter_token_latency_seconds',
      'request_queue_time_seconds',
      'e2e_request_latency_seconds',
    ]) {
      expect(idle).toContain(`vllm:${name}_count{engine="0",model_name="sim-test"} 0`);
    }
    expect(idle).toContain('sim_faults_injected_total');

    const answers = Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        post(s, '/v1/chat/completions', { model: 'sim-test', messages: [{ role: 'user', content: `q${i}` }] }),
      ),
    );
    // Requests join at step boundaries (20 ms here), as in vLLM.
    await until(() => s.state.snapshot().running === 2 && s.state.snapshot().waiting === 4);
    const busy = await scrape();
    expect(busy).toContain('vllm:num_requests_running{engine="0",model_name="sim-test"} 2');
    expect(busy).toContain('vllm:num_requests_waiting{engine="0",model_name="sim-test"} 4');
    expect(s.state.snapshot()).toMatchObject({ running: 2, waiting: 4 });
    await answers;
    const done = await scrape();
    expect(done).toContain('vllm:request_success_total{engine="0",finished_reason="stop",model_name="sim-test"} 6');
    expect(done).toContain('vllm:generation_tokens_total{engine="0",model_name="sim-test"} 60');
    expect(done).toContain('vllm:num_requests_waiting{engine="0",model_name="sim-test"} 0');
    expect(done).toMatch(/vllm:request_queue_time_seconds_count\{engine="0",model_name="sim-test"\} 6/);
    expect(done).toMatch(/vllm:inter_token_latency_seconds_count\{engine="0",model_name="sim-test"\} 54/);
  });

  it('runs n samples as sequences of their own', async () => {
    const s = await sim({ maxNumSeqs: 8, stepBaseMs: 1, outputTokens: { min: 5, max: 5 } });
    const res = (await (
      await post(s, '/v1/chat/completions', { model: 'sim-test', messages: [{ role: 'user', content: 'x' }], n: 3 })
    ).json()) as any;
    expect(res.choices).toHaveLength(3);
    expect(s.state.snapshot().maxRunning).toBe(3);
  });

  it('frees the blocks of a request whose client went away, so a waiting one runs', async () => {
    const s = await sim({ maxNumSeqs: 1, stepBaseMs: 10, outputTokens: { min: 1000, max: 1000 } });
    const gone = post(
      s,
      '/v1/chat/completions',
      { model: 'sim-test', messages: [{ role: 'user', content: longText }] },
      { signal: AbortSignal.timeout(150) },
    );
    gone.catch(() => undefined);
    await until(() => s.state.snapshot().running === 1);
    const next = post(s, '/v1/chat/completions', {
      model: 'sim-test',
      messages: [{ role: 'user', content: 'short' }],
      max_tokens: 2,
    });
    await new Promise((r) => setTimeout(r, 40));
    expect(s.state.snapshot()).toMatchObject({ running: 1, waiting: 1 });
    expect(s.state.engine.scheduler.kv.pool.usage).toBeGreaterThan(0);
    await expect(gone).rejects.toThrow();
    expect((await next).status).toBe(200);
    expect(s.state.snapshot()).toMatchObject({ running: 0, waiting: 0, aborted: 1 });
    expect(s.state.engine.scheduler.kv.pool.usage).toBe(0);
  });

  it('with zero-cost steps answers at once and sets no timer when idle (no spinning)', async () => {
    const s = await sim({ stepBaseMs: 0, stepTokenMs: 0, prefillMs: 0, outputTokens: { min: 200, max: 200 } });
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        post(s, '/v1/completions', { model: 'sim-test', prompt: `p${i}`, max_tokens: 200 }),
      ),
    );
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(s.state.engine.busy).toBe(false);
    const cpu = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 200));
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1000).toBeLessThan(50);
  });

  it('refuses to start when the KV cache is smaller than one max_model_len sequence', async () => {
    await expect(sim({ numGpuBlocks: 10, maxModelLen: 4096 })).rejects.toThrow(/KV cache/);
  });
});

// Last: it allocates a few hundred thousand tokens' worth of strings, and the collector should not pause the timed tests.
describe('simulator calibration', () => {
  it(`stays calibrated to vLLM on an H100 with Llama-3.1-8B (±15% of ${PUBLISHED.requestsPerSec} req/s, ${PUBLISHED.outputTokensPerSec} tok/s)`, () => {
    const r = runCalibration();
    expect(r.meanPromptTokens).toBeGreaterThan(190);
    expect(r.meanOutputTokens).toBeGreaterThan(180);
    expect(Math.abs(r.requestsPerSec / PUBLISHED.requestsPerSec - 1)).toBeLessThan(0.15);
    expect(Math.abs(r.outputTokensPerSec / PUBLISHED.outputTokensPerSec - 1)).toBeLessThan(0.15);
  });
});
