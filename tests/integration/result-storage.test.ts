// Answers live in the file store, not in Postgres: a batch of 2 KB answers leaves the database
// almost as it found it; lines that two attempts of a chunk both persisted are written once, in
// input order; and an orchestrator killed during finalize loses and duplicates nothing.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createControlActivities } from '../../activities/batch-control.js';
import { persistResults, type ResultRow } from '../../activities/results.js';
import type { RunningSimulator } from '../../simulator/server.js';
import {
  answeredRow,
  batchLines,
  expectEveryLineDone,
  fileLines,
  inInputOrder,
  insertRunningBatch,
  submitBatch,
  uploadBatchFile,
  waitForBatch,
} from '../support/batches.js';
import { spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/** Tokens of about six characters: an answer of about 2 KB. */
const ANSWER_TOKENS = 340;

describe('result storage', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let orchestrator: ChildUnderTest;
  const model = 'storage-model';
  const lines = (count: number): string =>
    batchLines({
      model,
      count,
      body: (i) => ({ model, messages: [{ role: 'user', content: `Question ${i}` }], max_tokens: ANSWER_TOKENS }),
    });

  const startOrchestrator = async (): Promise<ChildUnderTest> => {
    const started = spawnEntry('workers/orchestrator.ts', stack.processEnv());
    await started.waitFor('orchestrator worker ready');
    return started;
  };
  const databaseBytes = async (): Promise<number> =>
    (await sql<{ bytes: number }>`select pg_database_size(current_database()) as bytes`.execute(stack.db)).rows[0]
      ?.bytes ?? 0;
  /** Segment objects the batch still has in the (local) file store. */
  const segmentsLeft = async (batchId: string): Promise<number> =>
    (await readdir(path.join(stack.config.paths.fileStoreDir, 'results', batchId)).catch(() => [])).length;

  beforeAll(async () => {
    engine = await startTestSimulator({
      models: [model],
      maxNumSeqs: 256,
      tokenLatencyMs: 0.02,
      outputTokens: { min: ANSWER_TOKENS, max: ANSWER_TOKENS },
    });
    // Flushes as deployed (not the test stack's tiny ones): what a user's database would carry.
    stack = await startTestStack({
      engines: [engine.url],
      noOrchestrator: true,
      env: { RESULT_SEGMENT_BYTES: String(8 * 1024 * 1024), GPU_MAX_INFLIGHT: '64' },
    });
    orchestrator = await startOrchestrator();
  });
  afterAll(async () => {
    await orchestrator.kill9();
    await stack.stop();
    await engine.close();
  });

  it('keeps the answers of a 5,000-line batch of 2 KB answers out of Postgres (it grows by less than 1 MB)', async () => {
    const count = 5000;
    const input = lines(count);
    const file = await uploadBatchFile(stack.openai, input);
    const before = await databaseBytes();
    const created = await stack.openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const batch = await waitForBatch(stack.openai, created.id, 300_000);
    const grown = (await databaseBytes()) - before;
    const outputs = await expectEveryLineDone(stack.openai, batch, count);
    const answerBytes = outputs.ok.reduce((sum, l) => sum + JSON.stringify(l).length, 0) / count;
    console.log(`5,000 answers of ${Math.round(answerBytes)} bytes: the database grew by ${grown} bytes`);
    expect(answerBytes).toBeGreaterThan(2000);
    expect(grown).toBeLessThan(1024 * 1024);
    // Their segments are gone once the files are written.
    expect(await segmentsLeft(batch.id)).toBe(0);
  }, 360_000);

  it('writes a line that two attempts of a chunk both persisted once, in input order', async () => {
    const count = 600;
    // A batch running as far as its results go (no workflow: this test is its chunk attempts and its finalize).
    const { batchId, inputKey } = await insertRunningBatch(stack, { model, count });
    const answer = (attempt: string, line: number): ResultRow =>
      answeredRow(batchId, line, { attempt, usage: { prompt_tokens: 1, completion_tokens: 2 } }, `${attempt}-${line}`);
    // A zombie attempt (lines 1-400, out of order, in small flushes) and its retry (lines 201-600)
    // persist side by side, each line of 201-400 by both.
    const flushes = (attempt: string, first: number, last: number, size: number): ResultRow[][] => {
      const rows = Array.from({ length: last - first + 1 }, (_, i) => answer(attempt, first + i));
      rows.sort(() => Math.random() - 0.5);
      return Array.from({ length: Math.ceil(rows.length / size) }, (_, i) => rows.slice(i * size, (i + 1) * size));
    };
    const zombie = flushes('zombie', 1, 400, 37);
    const retry = flushes('retry', 201, 600, 53);
    const persisted = await Promise.all(
      [zombie, retry].map(async (attempt) => {
        let n = 0;
        for (const rows of attempt) n += await persistResults(stack.db, stack.store, batchId, rows);
        return n;
      }),
    );
    expect((persisted[0] ?? 0) + (persisted[1] ?? 0)).toBe(count);
    // What the user sees while it runs, and after it ends: every line and its tokens once.
    const counted = (b: OpenAI.Batches.Batch): unknown => ({ counts: b.request_counts, usage: b.usage });
    const expected = {
      counts: { total: count, completed: count, failed: 0 },
      usage: expect.objectContaining({ input_tokens: count, output_tokens: 2 * count }) as unknown,
    };
    expect(counted(await stack.openai.batches.retrieve(batchId))).toEqual(expected);

    const control = createControlActivities({ db: stack.db, store: stack.store, config: stack.config, log: stack.log });
    const summary = await control.finalizeBatch({ batchId, inputKey, outcome: 'completed' });
    expect(summary).toMatchObject({ status: 'completed', completed: count, failed: 0, errorFileId: null });
    expect(counted(await stack.openai.batches.retrieve(batchId))).toEqual(expected);
    const output = await fileLines(stack.openai, summary.outputFileId);
    expect(output.map((l) => l.custom_id)).toEqual(Array.from({ length: count }, (_, i) => `req-${i}`));
    expect(inInputOrder(output)).toBe(true);
    // Each line is one attempt's whole answer: lines only the zombie ran are its, only the retry's are the retry's.
    expect(output.slice(0, 200).every((l) => l.response?.body.attempt === 'zombie')).toBe(true);
    expect(output.slice(400).every((l) => l.response?.body.attempt === 'retry')).toBe(true);
    // Whole lines: each one's request id is that of the attempt whose answer it carries.
    expect(output.filter((l, i) => l.response?.request_id !== `${String(l.response?.body.attempt)}-${i + 1}`)).toEqual(
      [],
    );
    expect(await segmentsLeft(batchId)).toBe(0);
    // Late writes of the zombie, after the batch ended, are refused and leave nothing behind.
    expect(await persistResults(stack.db, stack.store, batchId, [answer('zombie', 5)])).toBe(0);
    expect(await segmentsLeft(batchId)).toBe(0);
  });

  it('keeps the counts and usage of a batch that fails after it ran, and removes its answers', async () => {
    const { batchId } = await insertRunningBatch(stack, { model, count: 50 });
    const rows = Array.from({ length: 30 }, (_, i) =>
      answeredRow(batchId, i + 1, { usage: { prompt_tokens: 3, completion_tokens: 5 } }),
    );
    expect(await persistResults(stack.db, stack.store, batchId, rows)).toBe(30);
    expect(await segmentsLeft(batchId)).toBe(1);
    const control = createControlActivities({ db: stack.db, store: stack.store, config: stack.config, log: stack.log });
    await control.failBatch({ batchId, code: 'batch_aborted', message: 'its input file is gone' });
    const failed = await stack.openai.batches.retrieve(batchId);
    expect(failed.status).toBe('failed');
    expect(failed.request_counts).toEqual({ total: 50, completed: 30, failed: 0 });
    expect(failed.usage).toMatchObject({ input_tokens: 90, output_tokens: 150 });
    expect(await segmentsLeft(batchId)).toBe(0);
  });

  it('loses and duplicates nothing when the orchestrator is killed during finalize', async () => {
    const count = 3000;
    const created = await submitBatch(stack, lines(count));
    let status = '';
    for (const deadline = Date.now() + 300_000; Date.now() < deadline;) {
      status = (
        await stack.db.selectFrom('batches').select('status').where('id', '=', created.id).executeTakeFirstOrThrow()
      ).status;
      if (status !== 'validating' && status !== 'in_progress') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await orchestrator.kill9();
    // Killed while it wrote the files, not after.
    expect(status).toBe('finalizing');
    const still = await stack.db
      .selectFrom('batches')
      .select('status')
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    expect(still.status).toBe('finalizing');
    orchestrator = await startOrchestrator();
    const batch = await waitForBatch(stack.openai, created.id, 300_000);
    await expectEveryLineDone(stack.openai, batch, count);
    expect(await segmentsLeft(batch.id)).toBe(0);
  }, 600_000);
});
