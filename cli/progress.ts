// A batch's progress as the command line shows it, in `watch` and in `top`: what phase it is in,
// how many requests are done, how fast they go and when it will end.
import type OpenAI from 'openai';

type Batch = OpenAI.Batches.Batch;

export const TERMINAL_STATUSES = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** How long a rate takes to forget: results come in bursts (a chunk's flush), a rate should not jump with them. */
const SMOOTHING_SECONDS = 15;

/**
 * Requests a second of one batch, smoothed over the polls (an exponential moving average with a
 * time constant of SMOOTHING_SECONDS). The first poll of a batch already under way has a rate too:
 * what it has done since `in_progress_at`, so a watch started late shows a rate and an ETA at once.
 */
export class Rate {
  private last: { at: number; done: number } | undefined;
  private value = 0;

  observe(batch: Batch, now = Date.now()): number {
    const done = doneOf(batch);
    if (batch.status !== 'in_progress' && batch.status !== 'finalizing') return this.value;
    if (this.last === undefined) {
      this.last = { at: now, done };
      const since = batch.in_progress_at;
      // The server's clock against ours: at least a second, so a clock a little ahead does not make a rate of millions.
      if (since != null && done > 0) this.value = done / Math.max(1, now / 1000 - since);
      return this.value;
    }
    const seconds = (now - this.last.at) / 1000;
    if (seconds <= 0) return this.value;
    const instant = Math.max(0, done - this.last.done) / seconds;
    this.last = { at: now, done };
    // No first rate (nothing done at the first poll): the first measured one is taken as it is.
    const weight = this.value === 0 ? 1 : 1 - Math.exp(-seconds / SMOOTHING_SECONDS);
    this.value += weight * (instant - this.value);
    return this.value;
  }
}

export function doneOf(batch: Batch): number {
  const counts = batch.request_counts;
  return counts === undefined ? 0 : counts.completed + counts.failed;
}

/** Seconds as 45s, 12m05s or 3h20m; "--" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const whole = Math.ceil(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** What a person reads of a batch at a glance; every field text, as printed. */
export interface Progress {
  /** The phase in words: "validating", "running", "finalizing", "cancelling", or the final status. */
  phase: string;
  /** "123/500 done, 2 failed", or what the phase is doing when there are no counts yet. */
  counts: string;
  rate: string;
  eta: string;
}

const PHASES: Record<string, string> = {
  validating: 'validating',
  in_progress: 'running',
  finalizing: 'finalizing',
  cancelling: 'cancelling',
};

export function progressOf(batch: Batch, rate: number): Progress {
  const counts = batch.request_counts ?? { total: 0, completed: 0, failed: 0 };
  const done = counts.completed + counts.failed;
  const remaining = counts.total - done;
  const phase = PHASES[batch.status] ?? batch.status;
  if (batch.status === 'validating') return { phase, counts: 'checking the input file', rate: '--', eta: '--' };
  const running = batch.status === 'in_progress';
  return {
    phase,
    counts: `${done}/${counts.total} done, ${counts.failed} failed`,
    rate: rate > 0 ? rate.toFixed(1) : '--',
    eta:
      batch.status === 'finalizing'
        ? 'writing files'
        : !running
          ? '--'
          : remaining === 0
            ? '0s'
            : rate > 0
              ? formatDuration(remaining / rate)
              : '--',
  };
}
