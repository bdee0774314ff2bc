// A GPU worker's in-flight limit, steered by its engine (additive increase, multiplicative decrease).
// The engine is the authority on its own load: requests past what it runs only wait in its queue
// (adding latency, and timeouts, for nothing), preemptions recompute work already done, and an engine
// shared with online users shows their time to first token rising before they complain. So the
// limit grows slowly while the engine takes more, and drops at once when it says it cannot.

export interface AdaptiveLimitOptions {
  /** The limit never goes below this (a worker always keeps some requests at its engine). */
  floor: number;
  /**
   * Nor above this (GPU_MAX_INFLIGHT). It starts here (an engine that takes everything loses
   * nothing), unless steered by a latency target: then at the floor, growing into the engine's
   * room, since starting at the ceiling would swamp online users until the cuts caught up.
   */
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
  /**
   * The engine's mean time between tokens (its inter-token latency: about one step), ms, above which
   * the limit is cut; none: not steered by it. Every running request's steps grow with the batch's
   * share of them, whatever its prompts, so it follows what the batch costs online users more
   * closely than the time to first token does (whose mean the batch's own requests move).
   */
  itlTargetMs: number | undefined;
  /**
   * Share of a latency target (0–1) its mean may come to before the limit stops growing: growth that
   * runs right up to the target overshoots it before the next reading shows it, and each overshoot
   * is a burst of slow tokens for online users.
   */
  latencyHeadroom: number;
  /**
   * Readings a latency mean spans (the last cut's included at most): one reading's mean swings with
   * every burst of online prompts, and a limit steered by it stays low for nothing.
   */
  latencyReadings: number;
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
  /** vllm:inter_token_latency_seconds' sum and count. */
  itlSeconds: { sum: number; count: number } | undefined;
}

/** Why the limit moved; the label of the metric that counts the moves (each exported from the start, at zero). */
export const LIMIT_CHANGES = [
  'rate_limited',
  'unavailable',
  'timeout',
  'preemption',
  'queue',
  'slow_first_token',
  'slow_tokens',
  'increase',
] as const;
export type LimitChange = (typeof LIMIT_CHANGES)[number];

/** What an engine's answer to one request says about its load. */
export type Overload = Extract<LimitChange, 'rate_limited' | 'unavailable' | 'timeout'>;

/** No reading at all (the engine's /metrics failed): only the answers' signals, and the hold, apply. */
export const NO_READING: EngineLoad = {
  waiting: undefined,
  kvUsage: undefined,
  preemptions: undefined,
  ttftSeconds: undefined,
  itlSeconds: undefined,
};

type Histogram = EngineLoad['ttftSeconds'];

/** A histogram's mean over the time between two readings, ms; undefined without both or without samples. */
function meanMs(before: Histogram, now: Histogram): number | undefined {
  if (before === undefined || now === undefined) return undefined;
  const count = now.count - before.count;
  const sum = now.sum - before.sum;
  return count > 0 && sum >= 0 ? (sum / count) * 1000 : undefined;
}

export class AdaptiveLimit {
  private value: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private previous: EngineLoad | undefined;
  /** The readings the latency means span, oldest first (restarted by each cut: fresh evidence only). */
  private window: EngineLoad[] = [];

  constructor(
    private readonly options: AdaptiveLimitOptions,
    /** Told of every move: the new limit and why. */
    private readonly onChange: (limit: number, why: LimitChange) => void = () => undefined,
  ) {
    if (!(options.floor >= 1 && options.floor <= options.ceiling))
      throw new Error(`the in-flight floor (${options.floor}) must be between 1 and the ceiling (${options.ceiling})`);
    this.value =
      options.ttftTargetMs === undefined && options.itlTargetMs === undefined ? options.ceiling : options.floor;
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
    this.window.push(load);
    if (this.window.length > this.options.latencyReadings + 1) this.window.shift();
    const preempted =
      before?.preemptions !== undefined && load.preemptions !== undefined && load.preemptions > before.preemptions;
    if (preempted) {
      this.cut('preemption', now);
      return;
    }
    const { ttftTargetMs, itlTargetMs, latencyHeadroom, maxWaiting } = this.options;
    const since = this.window.length > 1 ? this.window[0] : undefined;
    let nearTarget = false;
    const latencies = [
      { why: 'slow_first_token', target: ttftTargetMs, mean: meanMs(since?.ttftSeconds, load.ttftSeconds) },
      { why: 'slow_tokens', target: itlTargetMs, mean: meanMs(since?.itlSeconds, load.itlSeconds) },
    ] as const;
    for (const { why, target, mean } of latencies) {
      if (target === undefined || mean === undefined) continue;
      if (mean > target) {
        // Online users are waiting on every step: cut again as soon as the last cut has shown (this
        // worker is down to its limit), not only after the hold.
        this.cut(why, now, inFlight <= this.value);
        return;
      }
      if (mean > target * (1 - latencyHeadroom)) nearTarget = true;
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
    if (nearTarget) return;
    // Grow only a limit in use: a worker with little to send proves nothing about the engine.
    if (inFlight + this.options.increase >= this.value)
      this.set(Math.min(this.options.ceiling, this.value + this.options.increase), 'increase');
  }

  /** Once per hold, or sooner when the caller knows the last cut has taken effect. */
  private cut(why: LimitChange, now: number, lastCutShown = false): void {
    if (!lastCutShown && now - this.lastCut < this.options.holdMs) return;
    this.lastCut = now;
    this.window = this.window.slice(-1);
    this.set(Math.max(this.options.floor, Math.floor(this.value * this.options.decrease)), why);
  }

  private set(limit: number, why: LimitChange): void {
    if (limit === this.value) return;
    this.value = limit;
    this.onChange(limit, why);
  }
}
