// A GPU worker's in-flight limit, steered by its engine (additive increase, multiplicative decrease).
// The engine is the authority on its own load: requests past what it runs only wait in its queue
// (adding latency, and timeouts, for nothing), preemptions recompute work already done, and an engine
// shared with online users shows their time to first token rising before they complain. So the
// limit grows slowly while the engine takes more, and drops at once when it says it cannot.

export interface AdaptiveLimitOptions {
  /** The limit never goes below this (a worker always keeps some requests at its engine). */
  floor: number;
  /** Nor above this (GPU_MAX_INFLIGHT). It starts here: an engine that takes everything loses nothing. */
  ceiling: number;
  /** Requests added per reading while the engine takes more. */
  increase: number;
  /** The factor a limit is cut by on rate limits, unavailability, timeouts, preemptions and slow first tokens. */
  decrease: number;
  /** Requests waiting in the engine's queue that are tolerated (a step's arrivals wait for the next step). */
  maxWaiting: number;
  /** KV cache use (0–1) from which the limit no longer grows: more sequences would be preempted. */
  maxKvUsage: number;
  /** The engine's mean time to first token, ms, above which the limit is cut (its online users' target); none: not steered by it. */
  ttftTargetMs: number | undefined;
  /** After a cut by the factor, this long without another such cut or any growth: a cut takes a while to show at the engine. */
  holdMs: number;
}

/** One reading of the engine's own metrics; a figure it does not export is undefined. */
export interface EngineLoad {
  /** vllm:num_requests_waiting: requests in its queue (everyone's, not only this worker's). */
  waiting: number | undefined;
  /** vllm:kv_cache_usage_perc (0–1). */
  kvUsage: number | undefined;
  /** vllm:num_preemptions_total (a counter). */
  preemptions: number | undefined;
  /** vllm:time_to_first_token_seconds' sum and count (a histogram, counters). */
  ttftSeconds: { sum: number; count: number } | undefined;
}

/** Why the limit moved; the label of the metric that counts the moves. */
export type LimitChange =
  'rate_limited' | 'unavailable' | 'timeout' | 'preemption' | 'queue' | 'slow_first_token' | 'increase';

/** What an engine's answer to one request says about its load. */
export type Overload = Extract<LimitChange, 'rate_limited' | 'unavailable' | 'timeout'>;

/** No reading at all (the engine's /metrics failed): only the answers' signals, and the hold, apply. */
export const NO_READING: EngineLoad = {
  waiting: undefined,
  kvUsage: undefined,
  preemptions: undefined,
  ttftSeconds: undefined,
};

export class AdaptiveLimit {
  private value: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private previous: EngineLoad | undefined;

  constructor(
    private readonly options: AdaptiveLimitOptions,
    /** Told of every move: the new limit and why. */
    private readonly onChange: (limit: number, why: LimitChange) => void = () => undefined,
  ) {
    if (!(options.floor >= 1 && options.floor <= options.ceiling))
      throw new Error(`the in-flight floor (${options.floor}) must be between 1 and the ceiling (${options.ceiling})`);
    this.value = options.ceiling;
  }

  get limit(): number {
    return this.value;
  }

  /** An answer that says the engine is overloaded (429, 503, a timeout): cut, once per hold. */
  overloaded(why: Overload, now = Date.now()): void {
    this.cut(why, now);
  }

  /**
   * A reading of the engine's metrics, with the requests this worker has at the engine now. The
   * counters are compared with the previous reading (an engine restarted resets them: not a signal).
   */
  observe(load: EngineLoad, inFlight: number, now = Date.now()): void {
    const before = this.previous;
    this.previous = load;
    const preempted =
      before?.preemptions !== undefined && load.preemptions !== undefined && load.preemptions > before.preemptions;
    if (preempted) {
      this.cut('preemption', now);
      return;
    }
    const { ttftTargetMs, maxWaiting } = this.options;
    if (ttftTargetMs !== undefined && before?.ttftSeconds !== undefined && load.ttftSeconds !== undefined) {
      const count = load.ttftSeconds.count - before.ttftSeconds.count;
      const sum = load.ttftSeconds.sum - before.ttftSeconds.sum;
      if (count > 0 && sum >= 0 && (sum / count) * 1000 > ttftTargetMs) {
        this.cut('slow_first_token', now);
        return;
      }
    }
    // Two readings in a row: requests that have just arrived wait for the engine's next step, and a
    // chunk's first burst of them is no sign of a full engine.
    const waiting = Math.min(load.waiting ?? 0, before?.waiting ?? 0);
    if (waiting > maxWaiting) {
      // What waits is what the engine cannot run: the limit becomes what it does run of ours (all of
      // the queue counted as ours, so an engine queueing others' requests gets fewer of ours).
      // Exact rather than a factor, so a full engine stays full instead of see-sawing below it.
      const runs = Math.max(this.options.floor, Math.floor(inFlight - waiting + maxWaiting));
      if (runs < this.value) this.set(runs, 'queue');
      return;
    }
    if (now - this.lastCut < this.options.holdMs) return;
    if (load.kvUsage !== undefined && load.kvUsage >= this.options.maxKvUsage) return;
    // Grow only a limit in use: a worker with little to send proves nothing about the engine.
    if (inFlight + this.options.increase >= this.value)
      this.set(Math.min(this.options.ceiling, this.value + this.options.increase), 'increase');
  }

  private cut(why: LimitChange, now: number): void {
    if (now - this.lastCut < this.options.holdMs) return;
    this.lastCut = now;
    this.set(Math.max(this.options.floor, Math.floor(this.value * this.options.decrease)), why);
  }

  private set(limit: number, why: LimitChange): void {
    if (limit === this.value) return;
    this.value = limit;
    this.onChange(limit, why);
  }
}
