// BatchWorkflow's races on the time-skipping test server, its activities mocked: which activities
// run, what is dead-lettered and how the batch ends when cancel, expiry or a failing chunk meet.
// Nothing waits on real time: a race is set up by holding a mocked activity until the test lets go.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import type { BatchPlan, Outcome } from '../../activities/batch-control.js';
import type { ChunkPlan } from '../../activities/validate.js';
import { batchWorkflowInput } from '../../workflows/batch-lifecycle.js';
import { BatchWorkflow, type BatchResult } from '../../workflows/batch.js';
import { cancelSignal, progressQuery, type BatchProgress } from '../../workflows/messages.js';
import { gate, serverPerTest, testConfig, withWorker } from '../support/workflow-env.js';
import {
  batchActivities,
  batchPlan,
  callsOf,
  chunkSummary,
  finalSummary,
  REQUESTS_PER_CHUNK,
  type Call,
} from '../support/workflow-mocks.js';

const t = serverPerTest();

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Starts a BatchWorkflow as the API does (its input from batchWorkflowInput) on a queue of its own. */
async function startBatch(taskQueue: string, expiresAt = nowSeconds() + 86_400) {
  const batchId = `batch_${randomUUID()}`;
  return t.env.client.workflow.start(BatchWorkflow, {
    workflowId: batchId,
    taskQueue,
    args: [batchWorkflowInput(testConfig(taskQueue), batchId, expiresAt, 4096)],
  });
}

/**
 * The batch's result, once the curation import it leaves behind has ended too: a workflow task that
 * no worker will take (the test's worker stops after the test) would hold the test server's clock for
 * every later test.
 */
async function batchResult(handle: Awaited<ReturnType<typeof startBatch>>): Promise<BatchResult> {
  const result = await handle.result();
  // Finalized (not failed in validation): the batch has started its curation import.
  if ('outputFileId' in result) await t.env.client.workflow.getHandle(`${handle.workflowId}-curation`).result();
  return result;
}

/** Asks until the workflow's progress shows `ready` (queries do not move the test server's clock). */
async function untilProgress(
  handle: { query: (q: typeof progressQuery) => Promise<BatchProgress> },
  ready: (p: BatchProgress) => boolean,
): Promise<BatchProgress> {
  for (let i = 0; i < 200; i++) {
    const p = await handle.query(progressQuery);
    if (ready(p)) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the workflow never reached the expected progress');
}

const outcomeOf = (calls: Call[]): Outcome[] =>
  callsOf(calls, 'finalizeBatch').map((args) => (args[0] as { outcome: Outcome }).outcome);
const chunksRun = (calls: Call[]): number[] =>
  callsOf(calls, 'runChunk').map((args) => (args[0] as { chunk: ChunkPlan }).chunk.index);

describe('BatchWorkflow (mocked activities, time skipping)', () => {
  it('runs every chunk, finalizes as completed and announces the end to each webhook', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue, { chunks: 3 });
    const { activities, calls } = batchActivities(plan, {}, ['whd_one']);
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      const result = await batchResult(handle);
      expect(result).toEqual(finalSummary('completed', plan.requests, 0));
      // The delivery is a child left to run on its own; it still runs, on the same worker here.
      await expect(t.env.client.workflow.getHandle('whd_one').result()).resolves.toBe('delivered');
    });
    expect(chunksRun(calls)).toEqual([0, 1, 2]);
    expect(callsOf(calls, 'markFinalizing')).toHaveLength(1);
    expect(outcomeOf(calls)).toEqual(['completed']);
    expect(callsOf(calls, 'deliver')).toEqual([['whd_one']]);
    expect(callsOf(calls, 'deadLetterChunk')).toEqual([]);
    // The curation import is started as a child too (it skips: Label Studio is not configured here).
    expect(callsOf(calls, 'planImport')).toHaveLength(1);
  });

  it('writes the files ahead as chunks end (as often as the plan says), finalizing once the last write is done; a failed write only loses the head start', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = { ...batchPlan(taskQueue, { chunks: 6 }), outputDrafts: 3 };
    const order: string[] = [];
    // Chunk 4 waits for the second write to start, so the chunks do not all end while the first one
    // is still being retried (then there is nothing left to write ahead, and finalize writes it all).
    const secondWrite = gate();
    const { activities, calls } = batchActivities(plan, {
      runChunk: async (input: { chunk: ChunkPlan }) => {
        if (input.chunk.index === 4) await Promise.race([secondWrite.wait, new Promise((r) => setTimeout(r, 20_000))]);
        return chunkSummary(input.chunk);
      },
      draftOutputs: async (input: { throughLine: number }) => {
        if (input.throughLine === 5) throw new Error('the file store is unreachable');
        secondWrite.open();
        await new Promise((r) => setTimeout(r, 200));
        order.push(`written through ${input.throughLine}`);
      },
      finalizeBatch: (input: { outcome: Outcome }) => {
        order.push('finalize');
        return finalSummary(input.outcome, plan.requests, 0);
      },
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      expect(await batchResult(handle)).toEqual(finalSummary('completed', plan.requests, 0));
    });
    // Every two chunks (six chunks, three writes at most; none once all have ended): through chunk 2's
    // first line (two attempts, both failed), then through chunk 4's.
    const written = callsOf(calls, 'draftOutputs').map((args) => (args[0] as { throughLine: number }).throughLine);
    expect(written).toEqual([5, 5, 9]);
    expect(order).toEqual(['written through 9', 'finalize']);
    expect(chunksRun(calls)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('cancelled while validating: no chunk runs, and the batch is finalized as cancelled', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue);
    const validating = gate();
    const entered = gate();
    const { activities, calls } = batchActivities(plan, {
      validateBatch: async (): Promise<BatchPlan> => {
        entered.open();
        await validating.wait;
        return plan;
      },
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      await entered.wait;
      await handle.signal(cancelSignal);
      await untilProgress(handle, (p) => p.cancelRequested);
      validating.open();
      expect(await batchResult(handle)).toEqual(finalSummary('cancelled', 0, plan.requests));
    });
    expect(chunksRun(calls)).toEqual([]);
    expect(callsOf(calls, 'markFinalizing')).toEqual([]);
    expect(outcomeOf(calls)).toEqual(['cancelled']);
  });

  it('a chunk out of retries is dead-lettered with its reason, and the batch still finalizes', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue, { chunks: 3, maxAttempts: 3 });
    const { activities, calls } = batchActivities(plan, {
      runChunk: (input: { chunk: ChunkPlan }) => {
        if (input.chunk.index === 1) throw new Error('engine unreachable');
        return chunkSummary(input.chunk);
      },
      finalizeBatch: () => finalSummary('completed', 2 * REQUESTS_PER_CHUNK, REQUESTS_PER_CHUNK),
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      // Three attempts with a minute's backoff between them: skipped, not waited for.
      expect(await batchResult(handle)).toEqual(finalSummary('completed', 2 * REQUESTS_PER_CHUNK, REQUESTS_PER_CHUNK));
    });
    expect(chunksRun(calls)).toEqual([0, 1, 1, 1, 2]);
    const deadLettered = callsOf(calls, 'deadLetterChunk').map(
      (args) => args[0] as { chunk: ChunkPlan; reason: string },
    );
    expect(deadLettered).toHaveLength(1);
    expect(deadLettered[0]?.chunk.index).toBe(1);
    expect(deadLettered[0]?.reason).toContain('engine unreachable');
    expect(outcomeOf(calls)).toEqual(['completed']);
  });

  it('expiry racing a failing chunk: the chunk is cancelled in its backoff, not dead-lettered; the batch expires', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    // Far more attempts than fit before expiry: the chunk is still retrying when the window closes.
    const plan = batchPlan(taskQueue, { chunks: 2, maxAttempts: 1000 });
    const { activities, calls } = batchActivities(plan, {
      runChunk: () => {
        throw new Error('engine unreachable');
      },
    });
    const started = nowSeconds();
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue, started + 3600);
      expect(await batchResult(handle)).toEqual(finalSummary('expired', 0, plan.requests));
    });
    // An hour of retries (backoff 1, 2, 4, 8, 10, 10… minutes) passed on the server's clock, not ours.
    expect(nowSeconds() - started).toBeLessThan(600);
    const attempts = chunksRun(calls);
    expect(attempts.length).toBeGreaterThan(3);
    expect(new Set(attempts)).toEqual(new Set([0]));
    expect(callsOf(calls, 'deadLetterChunk')).toEqual([]);
    expect(callsOf(calls, 'markFinalizing')).toEqual([]);
    expect(outcomeOf(calls)).toEqual(['expired']);
  });

  it('expiry while validation is still retrying: no chunk runs, and the batch is finalized as expired', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue);
    let failures = 0;
    const { activities, calls } = batchActivities(plan, {
      // Five failures: about half a minute of backoff, past a window that closes after ten seconds.
      validateBatch: (): BatchPlan => {
        if (failures++ < 5) throw new Error('store unreachable');
        return plan;
      },
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue, nowSeconds() + 10);
      expect(await batchResult(handle)).toEqual(finalSummary('expired', 0, plan.requests));
    });
    expect(callsOf(calls, 'validateBatch')).toHaveLength(6);
    expect(chunksRun(calls)).toEqual([]);
    expect(outcomeOf(calls)).toEqual(['expired']);
  });

  it('validation out of attempts: the batch fails saying why, with no chunk and no finalize', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue);
    const { activities, calls } = batchActivities(plan, {
      validateBatch: () => {
        throw new Error('store unreachable');
      },
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      expect(await batchResult(handle)).toEqual({ status: 'failed', errors: 1 });
    });
    const failed = callsOf(calls, 'failBatch').map((args) => args[0] as { code: string; message: string });
    expect(failed).toHaveLength(1);
    expect(failed[0]?.code).toBe('validation_error');
    expect(failed[0]?.message).toContain('store unreachable');
    expect(callsOf(calls, 'validateBatch')).toHaveLength(testConfig(taskQueue).batch.control.maxAttempts);
    expect(chunksRun(calls)).toEqual([]);
    expect(callsOf(calls, 'finalizeBatch')).toEqual([]);
  });

  it('cancel during finalize is too late: finalize runs once, to the end, as completed', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const plan = batchPlan(taskQueue);
    const finalizing = gate();
    const entered = gate();
    const { activities, calls } = batchActivities(plan, {
      finalizeBatch: async (input: { outcome: Outcome }) => {
        entered.open();
        await finalizing.wait;
        return finalSummary(input.outcome, plan.requests, 0);
      },
    });
    await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, async () => {
      const handle = await startBatch(taskQueue);
      await entered.wait;
      await handle.signal(cancelSignal);
      // Temporal's own cancel too (as `temporal workflow cancel` would): finalize is not cancellable.
      await handle.cancel();
      const progress = await handle.query(progressQuery);
      expect(progress).toMatchObject({ phase: 'finalizing', cancelRequested: false });
      finalizing.open();
      expect(await batchResult(handle)).toEqual(finalSummary('completed', plan.requests, 0));
    });
    expect(chunksRun(calls)).toEqual([0, 1]);
    expect(callsOf(calls, 'markFinalizing')).toHaveLength(1);
    expect(outcomeOf(calls)).toEqual(['completed']);
  });
});
