// Stand-ins for the activities the workflows call, by the names the workers register them under:
// each records its calls and answers as a small batch would. A test overrides the ones its race is
// about. Shared by the workflow unit tests and the script that records the committed histories.
import type { ImportPlan } from '../../activities/auto-import.js';
import type { BatchPlan, FinalSummary, Outcome } from '../../activities/batch-control.js';
import type { ChunkSummary } from '../../activities/inference.js';
import type { ChunkPlan } from '../../activities/validate.js';
import type { ActivityMocks } from './workflow-env.js';

export interface Call {
  name: string;
  args: unknown[];
}

/** Activity mocks that record every call (attempts included) in `calls`. */
export function recorded(impl: ActivityMocks): { activities: ActivityMocks; calls: Call[] } {
  const calls: Call[] = [];
  const activities: ActivityMocks = {};
  for (const [name, fn] of Object.entries(impl)) {
    // Through a promise, so a mock that throws fails its attempt as a rejected activity does.
    activities[name] = (...args: never[]) => {
      calls.push({ name, args });
      return Promise.resolve().then(() => fn(...args));
    };
  }
  return { activities, calls };
}

export function callsOf(calls: Call[], name: string): unknown[][] {
  return calls.filter((c) => c.name === name).map((c) => c.args);
}

export const REQUESTS_PER_CHUNK = 2;

/** A runnable plan of `chunks` chunks of two requests, its chunk activities on `taskQueue`. */
export function batchPlan(
  taskQueue: string,
  options: { chunks?: number; expiresAt?: number; maxAttempts?: number } = {},
): Extract<BatchPlan, { ok: true }> {
  const count = options.chunks ?? 2;
  const chunks: ChunkPlan[] = Array.from({ length: count }, (_, index) => ({
    index,
    firstLine: index * REQUESTS_PER_CHUNK + 1,
    lastLine: (index + 1) * REQUESTS_PER_CHUNK,
    requests: REQUESTS_PER_CHUNK,
    byteStart: index * 100,
    byteEnd: (index + 1) * 100,
  }));
  return {
    ok: true,
    model: 'test-model',
    endpoint: '/v1/chat/completions',
    projectId: 'proj_test',
    requests: count * REQUESTS_PER_CHUNK,
    inputKey: 'inputs/test.jsonl',
    expiresAt: options.expiresAt ?? Math.floor(Date.now() / 1000) + 86_400,
    chunks,
    // One chunk at a time: the order of activity calls, and so the history, is the same every run.
    maxPendingChunks: 1,
    chunkActivity: {
      taskQueue,
      // Long, so a gated mock is never timed out while the test holds it.
      startToCloseTimeout: 3_600_000,
      heartbeatTimeout: 3_600_000,
      retry: { maximumAttempts: options.maxAttempts ?? 3, initialInterval: 60_000, maximumInterval: 600_000 },
    },
  };
}

export function chunkSummary(chunk: ChunkPlan): ChunkSummary {
  return { chunk: chunk.index, completed: chunk.requests, failed: 0, sent: chunk.requests };
}

const STATUS_OF: Record<Outcome, FinalSummary['status']> = {
  completed: 'completed',
  cancelled: 'cancelled',
  expired: 'expired',
  aborted: 'failed',
};

/** What finalize answers: the status the outcome leads to, with the counts the test says. */
export function finalSummary(outcome: Outcome, completed: number, failed: number): FinalSummary {
  return {
    status: STATUS_OF[outcome],
    completed,
    failed,
    outputFileId: completed > 0 ? 'file-output' : null,
    errorFileId: failed > 0 ? 'file-errors' : null,
  };
}

/**
 * Every activity BatchWorkflow and the workflows it starts call, answering as a batch whose chunks all
 * succeed and whose project has `deliveries` webhook endpoints; `overrides` replace some of them.
 */
export function batchActivities(
  plan: BatchPlan,
  overrides: ActivityMocks = {},
  deliveries: string[] = [],
): { activities: ActivityMocks; calls: Call[] } {
  const requests = plan.ok ? plan.requests : 0;
  return recorded({
    validateBatch: (): BatchPlan => plan,
    failBatch: (): void => undefined,
    runChunk: (input: { chunk: ChunkPlan }): ChunkSummary => chunkSummary(input.chunk),
    deadLetterChunk: (input: { chunk: ChunkPlan }) => ({ completed: 0, failed: input.chunk.requests }),
    draftOutputs: (): void => undefined,
    markFinalizing: (): void => undefined,
    finalizeBatch: (input: { outcome: Outcome }): FinalSummary =>
      finalSummary(
        input.outcome,
        input.outcome === 'completed' ? requests : 0,
        input.outcome === 'completed' ? 0 : requests,
      ),
    prepareDeliveries: (): string[] => deliveries,
    deliver: (): void => undefined,
    markUndelivered: (): void => undefined,
    planImport: (): ImportPlan => ({ ended: 'skipped', reason: 'Label Studio is not configured' }),
    ...overrides,
  });
}
