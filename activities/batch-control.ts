// The orchestrator's activities: validate and plan a batch, dead-letter a chunk that could not run,
// and finalize (fill in lines that never ran, write the output and error files, set the end state).
// Each is idempotent, so a retry after a crash at any point converges on the same result.
import { heartbeat } from '@temporalio/activity';
import type { ActivityOptions } from '@temporalio/workflow';
import { sql } from 'kysely';

import { chunkActivityOptions } from '../lib/activity-options.js';
import type { Config } from '../lib/config.js';
import { readBytes, type FileStore } from '../lib/file-store.js';
import { nowSeconds, stableId } from '../lib/ids.js';
import { isBlank, readLines } from '../lib/jsonl.js';
import type { Logger } from '../lib/logger.js';
import { batchesFinishedTotal, deadLetteredChunksTotal } from '../lib/metrics.js';
import { describeValue, safeText } from '../lib/sanitize.js';
import { chunkTaskQueue } from '../lib/temporal.js';
import { liveModels } from '../lib/worker-registry.js';
import { jsonb, type Db } from '../schema/db.js';
import { persistedLines, resultCounts, segmentFolder } from '../schema/result-groups.js';
import { isLive, LIVE_BATCH_STATES, type BatchStatus, type ValidationError } from '../schema/tables.js';
import { loadBatch } from './load-batch.js';
import { createOutputDrafts, outputKey, type CompletedFile, type OutputKind } from './output-draft.js';
import { chunkMembers, writeMembers } from './prefix-groups.js';
import { notRunRow, persistResults, resultsInRange, type ResultRow } from './results.js';
import { chunkSizeFor, joinPieces, pieceSize, validateLines, type ChunkPlan } from './validate.js';

export interface ControlDeps {
  db: Db;
  store: FileStore;
  config: Config;
  log: Logger;
}

export type BatchPlan =
  | {
      ok: true;
      model: string;
      endpoint: string;
      projectId: string;
      requests: number;
      inputKey: string;
      /** Unix seconds: when the completion window closes. */
      expiresAt: number;
      chunks: ChunkPlan[];
      maxPendingChunks: number;
      /** How many times at most the output files are written ahead while the batch runs (absent in plans before it). */
      outputDrafts?: number;
      /** Planned by prompt prefix: the lines of each group planned apart, largest first (absent: by line ranges). */
      prefixGroups?: number[];
      /** How the plan's chunks run: on the GPU task queue of its model. */
      chunkActivity: ActivityOptions;
    }
  | { ok: false; errors: number };

/** How a batch ends; `aborted`: its workflow ended without finishing it (the reconciler's). */
export type Outcome = 'completed' | 'cancelled' | 'expired' | 'aborted';

export interface FinalSummary {
  status: BatchStatus;
  completed: number;
  failed: number;
  outputFileId: string | null;
  errorFileId: string | null;
}

/** The UTF-16 byte-order marks; such a file is not UTF-8 and no line of it would parse. */
function utf16Of(prefix: Buffer): string | undefined {
  if (prefix[0] === 0xff && prefix[1] === 0xfe) return 'UTF-16LE';
  if (prefix[0] === 0xfe && prefix[1] === 0xff) return 'UTF-16BE';
  return undefined;
}

/** Temporal allows 2,000 pending activities per workflow; stay well under it. */
const MAX_PENDING_CHUNKS_CAP = 500;

/** custom_id of a line that passed validation (the fallback is for a file changed under us). */
function customIdOf(text: string, line: number): string {
  try {
    const parsed = JSON.parse(text) as { custom_id?: unknown };
    if (typeof parsed.custom_id === 'string') return parsed.custom_id;
  } catch {
    // fall through
  }
  return `line-${line}`;
}

function safeHeartbeat(details?: unknown): void {
  try {
    heartbeat(details);
  } catch {
    // Outside an activity (direct calls in tests) there is nothing to heartbeat to.
  }
}

export function createControlActivities(deps: ControlDeps) {
  const { db, store, config, log } = deps;
  const drafts = createOutputDrafts(deps);
  const progress = (written: number): void => {
    safeHeartbeat({ written });
  };

  async function failValidation(batchId: string, errors: ValidationError[]): Promise<BatchPlan> {
    // Also when a cancel came in while validating: nothing ran, and failed says why.
    const updated = await db
      .updateTable('batches')
      .set({ status: 'failed', failed_at: nowSeconds(), errors: jsonb(errors) })
      .where('id', '=', batchId)
      .where('status', 'in', ['validating', 'cancelling'])
      .executeTakeFirst();
    if (updated.numUpdatedRows > 0n) batchesFinishedTotal.inc({ status: 'failed' });
    log.info({ batchId, errors: errors.length }, 'batch failed validation');
    return { ok: false, errors: errors.length };
  }

  /** Writes "never ran" rows for every request line in the range (of `members` only, if given) that has no result yet. */
  async function fillMissing(
    batchId: string,
    inputKey: string,
    range: Pick<ChunkPlan, 'firstLine' | 'lastLine' | 'byteStart' | 'byteEnd'> | undefined,
    members: ReadonlySet<number> | undefined,
    code: string,
    message: string,
    deadLetter: boolean,
  ): Promise<number> {
    const { done } = await persistedLines(db, batchId, range, members);
    const source = store.read(
      inputKey,
      range === undefined ? undefined : { start: range.byteStart, end: range.byteEnd },
    );
    const lines = readLines(
      source,
      range === undefined ? {} : { firstLine: range.firstLine, startOffset: range.byteStart },
    );
    let pending: ResultRow[] = [];
    let filled = 0;
    const flush = async (): Promise<void> => {
      filled += await persistResults(db, store, batchId, pending);
      pending = [];
      safeHeartbeat({ filled });
    };
    for await (const line of lines) {
      if (isBlank(line) || done.has(line.number) || (members !== undefined && !members.has(line.number))) continue;
      const row = notRunRow(batchId, line.number, customIdOf(line.text, line.number), code, message);
      if (deadLetter)
        row.deadLetter = { attempts: 0, errors: [{ at: new Date().toISOString(), status: null, message }] };
      pending.push(row);
      if (pending.length >= 1000) await flush();
    }
    await flush();
    return filled;
  }

  /**
   * Once a batch's files are written its segments and drafts are garbage (result_groups stays: which
   * lines succeeded, for retries and curation). Best effort: a store that is down now only leaves
   * bytes behind, never a batch unfinished.
   */
  async function dropSegments(batchId: string): Promise<void> {
    try {
      await drafts.discard(batchId);
      await store.deleteFolder(segmentFolder(batchId));
      await db.deleteFrom('legacy_batch_results').where('batch_id', '=', batchId).execute();
    } catch (err) {
      log.warn({ batchId, err: (err as Error).message }, 'could not remove the result segments of a finished batch');
    }
  }

  /** The batch's files, finished from what was written while it ran, and published. */
  async function writeOutputs(batchId: string, projectId: string, lifetime: number) {
    const files = await drafts.finish(batchId, progress);
    const now = nowSeconds();
    // Stable ids: a retried finalize re-creates the same file objects instead of new ones.
    const publish = async (file: CompletedFile | null, kind: OutputKind): Promise<string | null> => {
      if (file === null) return null;
      const id = stableId('file-', `${batchId}:${kind}`);
      await db
        .insertInto('files')
        .values({
          id,
          project_id: projectId,
          filename: `${batchId}_${kind === 'output' ? 'output' : 'error'}.jsonl`,
          purpose: 'batch_output',
          bytes: file.bytes,
          status: 'processed',
          status_details: null,
          created_at: now,
          expires_at: now + lifetime,
          storage_key: outputKey(batchId, kind),
          deleted_at: null,
        })
        // A finalize retried after a crash keeps the file's first creation and expiry.
        .onConflict((c) => c.column('id').doUpdateSet({ bytes: file.bytes }))
        .execute();
      return id;
    };
    return {
      completed: files.output?.lines ?? 0,
      failed: files.errors?.lines ?? 0,
      outputFileId: await publish(files.output, 'output'),
      errorFileId: await publish(files.errors, 'errors'),
    };
  }

  return {
    async validateBatch(batchId: string): Promise<BatchPlan> {
      const batch = await loadBatch(db, batchId);
      // The API gave up on this batch (its workflow start looked failed): do nothing more.
      if (!isLive(batch.status)) return { ok: false, errors: 0 };
      if (batch.storage_key === null || batch.purpose !== 'batch') {
        return failValidation(batchId, [
          {
            code: 'invalid_request',
            message: `The input file ${batch.id} is missing or is not a batch input file.`,
            param: 'input_file_id',
            line: null,
          },
        ]);
      }
      const inputKey = batch.storage_key;
      const size = await store.size(inputKey);
      if (size === undefined) {
        return failValidation(batchId, [
          {
            code: 'invalid_request',
            message: `The content of the input file is missing from the file store.`,
            param: 'input_file_id',
            line: null,
          },
        ]);
      }
      // (An empty object has no range to ask for: S3 answers 416.)
      const encoding = size >= 2 ? utf16Of(await readBytes(store, inputKey, { start: 0, end: 2 })) : undefined;
      if (encoding !== undefined) {
        return failValidation(batchId, [
          {
            code: 'invalid_json_line',
            message: `The file is ${encoding} text (it starts with a ${encoding} byte-order mark); batch files must be UTF-8.`,
            param: null,
            line: 1,
          },
        ]);
      }
      let seen = 0;
      const result = await validateLines(
        (async function* () {
          for await (const line of readLines(store.read(inputKey), {
            maxLineBytes: config.batch.maxLineBytes,
            checkUtf8: true,
          })) {
            if (++seen % 5000 === 0) safeHeartbeat({ lines: seen });
            yield line;
          }
        })(),
        {
          endpoint: batch.endpoint,
          maxRequests: config.batch.maxRequests,
          maxErrors: config.batch.validationMaxErrors,
          chunkSize: pieceSize(config.batch.chunkSize),
          maxDepth: config.batch.validationMaxDepth,
          maxCustomIdChars: config.batch.validationMaxCustomIdChars,
          maxLineBytes: config.batch.maxLineBytes,
          maxEmbeddingInputs: config.batch.validationMaxEmbeddingInputs,
          // Embedding models keep no prefix cache to share.
          ...(config.scheduling.prefixGrouping && batch.endpoint !== '/v1/embeddings'
            ? { prefix: { minChars: config.scheduling.prefixMinChars, maxChars: config.scheduling.prefixMaxChars } }
            : {}),
        },
      );
      const errors = result.errors;
      let workers = 0;
      let minInFlight = config.gpu.maxInFlight;
      if (errors.length === 0 && result.model !== null) {
        const served = await liveModels(db, config.gpu.heartbeatMs);
        const live = served.find((m) => m.model === result.model);
        workers = live?.workers ?? 0;
        minInFlight = live?.minInFlight ?? minInFlight;
        if (workers === 0) {
          const known = served.map((m) => m.model).join(', ') || 'none';
          errors.push({
            code: 'model_not_found',
            message: `The model ${describeValue(result.model)} is not served by any GPU worker (serving now: ${safeText(known, 500)}).`,
            param: 'body.model',
            line: result.modelLine,
          });
        } else if (live !== undefined && !live.endpoints.includes(batch.endpoint)) {
          // vLLM serves only the routes of its model's kind: a generative model has no embeddings.
          errors.push({
            code: 'unsupported_endpoint',
            message: `The model ${describeValue(result.model)} is not served on ${batch.endpoint} (its engines serve ${live.endpoints.join(', ') || 'no batch endpoint'}).`,
            param: 'endpoint',
            line: result.modelLine,
          });
        }
      }
      if (errors.length > 0 || result.model === null) return failValidation(batchId, errors);

      await db
        .updateTable('batches')
        .set({
          status: sql<BatchStatus>`case when status = 'validating' then 'in_progress' else status end`,
          in_progress_at: sql<number>`coalesce(in_progress_at, ${nowSeconds()})`,
          model: result.model,
          request_total: result.requests,
        })
        .where('id', '=', batchId)
        .where('status', 'in', LIVE_BATCH_STATES)
        .execute();
      const chunkSize = chunkSizeFor({
        requests: result.requests,
        workers,
        chunkSize: config.batch.chunkSize,
        chunksPerWorker: config.batch.chunksPerWorker,
        minChunkSize: minInFlight,
      });
      let chunks = joinPieces(result.chunks, chunkSize);
      const grouped = result.prefixes?.plan({
        size: chunkSize,
        maxGroups: config.scheduling.prefixMaxGroups,
        minRequests: config.scheduling.prefixMinRequests,
      });
      if (grouped) {
        const keys = await writeMembers(store, segmentFolder(batchId), grouped.runs);
        chunks = grouped.chunks.map((c, i) => ({ ...c, members: keys[i] }));
      }
      log.info(
        {
          batchId,
          model: safeText(result.model),
          requests: result.requests,
          workers,
          chunkSize,
          chunks: chunks.length,
          ...(grouped ? { prefixGroups: grouped.groups } : {}),
        },
        'batch validated',
      );
      return {
        ok: true,
        model: result.model,
        endpoint: batch.endpoint,
        projectId: batch.project_id,
        requests: result.requests,
        inputKey,
        expiresAt: batch.expires_at,
        chunks,
        // Enough chunks in flight to keep every GPU serving the model busy (two each, plus one
        // queued behind each), but far below Temporal's limit on pending activities.
        maxPendingChunks: Math.min(
          MAX_PENDING_CHUNKS_CAP,
          Math.max(config.batch.maxPendingChunks, workers * (config.gpu.concurrentChunks + 1)),
        ),
        // A grouped plan's chunks do not end in input order, which writing the files ahead relies on.
        outputDrafts: grouped ? 0 : config.batch.outputDraftsPerBatch,
        ...(grouped ? { prefixGroups: grouped.groups } : {}),
        chunkActivity: chunkActivityOptions(config, chunkTaskQueue(config, result.model, result.requests)),
      };
    },

    /**
     * The terminal path of a step that ran out of attempts: the batch fails with the reason, keeping
     * the counts and usage of the lines it had finished. A batch that already ended is left alone.
     */
    async failBatch(input: { batchId: string; code: string; message: string }): Promise<void> {
      const errors: ValidationError[] = [
        { code: input.code, message: safeText(input.message, 1000), param: null, line: null },
      ];
      const counts = (await resultCounts(db, [input.batchId])).get(input.batchId);
      const updated = await db
        .updateTable('batches')
        .set({
          status: 'failed',
          failed_at: nowSeconds(),
          errors: jsonb(errors),
          ...(counts === undefined
            ? {}
            : {
                request_completed: counts.completed,
                request_failed: counts.failed,
                input_tokens: counts.input_tokens,
                cached_tokens: counts.cached_tokens,
                output_tokens: counts.output_tokens,
                reasoning_tokens: counts.reasoning_tokens,
              }),
        })
        .where('id', '=', input.batchId)
        .where('status', 'in', LIVE_BATCH_STATES)
        .executeTakeFirst();
      if (updated.numUpdatedRows > 0n) batchesFinishedTotal.inc({ status: 'failed' });
      log.error({ batchId: input.batchId, code: input.code, reason: errors[0]?.message }, 'batch failed');
      // It gets no files: its answers so far go with it (retry runs every line without a success).
      await dropSegments(input.batchId);
    },

    /** A chunk that ran out of Temporal retries: its unfinished lines fail, and the batch goes on. */
    async deadLetterChunk(input: {
      batchId: string;
      inputKey: string;
      chunk: ChunkPlan;
      reason: string;
    }): Promise<{ completed: number; failed: number }> {
      const members = await chunkMembers(store, input.chunk);
      const filled = await fillMissing(
        input.batchId,
        input.inputKey,
        input.chunk,
        members?.lines,
        'chunk_failed',
        `The request could not be run: its chunk failed repeatedly (${input.reason}).`,
        true,
      );
      log.warn(
        { batchId: input.batchId, chunk: input.chunk.index, failed: filled, reason: input.reason },
        'chunk dead-lettered',
      );
      deadLetteredChunksTotal.inc();
      // The whole chunk's counts, including what earlier attempts finished, for the workflow's progress.
      const { completed, failed } = await resultsInRange(db, input.batchId, input.chunk, members?.lines);
      return { completed, failed };
    },

    /**
     * While the batch runs: writes to its files the results of every line below `throughLine` (the
     * chunks before it ended) and of those after it that have one, so finalize has only the rest.
     */
    async draftOutputs(input: { batchId: string; throughLine: number }): Promise<void> {
      const batch = await loadBatch(db, input.batchId);
      if (!isLive(batch.status)) return;
      const started = performance.now();
      const { limit, written } = await drafts.draft(input.batchId, input.throughLine, progress);
      log.info(
        {
          batchId: input.batchId,
          throughLine: input.throughLine,
          upTo: limit,
          lines: written,
          ms: Math.round(performance.now() - started),
        },
        'results written ahead to the batch files',
      );
    },

    async markFinalizing(batchId: string): Promise<void> {
      await db
        .updateTable('batches')
        .set({ status: 'finalizing', finalizing_at: nowSeconds() })
        .where('id', '=', batchId)
        .where('status', '=', 'in_progress')
        .execute();
    },

    async finalizeBatch(input: {
      batchId: string;
      inputKey: string;
      outcome: Outcome;
      reason?: string;
    }): Promise<FinalSummary> {
      const { batchId, inputKey, outcome } = input;
      const batch = await loadBatch(db, batchId);
      // Already final (a retry after the status was written, or the reconciler got there first):
      // writing the files again would bring back ones the user has deleted since.
      if (!isLive(batch.status)) {
        await dropSegments(batchId);
        return {
          status: batch.status,
          completed: batch.request_completed,
          failed: batch.request_failed,
          outputFileId: batch.output_file_id,
          errorFileId: batch.error_file_id,
        };
      }
      const [code, message] =
        outcome === 'cancelled'
          ? ['batch_cancelled', 'This request was not executed because the batch was cancelled.']
          : outcome === 'expired'
            ? ['batch_expired', 'This request could not be executed before the completion window expired.']
            : outcome === 'aborted'
              ? [
                  'batch_aborted',
                  `This request was not executed: the batch stopped unexpectedly (${safeText(input.reason ?? 'its workflow ended', 300)}).`,
                ]
              : ['request_not_executed', 'This request was not executed.'];
      const started = performance.now();
      const filled = await fillMissing(batchId, inputKey, undefined, undefined, code, message, outcome === 'completed');
      const filledAt = performance.now();
      if (filled > 0 && outcome === 'completed')
        log.error({ batchId, filled }, 'lines without a result at finalize were reported as failed');

      const lifetime = batch.output_expires_after ?? config.files.outputLifetimeSeconds;
      const files = await writeOutputs(batchId, batch.project_id, lifetime);
      const writtenAt = performance.now();
      const tokens = (await resultCounts(db, [batchId])).get(batchId);
      const now = nowSeconds();
      const final = await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('batches')
          .select('status')
          .where('id', '=', batchId)
          .forUpdate()
          .executeTakeFirstOrThrow();
        if (!isLive(current.status)) return { status: current.status, changed: false };
        // A cancel that arrived while finishing still ends as cancelled: the API already said so.
        const status: BatchStatus =
          current.status === 'cancelling' || outcome === 'cancelled'
            ? 'cancelled'
            : outcome === 'aborted'
              ? 'failed'
              : outcome;
        const errors: ValidationError[] | undefined =
          status === 'failed'
            ? [
                {
                  code: 'batch_aborted',
                  message: `The batch stopped unexpectedly (${safeText(input.reason ?? 'its workflow ended', 300)}); finished requests are in its files, the rest in its error file.`,
                  param: null,
                  line: null,
                },
              ]
            : undefined;
        await trx
          .updateTable('batches')
          .set({
            status,
            output_file_id: files.outputFileId,
            error_file_id: files.errorFileId,
            request_completed: files.completed,
            request_failed: files.failed,
            input_tokens: tokens?.input_tokens ?? 0,
            cached_tokens: tokens?.cached_tokens ?? 0,
            output_tokens: tokens?.output_tokens ?? 0,
            reasoning_tokens: tokens?.reasoning_tokens ?? 0,
            ...(status === 'completed' ? { completed_at: now } : {}),
            ...(status === 'cancelled' ? { cancelled_at: now } : {}),
            ...(status === 'expired' ? { expired_at: now } : {}),
            ...(errors !== undefined ? { failed_at: now, errors: jsonb(errors) } : {}),
          })
          .where('id', '=', batchId)
          .execute();
        return { status, changed: true };
      });
      if (final.changed) batchesFinishedTotal.inc({ status: final.status });
      await dropSegments(batchId);
      log.info(
        {
          batchId,
          status: final.status,
          completed: files.completed,
          failed: files.failed,
          // Where finalize's time went: lines never run filled in, the files finished, and all of it
          // (the status set and the segments removed too).
          ms: {
            fill: Math.round(filledAt - started),
            files: Math.round(writtenAt - filledAt),
            total: Math.round(performance.now() - started),
          },
        },
        'batch finalized',
      );
      return { status: final.status, ...files };
    },
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
