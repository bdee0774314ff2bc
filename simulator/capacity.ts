// vLLM's capacity, reduced to what a client can observe: at most maxNumSeqs sequences run at once,
// the rest wait in arrival order, and a sequence takes prefill time plus one step per output token.
import { Semaphore, type Release } from '../lib/semaphore.js';

export interface CapacityOptions {
  maxNumSeqs: number;
  prefillTokensPerSec: number;
  prefillMs: number;
  tokenLatencyMs: number;
}

export class CapacityModel {
  private readonly slots: Semaphore;

  constructor(private readonly options: CapacityOptions) {
    this.slots = new Semaphore(options.maxNumSeqs);
  }

  get running(): number {
    return this.slots.inUse;
  }

  get queued(): number {
    return this.slots.queued;
  }

  /** Milliseconds a sequence needs once scheduled. */
  serviceTimeMs(promptTokens: number, outputTokens: number): number {
    const { prefillTokensPerSec, prefillMs, tokenLatencyMs } = this.options;
    const prefill = prefillMs + (prefillTokensPerSec > 0 ? (promptTokens / prefillTokensPerSec) * 1000 : 0);
    return prefill + outputTokens * tokenLatencyMs;
  }

  prefillTimeMs(promptTokens: number): number {
    return this.serviceTimeMs(promptTokens, 0);
  }

  /** Waits for a free sequence slot; returns the function that frees it. */
  acquire(signal?: AbortSignal): Promise<Release> {
    return this.slots.acquire(signal);
  }
}
