// Watching a batch from the command line: a progress bar on standard error (completed and failed
// out of the total, throughput, ETA) that a terminal redraws in place and a log or CI job gets as
// one line per update; standard output stays free for results and --json.
import { SingleBar } from 'cli-progress';
import type OpenAI from 'openai';

import { sleep } from '../lib/abortable.js';
import { progressOf, Rate, TERMINAL_STATUSES } from './progress.js';

type Batch = OpenAI.Batches.Batch;

export interface WatchOptions {
  intervalMs: number;
  /** No bar: only the final batch is returned (for --json). */
  quiet: boolean;
  stream?: NodeJS.WriteStream;
}

/**
 * One poll with a signal of its own, linked to the caller's: the SDK leaves a listener on whatever
 * signal it is given, and a long watch would otherwise pile them up on the caller's.
 */
export async function pollOnce<T>(
  signal: AbortSignal | undefined,
  call: (signal?: AbortSignal) => Promise<T>,
): Promise<T> {
  if (signal === undefined) return call();
  const poll = new AbortController();
  const onAbort = (): void => {
    poll.abort(signal.reason);
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await call(poll.signal);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** Polls until the batch ends, drawing its progress; resolves with the final batch. */
export async function watchBatch(
  openai: OpenAI,
  batchId: string,
  options: WatchOptions,
  signal?: AbortSignal,
): Promise<Batch> {
  const stream = options.stream ?? process.stderr;
  const bar = options.quiet
    ? undefined
    : new SingleBar({
        stream,
        format: '{id} {phase} |{bar}| {counts} | {rate} req/s | ETA {eta}',
        barCompleteChar: '#',
        barIncompleteChar: '-',
        barsize: 24,
        hideCursor: true,
        // Off a terminal, one line per update instead of redrawing.
        noTTYOutput: true,
        notTTYSchedule: options.intervalMs,
        fps: 4,
      });
  const rate = new Rate();
  let started = false;
  try {
    for (;;) {
      const batch = await pollOnce(signal, (s) =>
        openai.batches.retrieve(batchId, s === undefined ? {} : { signal: s }),
      );
      const counts = batch.request_counts ?? { total: 0, completed: 0, failed: 0 };
      const done = counts.completed + counts.failed;
      const progress = progressOf(batch, rate.observe(batch));
      const payload = { id: batch.id, ...progress, phase: progress.phase.padEnd(10) };
      if (bar !== undefined) {
        if (!started) {
          bar.start(Math.max(counts.total, 1), done, payload);
          started = true;
        } else {
          bar.setTotal(Math.max(counts.total, 1));
          bar.update(done, payload);
        }
      }
      // Stopping the bar (below) draws it once more, with the final counts.
      if (TERMINAL_STATUSES.has(batch.status)) return batch;
      await sleep(options.intervalMs, signal);
    }
  } finally {
    bar?.stop();
  }
}
