import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { histogramTotals, sampleMax, sampleSum } from '../../lib/prometheus-text.js';

// Shaped as vLLM 0.32 writes its /metrics (prometheus_client's text format).
const VLLM = `# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 12.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B"} 3.0
# HELP vllm:num_requests_waiting_by_reason Number of requests waiting, by reason.
vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 99.0
vllm:kv_cache_usage_perc{engine="0",model_name="a \\"quoted} name\\" with spaces"} 0.875
vllm:num_preemptions_total{engine="0",model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5e+01
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 30.0
plain_metric 7 1700000000000
broken_metric{engine="0"} not-a-number
nan_metric NaN
`;

describe('histogramTotals', () => {
  it("reads a histogram's sum and count, and nothing for a histogram the engine does not export", () => {
    expect(histogramTotals(VLLM, 'vllm:time_to_first_token_seconds')).toEqual({ sum: 15, count: 30 });
    expect(histogramTotals(VLLM, 'vllm:inter_token_latency_seconds')).toBeUndefined();
  });
});

describe('sampleSum', () => {
  it("sums a metric's samples over its label sets, and nothing that only starts with its name", () => {
    expect(sampleSum(VLLM, 'vllm:num_requests_waiting')).toBe(15);
    expect(sampleSum(VLLM, 'vllm:num_requests_waiting_by_reason')).toBe(99);
    expect(sampleSum(VLLM, 'vllm:num_preemptions_total')).toBe(4);
    expect(sampleSum(VLLM, 'vllm:time_to_first_token_seconds_sum')).toBe(15);
  });

  it('takes a per-engine ratio at its largest, not summed', () => {
    const twoEngines = 'vllm:kv_cache_usage_perc{engine="0"} 0.5\nvllm:kv_cache_usage_perc{engine="1"} 0.75\n';
    expect(sampleMax(twoEngines, 'vllm:kv_cache_usage_perc')).toBe(0.75);
    expect(sampleMax(twoEngines, 'vllm:num_requests_waiting')).toBeUndefined();
  });

  it('reads label values holding quotes, braces and spaces, and a trailing timestamp', () => {
    expect(sampleSum(VLLM, 'vllm:kv_cache_usage_perc')).toBe(0.875);
    expect(sampleSum(VLLM, 'plain_metric')).toBe(7);
  });

  it('tells a metric that is absent or unreadable from a zero', () => {
    expect(sampleSum(VLLM, 'vllm:num_requests_running')).toBeUndefined();
    expect(sampleSum(VLLM, 'broken_metric')).toBeUndefined();
    expect(sampleSum(VLLM, 'nan_metric')).toBeUndefined();
    expect(sampleSum('', 'x')).toBeUndefined();
  });

  it('gives a finite number or undefined for any text, never a throw (fuzzed)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary' }),
        fc.constantFrom('x', 'vllm:num_requests_waiting', '{', ' '),
        (text, name) => {
          const value = sampleSum(text, name);
          expect(value === undefined || Number.isFinite(value)).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('finds every sample of a well-formed exposition, whatever its label values (fuzzed)', () => {
    const labelValue = fc
      .string({ unit: 'binary' })
      .map((v) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n'));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(labelValue, fc.integer({ min: -1e6, max: 1e6 })), { minLength: 1, maxLength: 8 }),
        (samples) => {
          const text = samples.map(([label, value]) => `m{model_name="${label}"} ${value}`).join('\n');
          expect(sampleSum(text, 'm')).toBe(samples.reduce((sum, [, v]) => sum + v, 0));
        },
      ),
      { numRuns: 500 },
    );
  });
});
