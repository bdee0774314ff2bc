// A batch's output and error files are written while it runs (as its chunks end) and finished at
// finalize: on the local store and on S3, the files are byte for byte those a finalize from scratch
// writes, in input order with every line once, also when two draft attempts run at once, when an
// upload behind a draft is lost, and when the sweeper of abandoned uploads runs meanwhile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createControlActivities } from '../../activities/batch-control.js';
import { createOutputDrafts, outputKey } from '../../activities/output-draft.js';
import { resultsInOrder } from '../../activities/result-segments.js';
import { notRunRow, persistResults, type ResultRow } from '../../activities/results.js';
import { sweepPartialWrites } from '../../api/services/retention.js';
import { answeredRow, insertRunningBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const COUNT = 600;
/** Lines of about 20 KB: 12 MB in all, more than two of S3's 5 MiB parts. */
const PADDING = 'x'.repeat(20_000);

describe.each([{ store: 'local' }, { store: 's3' }])(
  'output files written while the batch runs ($store store)',
  ({ store }) => {
    let stack: TestStack;
    const model = 'drafts-model';

    beforeAll(async () => {
      stack = await startTestStack({ s3: store === 's3', engines: [] });
    });
    afterAll(async () => {
      await stack.stop();
    });

    const control = () =>
      createControlActivities({ db: stack.db, store: stack.store, config: stack.config, log: stack.log });
    const drafts = () => createOutputDrafts({ db: stack.db, store: stack.store, config: stack.config, log: stack.log });

    /** Line n's result: every seventh fails (it goes to the error file). */
    const row = (batchId: string, line: number): ResultRow =>
      line % 7 === 0
        ? notRunRow(batchId, line, `req-${line - 1}`, 'engine_error', `line ${line} failed ${PADDING.slice(0, 300)}`)
        : answeredRow(batchId, line, { line, text: PADDING });
    const persist = async (batchId: string, lines: number[]): Promise<void> => {
      // Out of order and in flushes of a few, as a chunk's results come.
      const shuffled = [...lines].sort(() => Math.random() - 0.5);
      for (let i = 0; i < shuffled.length; i += 13)
        await persistResults(
          stack.db,
          stack.store,
          batchId,
          shuffled.slice(i, i + 13).map((l) => row(batchId, l)),
        );
    };
    const range = (first: number, last: number): number[] =>
      Array.from({ length: last - first + 1 }, (_, i) => first + i);

    /** The files a finalize from scratch writes: every result in input order, split by ok. */
    const fromScratch = async (batchId: string): Promise<{ output: Buffer; errors: Buffer }> => {
      const ok: Buffer[] = [];
      const failed: Buffer[] = [];
      for await (const r of resultsInOrder(stack.db, stack.store, batchId, 64 * 1024))
        (r.ok ? ok : failed).push(Buffer.from(r.output));
      return { output: Buffer.concat(ok), errors: Buffer.concat(failed) };
    };
    const content = async (fileId: string | null): Promise<Buffer> => {
      expect(fileId).not.toBeNull();
      return Buffer.from(await (await stack.openai.files.content(fileId ?? '')).arrayBuffer());
    };
    const draftRows = (batchId: string) =>
      stack.db
        .selectFrom('output_drafts')
        .selectAll()
        .where('batch_id', '=', batchId)
        .orderBy('kind', 'desc')
        .execute();

    it('writes the lines of ended chunks, and those after them with a result, before finalize; the files are those finalize writes from scratch', async () => {
      const { batchId, inputKey } = await insertRunningBatch(stack, { model, count: COUNT });
      const writer = drafts();
      await persist(batchId, range(1, 200));
      await writer.draft(batchId, 101); // chunks up to line 100 ended; 101-200 already have results
      let rows = await draftRows(batchId);
      expect(rows.map((r) => r.next_line)).toEqual([201, 201]);
      expect(rows.map((r) => r.lines)).toEqual([200 - 28, 28]);
      await persist(
        batchId,
        range(201, 400).filter((l) => l !== 300),
      );
      await writer.draft(batchId, 201); // a gap at line 300: nothing from it on is final yet
      rows = await draftRows(batchId);
      expect(rows.map((r) => r.next_line)).toEqual([300, 300]);
      await writer.draft(batchId, 201); // nothing new: nothing changes
      expect((await draftRows(batchId)).map((r) => r.next_line)).toEqual([300, 300]);
      await persist(batchId, [300, ...range(401, COUNT)]);
      const expected = await fromScratch(batchId);

      const summary = await control().finalizeBatch({ batchId, inputKey, outcome: 'completed' });
      expect(summary).toMatchObject({ status: 'completed', completed: COUNT - 85, failed: 85 });
      expect((await content(summary.outputFileId)).equals(expected.output)).toBe(true);
      expect((await content(summary.errorFileId)).equals(expected.errors)).toBe(true);
      // Finished: the drafts are gone with the segments.
      expect(await draftRows(batchId)).toEqual([]);
    });

    it('writes each line once when two draft attempts run at once (a zombie and its retry) and finalize follows', async () => {
      const { batchId, inputKey } = await insertRunningBatch(stack, { model, count: COUNT });
      await persist(batchId, range(1, 450));
      const expectedSoFar = await fromScratch(batchId);
      expect(expectedSoFar.output.length).toBeGreaterThan(0);
      // One may find the draft moved on under it and stop: that is its refusal, not a loss.
      await Promise.allSettled([
        drafts().draft(batchId, 1),
        drafts().draft(batchId, 301),
        drafts().draft(batchId, 451),
      ]);
      await persist(batchId, range(451, COUNT));
      const expected = await fromScratch(batchId);
      const summary = await control().finalizeBatch({ batchId, inputKey, outcome: 'completed' });
      expect((await content(summary.outputFileId)).equals(expected.output)).toBe(true);
      expect((await content(summary.errorFileId)).equals(expected.errors)).toBe(true);
    });

    it('writes the files again from the first line when the upload behind a draft is lost', async () => {
      const { batchId, inputKey } = await insertRunningBatch(stack, { model, count: COUNT });
      await persist(batchId, range(1, 400));
      await drafts().draft(batchId, 401);
      const [output] = await draftRows(batchId);
      expect(output?.kind).toBe('output');
      // Gone behind its back (an operator's cleanup, a lifecycle rule of the bucket).
      await stack.store.abortUpload(outputKey(batchId, 'output'), output?.upload_id ?? '');
      await persist(batchId, range(401, COUNT));
      const expected = await fromScratch(batchId);
      const summary = await control().finalizeBatch({ batchId, inputKey, outcome: 'completed' });
      expect(summary).toMatchObject({ status: 'completed', completed: COUNT - 85, failed: 85 });
      expect((await content(summary.outputFileId)).equals(expected.output)).toBe(true);
      expect((await content(summary.errorFileId)).equals(expected.errors)).toBe(true);
    });

    it('keeps the uploads of running batches from the sweeper of abandoned writes', async () => {
      const { batchId, inputKey } = await insertRunningBatch(stack, { model, count: COUNT });
      await persist(batchId, range(1, 300));
      await drafts().draft(batchId, 301);
      // An abandoned upload of another file, older than the limit (here: any age), goes.
      const abandoned = await stack.store.startUpload('outputs/abandoned/output.jsonl');
      await new Promise((r) => setTimeout(r, 20));
      const config = { ...stack.config, retention: { ...stack.config.retention, partialWriteSeconds: 0 } };
      expect(await sweepPartialWrites({ db: stack.db, store: stack.store, config })).toBeGreaterThanOrEqual(1);
      await expect(
        stack.store.writePart('outputs/abandoned/output.jsonl', abandoned, { number: 1, offset: 0 }, [
          Buffer.from('x\n'),
        ]),
      ).rejects.toThrow(/gone/);
      await persist(batchId, range(301, COUNT));
      // The spared upload still takes parts: a write ahead into it succeeds (into a swept one it would throw,
      // and finalize alone would hide that by writing the files again from the first line).
      await drafts().draft(batchId, COUNT + 1);
      const [output, errors] = await draftRows(batchId);
      // The output file's upload took a part (the errors are too few for one on S3: a tail object).
      expect([output?.next_line, (output?.parts.length ?? 0) > 0]).toEqual([COUNT + 1, true]);
      expect(errors?.next_line).toBe(COUNT + 1);
      const expected = await fromScratch(batchId);
      const summary = await control().finalizeBatch({ batchId, inputKey, outcome: 'completed' });
      expect((await content(summary.outputFileId)).equals(expected.output)).toBe(true);
    });

    it('gives a batch whose every line failed no output file, and one whose every line succeeded no error file', async () => {
      const { batchId, inputKey } = await insertRunningBatch(stack, { model, count: 20 });
      await persistResults(
        stack.db,
        stack.store,
        batchId,
        range(1, 20).map((l) => notRunRow(batchId, l, `req-${l - 1}`, 'engine_error', 'failed')),
      );
      await drafts().draft(batchId, 11);
      const failed = await control().finalizeBatch({ batchId, inputKey, outcome: 'completed' });
      expect(failed).toMatchObject({ completed: 0, failed: 20, outputFileId: null });
      expect((await content(failed.errorFileId)).toString().split('\n').length).toBe(21);

      const other = await insertRunningBatch(stack, { model, count: 20 });
      await persistResults(
        stack.db,
        stack.store,
        other.batchId,
        range(1, 20).map((l) => answeredRow(other.batchId, l, { l })),
      );
      const ok = await control().finalizeBatch({
        batchId: other.batchId,
        inputKey: other.inputKey,
        outcome: 'completed',
      });
      expect(ok).toMatchObject({ completed: 20, failed: 0, errorFileId: null });
    });
  },
);
