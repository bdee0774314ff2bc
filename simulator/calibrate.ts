// `npx tsx simulator/calibrate.ts [--base-ms N] [--token-ms N]`: runs the capacity model (no HTTP) on
// vLLM's serving benchmark as published for Llama-3.1-8B on one H100: 1,000 ShareGPT-like prompts all
// sent at once, and prints requests/s and output tokens/s next to the published ~32 req/s and ~6.5k
// tok/s. The defaults in capacity.ts are tuned so the two land close; simulator/README.md has the numbers.
import { parseArgs } from 'node:util';

import { isEntryPoint } from '../lib/entry.js';
import { H100_LLAMA_8B, resolveCapacity } from './capacity.js';
import { simulate, type StepTiming } from './engine.js';
import type { EngineRequestInput } from './scheduler.js';
import { prng } from './text.js';

export const PUBLISHED = { requestsPerSec: 32, outputTokensPerSec: 6500 } as const;

/**
 * Prompt and output lengths like benchmark_serving's ShareGPT sampling: log-normal lengths (ShareGPT's
 * are heavy-tailed) with the benchmark's filters applied by rejection: both at least 4 tokens, prompt at
 * most 1,024, prompt + output at most 2,048. Medians 155 (prompt) and 128 (output), σ 1.0 and 0.9, give
 * (seed 2024, 1,000 prompts) means of 214 and 200 tokens and a longest output of 1,654: ShareGPT's
 * figures with a Llama-3 tokenizer (about 215k input and 200k output tokens for 1,000 prompts).
 */
export function sharegptLikeLengths(count: number, seed = 2024): { prompt: number; output: number }[] {
  const random = prng(seed);
  const normal = (): number => {
    const u = Math.max(random(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
  const out: { prompt: number; output: number }[] = [];
  while (out.length < count) {
    const prompt = Math.round(155 * Math.exp(1.0 * normal()));
    const output = Math.round(128 * Math.exp(0.9 * normal()));
    if (prompt < 4 || output < 4 || prompt > 1024 || prompt + output > 2048) continue;
    out.push({ prompt, output });
  }
  return out;
}

export interface CalibrationResult {
  requests: number;
  meanPromptTokens: number;
  meanOutputTokens: number;
  durationS: number;
  requestsPerSec: number;
  outputTokensPerSec: number;
  steps: number;
  preemptions: number;
  /** Mean time to first token and mean inter-token latency, in ms. */
  meanTtftMs: number;
  meanItlMs: number;
  peakRunning: number;
  peakKvUsage: number;
}

export function runCalibration(
  timing: StepTiming = resolveCapacity({ maxModelLen: 8192 }).timing,
  count = 1000,
): CalibrationResult {
  const { scheduler } = resolveCapacity({ maxModelLen: 8192 });
  const lengths = sharegptLikeLengths(count);
  // Distinct prompts (ShareGPT's share no long prefixes), so prefix caching plays no part here.
  const inputs: EngineRequestInput[] = lengths.map(({ prompt, output }, r) => ({
    prompt: Array.from({ length: prompt }, (_, t) => `${r}:${t}`),
    maxTokens: output,
    finishReason: 'stop',
  }));
  let peakRunning = 0;
  let peakKvUsage = 0;
  const run = simulate(scheduler, timing, inputs, {
    onState: (s) => {
      peakRunning = Math.max(peakRunning, s.running.length);
      peakKvUsage = Math.max(peakKvUsage, s.kv.pool.usage);
    },
  });
  const outputTokens = lengths.reduce((s, l) => s + l.output, 0);
  const promptTokens = lengths.reduce((s, l) => s + l.prompt, 0);
  const durationS = run.durationMs / 1000;
  let ttft = 0;
  let itl = 0;
  let itlCount = 0;
  for (const r of run.requests) {
    ttft += (r.firstTokenAt ?? 0) - r.arrivedAt;
    if (r.numOutput > 1) {
      itl += (r.lastTokenAt ?? 0) - (r.firstTokenAt ?? 0);
      itlCount += r.numOutput - 1;
    }
  }
  return {
    requests: count,
    meanPromptTokens: promptTokens / count,
    meanOutputTokens: outputTokens / count,
    durationS,
    requestsPerSec: count / durationS,
    outputTokensPerSec: outputTokens / durationS,
    steps: run.steps,
    preemptions: run.scheduler.counters.preemptions,
    meanTtftMs: ttft / count,
    meanItlMs: itlCount > 0 ? itl / itlCount : 0,
    peakRunning,
    peakKvUsage,
  };
}

if (isEntryPoint(import.meta.url)) {
  const { values } = parseArgs({ options: { 'base-ms': { type: 'string' }, 'token-ms': { type: 'string' } } });
  const timing: StepTiming = {
    stepBaseMs: values['base-ms'] === undefined ? H100_LLAMA_8B.stepBaseMs : Number(values['base-ms']),
    stepTokenMs: values['token-ms'] === undefined ? H100_LLAMA_8B.stepTokenMs : Number(values['token-ms']),
  };
  const started = performance.now();
  const r = runCalibration(timing);
  const pct = (x: number, y: number): string => `${x >= y ? '+' : ''}${(((x - y) / y) * 100).toFixed(1)}%`;
  console.log(`step time = ${timing.stepBaseMs} ms + ${timing.stepTokenMs} ms × tokens in the step`);
  console.log(
    `${r.requests} prompts at once, mean ${r.meanPromptTokens.toFixed(0)} prompt / ${r.meanOutputTokens.toFixed(0)} output tokens`,
  );
  console.log(
    `simulated ${r.durationS.toFixed(2)} s in ${r.steps} steps (${((performance.now() - started) / 1000).toFixed(2)} s of CPU)`,
  );
  console.log(
    `requests/s      ${r.requestsPerSec.toFixed(2)}  (published ${PUBLISHED.requestsPerSec}, ${pct(r.requestsPerSec, PUBLISHED.requestsPerSec)})`,
  );
  console.log(
    `output tokens/s ${r.outputTokensPerSec.toFixed(0)}  (published ${PUBLISHED.outputTokensPerSec}, ${pct(r.outputTokensPerSec, PUBLISHED.outputTokensPerSec)})`,
  );
  console.log(
    `mean TTFT ${r.meanTtftMs.toFixed(0)} ms, mean ITL ${r.meanItlMs.toFixed(1)} ms, peak running ${r.peakRunning}, peak KV usage ${(r.peakKvUsage * 100).toFixed(1)}%, preemptions ${r.preemptions}`,
  );
}
