// The simulated GPU: vLLM's scheduler limits (scheduler.ts) and the time a step takes (engine.ts),
// with defaults calibrated to vLLM serving Llama-3.1-8B on one H100 (see simulator/README.md).
import { z } from 'zod';

import type { ConfigSettings } from '../lib/config.js';
import type { StepTiming } from './engine.js';
import type { SchedulerConfig, SchedulingPolicy } from './scheduler.js';

/**
 * Llama-3.1-8B (bf16) on one H100 80GB under vLLM's OpenAI server, vLLM's defaults for a GPU of 70 GiB
 * or more: max_num_seqs 1024, max_num_batched_tokens 8192, block_size 16, prefix caching on, fcfs.
 * KV cache: 0.9 × 80 GiB − 15 GiB of weights − about 3 GiB of activations and graphs ≈ 54 GiB; at 128 KiB per token
 * (32 layers × 8 KV heads × 128 dims × K and V × 2 bytes) that is 442,368 tokens = 27,648 blocks.
 * Step time: calibrated (simulator/calibrate.ts) to about 32 requests/s and 6.5k output tokens/s for
 * 1,000 ShareGPT-like prompts sent at once.
 */
export const H100_LLAMA_8B = {
  maxNumSeqs: 1024,
  maxNumBatchedTokens: 8192,
  blockSize: 16,
  numGpuBlocks: 27_648,
  stepBaseMs: 6,
  stepTokenMs: 0.05,
  enablePrefixCaching: true,
  schedulingPolicy: 'fcfs' as SchedulingPolicy,
} as const;

/**
 * What the simulator's options say about capacity; everything but the context length may be left out
 * (the H100 defaults above). Their types are the configuration's (SIM_*): maxModelLen is vLLM's
 * max_model_len, maxNumSeqs its max_num_seqs, maxNumBatchedTokens its max_num_batched_tokens, blockSize
 * its block_size (16 on a GPU, 128 in its CPU build), numGpuBlocks its num_gpu_blocks; a step takes
 * stepBaseMs + stepTokenMs × its tokens; schedulingPolicy is fcfs or priority (lower `priority` first).
 */
export type CapacityOptions = Pick<ConfigSettings['simulator'], 'maxModelLen'> &
  Partial<
    Pick<
      ConfigSettings['simulator'],
      | 'maxNumSeqs'
      | 'maxNumBatchedTokens'
      | 'blockSize'
      | 'numGpuBlocks'
      | 'stepBaseMs'
      | 'stepTokenMs'
      | 'enablePrefixCaching'
      | 'schedulingPolicy'
    >
  > &
  Partial<Pick<ConfigSettings['simulator'], 'tokenLatencyMs' | 'prefillTokensPerSec'>>;

export interface Capacity {
  scheduler: SchedulerConfig;
  timing: StepTiming;
}

export function resolveCapacity(o: CapacityOptions): Capacity {
  const d = H100_LLAMA_8B;
  const legacyTokenMs =
    o.prefillTokensPerSec === undefined ? undefined : o.prefillTokensPerSec > 0 ? 1000 / o.prefillTokensPerSec : 0;
  return {
    scheduler: {
      maxNumSeqs: o.maxNumSeqs ?? d.maxNumSeqs,
      maxNumBatchedTokens: o.maxNumBatchedTokens ?? d.maxNumBatchedTokens,
      blockSize: o.blockSize ?? d.blockSize,
      numGpuBlocks: o.numGpuBlocks ?? d.numGpuBlocks,
      maxModelLen: o.maxModelLen,
      enablePrefixCaching: o.enablePrefixCaching ?? d.enablePrefixCaching,
      policy: o.schedulingPolicy ?? d.schedulingPolicy,
    },
    timing: {
      stepBaseMs: o.stepBaseMs ?? o.tokenLatencyMs ?? d.stepBaseMs,
      stepTokenMs: o.stepTokenMs ?? legacyTokenMs ?? d.stepTokenMs,
    },
  };
}

/**
 * A change of capacity while the simulator runs (PUT /control/capacity): a GPU slowed down or shared,
 * a smaller max_num_seqs. Requests running stay; a lower max_num_seqs admits no more until fewer run.
 */
export const capacityChangeSchema = z
  .object({
    maxNumSeqs: z.number().int().min(1).optional(),
    stepBaseMs: z.number().min(0).optional(),
    stepTokenMs: z.number().min(0).optional(),
  })
  .strict();

export type CapacityChange = z.infer<typeof capacityChangeSchema>;

/** Applies a change to the running engine's scheduler and step timing; returns what is in force. */
export function changeCapacity(capacity: Capacity, change: CapacityChange): CapacityChange {
  if (change.maxNumSeqs !== undefined) capacity.scheduler.maxNumSeqs = change.maxNumSeqs;
  if (change.stepBaseMs !== undefined) capacity.timing.stepBaseMs = change.stepBaseMs;
  if (change.stepTokenMs !== undefined) capacity.timing.stepTokenMs = change.stepTokenMs;
  return capacityInForce(capacity);
}

export function capacityInForce(capacity: Capacity): Required<CapacityChange> {
  return {
    maxNumSeqs: capacity.scheduler.maxNumSeqs,
    stepBaseMs: capacity.timing.stepBaseMs,
    stepTokenMs: capacity.timing.stepTokenMs,
  };
}
