// The engine loop: runs the scheduler's steps one after another while there is work, each step
// taking stepMs(tokens in the step). In real time (the HTTP server) a step's tokens appear when
// its time is up; steps shorter than a timer tick run back to back until the engine's clock
// catches up with the wall clock, so throughput holds even at sub-millisecond steps, and the loop
// yields to I/O every few steps. With nothing to do it sets no timer at all. In simulated time
// (calibration, tests) the same steps run synchronously.
import {
  Scheduler,
  type EngineRequest,
  type EngineRequestInput,
  type SchedulerConfig,
  type StepOutcome,
  type StepPlan,
} from './scheduler.js';

/**
 * A forward pass costs a fixed part (reading the weights, launching kernels, scheduling and
 * sampling) plus a part that grows with the tokens in the batch (matrix multiplies over those
 * tokens, their attention). Decode steps of a big batch and prefill chunks both pay per token.
 */
export interface StepTiming {
  stepBaseMs: number;
  stepTokenMs: number;
}

export function stepMs(timing: StepTiming, tokens: number): number {
  return tokens > 0 ? timing.stepBaseMs + timing.stepTokenMs * tokens : 0;
}

export interface EngineObserver {
  /** After each step's outputs are applied (and after submits and aborts): the scheduler's state changed. */
  onState?(scheduler: Scheduler): void;
  onStep?(plan: StepPlan, outcome: StepOutcome, durationMs: number): void;
  onToken?(request: EngineRequest, atMs: number): void;
  onFinish?(request: EngineRequest, atMs: number): void;
}

/** Steps run back to back in one turn of the event loop before it yields to I/O. */
const MAX_STEPS_PER_TURN = 64;
/** How far the engine's clock may trail the wall clock (a stalled event loop) before it gives up catching up. */
const MAX_LAG_MS = 250;

export class Engine {
  readonly scheduler: Scheduler;
  private clock = 0;
  private inFlight: { plan: StepPlan; durationMs: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  /**
   * Wall time the engine's clock gave up catching up on (its event loop held up longer than
   * MAX_LAG_MS): steps the modelled GPU would have run, and did not. Non-zero means the machine
   * running the simulator, not the model, set its pace.
   */
  lostMs = 0;

  constructor(
    config: SchedulerConfig,
    readonly timing: StepTiming,
    private readonly observer: EngineObserver = {},
    private readonly now: () => number = () => performance.now(),
  ) {
    this.scheduler = new Scheduler(config);
  }

  /** True while a step is in flight or about to start. */
  get busy(): boolean {
    return this.timer !== undefined || this.immediate !== undefined;
  }

  submit(input: EngineRequestInput, listener?: EngineRequest['listener']): EngineRequest {
    const request = this.scheduler.create(input);
    request.listener = listener;
    this.scheduler.add(request, this.now());
    this.observer.onState?.(this.scheduler);
    this.wake();
    return request;
  }

  abort(request: EngineRequest): void {
    if (!this.scheduler.abort(request, this.now())) return;
    this.observer.onFinish?.(request, request.finishedAt ?? this.now());
    this.observer.onState?.(this.scheduler);
    request.listener?.(request, 'finish');
    // A waiting request may fit in the blocks just freed.
    this.wake();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private wake(): void {
    if (this.closed || this.busy || !this.scheduler.hasWork) return;
    this.immediate = setImmediate(this.run);
  }

  private readonly run = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    for (let steps = 1; !this.closed; steps++) {
      const now = this.now();
      if (this.inFlight !== null) {
        const { plan, durationMs } = this.inFlight;
        this.inFlight = null;
        this.apply(plan, durationMs);
      } else {
        this.clock = Math.max(this.clock, now); // the engine was idle: its next step starts now
      }
      if (this.clock < now - MAX_LAG_MS) {
        this.lostMs += now - MAX_LAG_MS - this.clock;
        this.clock = now - MAX_LAG_MS;
      }
      if (!this.scheduler.hasWork) return;
      const plan = this.scheduler.schedule(this.clock);
      this.observer.onState?.(this.scheduler);
      if (plan.tokens === 0) {
        if (plan.preempted.length > 0) continue; // blocks were freed: the next schedule makes progress
        return; // nothing can run until a request arrives or ends; no timer, so no spinning
      }
      const durationMs = stepMs(this.timing, plan.tokens);
      this.clock += durationMs;
      this.inFlight = { plan, durationMs };
      const wait = this.clock - this.now();
      if (wait > 0) {
        this.timer = setTimeout(this.run, wait);
        return;
      }
      if (steps >= MAX_STEPS_PER_TURN) {
        this.immediate = setImmediate(this.run);
        return;
      }
    }
  };

  private apply(plan: StepPlan, durationMs: number): void {
    const outcome = this.scheduler.update(plan, this.clock);
    this.observer.onStep?.(plan, outcome, durationMs);
    for (const request of outcome.tokens) {
      this.observer.onToken?.(request, this.clock);
      request.listener?.(request, 'token');
    }
    for (const request of outcome.finished) {
      this.observer.onFinish?.(request, this.clock);
      request.listener?.(request, 'finish');
    }
    this.observer.onState?.(this.scheduler);
  }
}

export interface SimulatedRun {
  /** Simulated milliseconds from the first step to the last request's end. */
  durationMs: number;
  steps: number;
  requests: EngineRequest[];
  scheduler: Scheduler;
}

/** Runs requests that all arrive at time 0 to completion in simulated time (no timers). */
export function simulate(
  config: SchedulerConfig,
  timing: StepTiming,
  inputs: readonly EngineRequestInput[],
  observer: EngineObserver = {},
): SimulatedRun {
  const scheduler = new Scheduler(config);
  const requests = inputs.map((input) => scheduler.create(input));
  for (const request of requests) scheduler.add(request, 0);
  let clock = 0;
  let steps = 0;
  while (scheduler.hasWork) {
    const plan = scheduler.schedule(clock);
    if (plan.tokens === 0) {
      if (plan.preempted.length > 0) continue;
      throw new Error('the scheduler cannot make progress (a request larger than the KV cache?)');
    }
    const durationMs = stepMs(timing, plan.tokens);
    clock += durationMs;
    steps++;
    const outcome = scheduler.update(plan, clock);
    observer.onStep?.(plan, outcome, durationMs);
    for (const request of outcome.tokens) observer.onToken?.(request, clock);
    for (const request of outcome.finished) observer.onFinish?.(request, clock);
    observer.onState?.(scheduler);
  }
  return { durationMs: clock, steps, requests, scheduler };
}
