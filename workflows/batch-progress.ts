// What a running batch tells the world: the progress query's answer, the current details the
// Temporal UI shows on its page, and the BatchStatus search attribute (and, at the end, the memo)
// operators filter by. BatchWorkflow says what happened; this keeps the counts and the status in step.
import { log, setCurrentDetails, upsertMemo, upsertSearchAttributes } from '@temporalio/workflow';

import type { BatchPlan, FinalSummary } from '../activities/batch-control.js';
import { batchCurrentDetails } from './batch-display.js';
import type { BatchProgress } from './messages.js';
import { BatchModelKey, BatchRequestCountKey, BatchStatusKey } from './search-attributes.js';

function setStatus(status: string): void {
  upsertSearchAttributes([{ key: BatchStatusKey, value: status }]);
}

export class BatchTracker {
  readonly progress: BatchProgress = {
    phase: 'validating',
    requests: 0,
    completed: 0,
    failed: 0,
    chunks: { total: 0, done: 0, running: 0, deadLettered: 0 },
    cancelRequested: false,
    expired: false,
    expiresAt: null,
    eta: null,
    late: false,
  };

  /** When chunks began (workflow time, ms): the rate of the estimate runs from here. */
  private startedAt = 0;

  /** The most chunks seen running at once: until as many have ended, the rate so far undercounts. */
  private peakRunning = 0;

  /** What validation found, for the current details. */
  private plan: { model: string } | undefined;

  /** Requests/s since chunks began, as of the last chunk to end. */
  private rate: number | null = null;

  /** The batch's final status, once finalized. */
  private ended: string | undefined;

  constructor() {
    this.show();
  }

  /** Redraws the current details (a query answers them: it costs no history). */
  private show(): void {
    setCurrentDetails(batchCurrentDetails(this.progress, this.plan, this.rate, this.ended));
  }

  get cancelRequested(): boolean {
    return this.progress.cancelRequested;
  }

  get expired(): boolean {
    return this.progress.expired;
  }

  /** Whether a cancel still changes anything: once finalizing, the batch's end is already decided. */
  requestCancel(): boolean {
    const p = this.progress;
    if (p.cancelRequested || p.phase === 'finalizing' || p.phase === 'done') return false;
    p.cancelRequested = true;
    p.phase = 'cancelling';
    setStatus('cancelling');
    this.show();
    return true;
  }

  expire(): void {
    this.progress.expired = true;
    this.show();
  }

  validationFailed(): void {
    this.progress.phase = 'done';
    setStatus('failed');
    setCurrentDetails('**failed**: the input file did not validate (the error file lists each line and why)');
  }

  validated(plan: Extract<BatchPlan, { ok: true }>): void {
    const p = this.progress;
    p.requests = plan.requests;
    p.chunks.total = plan.chunks.length;
    if (plan.prefixGroups !== undefined) p.prefixGroups = plan.prefixGroups;
    upsertSearchAttributes([
      { key: BatchModelKey, value: plan.model },
      { key: BatchRequestCountKey, value: plan.requests },
      { key: BatchStatusKey, value: p.cancelRequested ? 'cancelling' : 'in_progress' },
    ]);
    if (p.phase === 'validating') p.phase = 'in_progress';
    p.expiresAt = new Date(plan.expiresAt * 1000).toISOString();
    this.startedAt = Date.now();
    this.plan = { model: plan.model };
    this.show();
  }

  chunkStarted(): void {
    this.progress.chunks.running++;
    this.peakRunning = Math.max(this.peakRunning, this.progress.chunks.running);
    this.show();
  }

  /** A chunk ran (or, dead-lettered, was written off): these are its lines' final counts. */
  chunkEnded(counts: { completed: number; failed: number }, deadLettered: boolean): void {
    const p = this.progress;
    p.completed += counts.completed;
    p.failed += counts.failed;
    if (deadLettered) p.chunks.deadLettered++;
    p.chunks.done++;
    this.estimate();
    this.show();
  }

  /** The end at the rate so far, against the window: a batch that cannot make it shows early. */
  private estimate(): void {
    const p = this.progress;
    const done = p.completed + p.failed;
    const elapsed = Date.now() - this.startedAt;
    if (elapsed > 0) this.rate = (1000 * done) / elapsed;
    // Chunks run side by side and end near together: the first to end stands for a whole wave's
    // worth of time, so the estimate waits for the wave.
    if (done === 0 || elapsed <= 0 || p.expiresAt === null || p.chunks.done < this.peakRunning) return;
    const eta = Date.now() + ((p.requests - done) * elapsed) / done;
    p.eta = new Date(eta).toISOString();
    const late = eta > Date.parse(p.expiresAt);
    if (late && !p.late)
      log.warn('the batch will not finish within its completion window at its rate so far', {
        eta: p.eta,
        expiresAt: p.expiresAt,
        done,
        requests: p.requests,
      });
    p.late = late;
  }

  /** The chunk's activity is quiet, whatever became of it. */
  chunkSettled(): void {
    this.progress.chunks.running--;
    this.show();
  }

  finalizing(): void {
    this.progress.phase = 'finalizing';
    setStatus('finalizing');
    this.show();
  }

  finished(summary: FinalSummary): void {
    const p = this.progress;
    p.phase = 'done';
    this.ended = summary.status;
    p.completed = summary.completed;
    p.failed = summary.failed;
    setStatus(summary.status);
    upsertMemo({
      completed: summary.completed,
      failed: summary.failed,
      outputFileId: summary.outputFileId,
      errorFileId: summary.errorFileId,
    });
    this.show();
  }
}
