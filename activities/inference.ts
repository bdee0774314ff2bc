// The GPU worker's activity: run one chunk of a batch against this worker's vLLM server. Many
// requests stay in flight (bounded by the worker's shared semaphore, so two chunks together keep
// the engine full across chunk boundaries); each finished request is persisted before it counts;
// a retried chunk skips what is already persisted; cancellation aborts in-flight requests.
import { setMaxListeners } from 'node:events';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, type Priority } from '@temporalio/common';

import { sleep } from '../lib/abortable.js';
import { asError } from '../lib/as-error.js';
import type { Config } from '../lib/config.js';
import type { FileStore } from '../lib/file-store.js';
import { isBlank, readLines } from '../lib/jsonl.js';
import type { Logger } from '../lib/logger.js';
import { chunksTotal, inflightRequests, requestsTotal, tokensTotal } from '../lib/metrics.js';
import { safeText } from '../lib/sanitize.js';
import type { Claim, Release, Semaphore } from '../lib/semaphore.js';
import { modelOfTaskQueue, smallBatchTaskQueue } from '../lib/temporal.js';
import type { Db } from '../schema/db.js';
import { FailureType } from '../workflows/failure-types.js';
import { describeEngineBody, isAuthFailure, modelOf, type Engine, type RetryPolicy } from './engine-client.js';
import { chunkMembers } from './prefix-groups.js';
import { resultRow, resultsInRange, ResultWriter } from './results.js';
import type { ChunkPlan } from './validate.js';

export interface InferenceDeps {
  db: Db;
  store: FileStore;
  engine: Engine;
  /** Shared by every chunk this worker runs: the engine's in-flight limit. */
  inFlight: Semaphore;
  config: Config;
  log: Logger;
  /** Told whenever a request finishes: the worker's watchdog tells a busy worker from a wedged one by it. */
  progress: () => void;
}

export interface ChunkInput {
  batchId: string;
  inputKey: string;
  endpoint: string;
  chunk: ChunkPlan;
  /** When the batch expires (epoch seconds): chunks of batches due sooner send first. Absent from chunks started before it was added. */
  deadline?: number;
}

export interface ChunkSummary {
  chunk: number;
  completed: number;
  failed: number;
  /** Requests this attempt sent to the engine (a resumed chunk sends only what was missing). */
  sent: number;
}

interface RequestLine {
  custom_id: string;
  body: unknown;
}

/**
 * Whose share of the engine a chunk's requests take: its batch's priority first (as Temporal orders
 * tasks), then its project's share (the fairness key its batch was started with), and within the
 * project small batches' chunks first, then the earliest deadline (the batch's expiry), then chunks
 * in the order they started (one batch's started together: in plan order), each sending all its lines before the next.
 */
function chunkClaim(
  config: Config,
  taskQueue: string,
  priority: Priority | undefined,
  deadline: number | undefined,
  chunk: number,
): Required<Claim> {
  const small = taskQueue === smallBatchTaskQueue(config, modelOfTaskQueue(config, taskQueue));
  return {
    key: priority?.fairnessKey ?? '',
    // Unset arrives as 0 (the protobuf default), which Temporal reads as its default level.
    priority: priority?.priorityKey || DEFAULT_PRIORITY_KEY,
    // Chunks of one batch often start in the same millisecond: their plan order settles it, so they
    // never take turns (which would mix their prompt prefixes at the engine).
    rank: [small ? 0 : 1, deadline ?? Number.POSITIVE_INFINITY, Date.now(), chunk],
  };
}

/** What Temporal gives a task without a priority key (its default levels are 1-5). */
const DEFAULT_PRIORITY_KEY = 3;

/**
 * Sends a batch request at vLLM `priority` at least `floor` (lower runs first; online requests have
 * 0), so an engine run with `--scheduling-policy priority` serves its online users first. A line's
 * own priority that is already lower in urgency is kept; one that is not a number is left for vLLM
 * to refuse, as it would have.
 */
function yieldToOnline(body: unknown, floor: number | undefined): void {
  if (floor === undefined || typeof body !== 'object' || body === null || Array.isArray(body)) return;
  const own = (body as { priority?: unknown }).priority;
  if (own === undefined || (typeof own === 'number' && own < floor)) (body as { priority: number }).priority = floor;
}

export function createInferenceActivities(deps: InferenceDeps) {
  const { db, store, engine, inFlight, config } = deps;
  const policy: RetryPolicy = {
    budgetMs: config.engine.retryBudgetMs,
    initialMs: config.engine.retryInitialMs,
    maxMs: config.engine.retryMaxMs,
  };

  return {
    async runChunk(input: ChunkInput): Promise<ChunkSummary> {
      const ctx = Context.current();
      const { batchId, chunk } = input;
      const log = deps.log.child({ batchId, chunk: chunk.index, attempt: ctx.info.attempt });
      // One signal stops everything in flight: Temporal's cancel, or this chunk failing.
      const stop = new AbortController();
      const signal = stop.signal;
      setMaxListeners(0, signal);
      const onCancel = (): void => {
        stop.abort();
      };
      ctx.cancellationSignal.addEventListener('abort', onCancel, { once: true });

      const members = await chunkMembers(store, chunk);
      const { done } = await resultsInRange(db, batchId, chunk, members?.lines);
      const writer = new ResultWriter(db, store, batchId, {
        flushRows: config.batch.resultFlushRows,
        flushBytes: config.batch.resultSegmentBytes,
        flushMs: config.batch.resultFlushMs,
      });
      const pending = new Set<Promise<void>>();
      let sent = 0;
      // The task queue is the model's own: metrics name the model even for a chunk that sends nothing.
      const chunkModel = modelOfTaskQueue(config, ctx.info.taskQueue);
      const claim = chunkClaim(config, ctx.info.taskQueue, ctx.info.priority, input.deadline, chunk.index);
      inFlight.setWeight(claim.key, ctx.info.priority?.fairnessWeight ?? 1);
      // A more urgent batch (Temporal priority 1) is also more urgent at the engine.
      const enginePriority =
        config.engine.batchPriority === 0 ? undefined : config.engine.batchPriority + claim.priority;
      let failure: unknown;
      const fail = (err: unknown): void => {
        failure ??= err;
        stop.abort();
      };
      const beat = (): void => {
        ctx.heartbeat({ persisted: done.size + writer.persisted, sent });
      };
      // Beat on a clock, not only on progress: a slow or recovering engine must not look like a dead worker.
      const heartbeatTimer = setInterval(beat, 1000);
      if (done.size > 0) log.info({ alreadyDone: done.size, of: chunk.requests }, 'resuming chunk');

      const runOne = async (lineNumber: number, request: RequestLine, permit: Release): Promise<void> => {
        const model = modelOf(request.body);
        // The gauge follows the permit: a request backing off holds no slot, so it is not in flight.
        let release: Release | undefined = permit;
        inflightRequests.inc({ model });
        const letGo = (): void => {
          if (release === undefined) return;
          release();
          release = undefined;
          inflightRequests.dec({ model });
        };
        try {
          yieldToOnline(request.body, enginePriority);
          const outcome = await engine.send(input.endpoint, request.body, policy, signal, async (ms) => {
            // Give the slot back while backing off, so other requests keep the engine busy.
            letGo();
            await sleep(ms, signal);
            release = await inFlight.acquire(signal, claim);
            inflightRequests.inc({ model });
          });
          if (isAuthFailure(outcome)) {
            // A misconfigured worker, not a bad request: every line would fail alike. The chunk fails
            // (and is retried, perhaps by a worker with the right key, then dead-lettered with this reason).
            throw ApplicationFailure.retryable(
              `the engine at ${engine.options.baseUrl} refused this GPU worker's credentials (VLLM_API_KEY): ${outcome.kind === 'http' ? outcome.status : ''} ${describeEngineBody(outcome.kind === 'http' ? outcome.body : null)}`,
              FailureType.EngineAuthFailed,
            );
          }
          if (
            (outcome.kind === 'network' || (outcome.kind === 'http' && outcome.status >= 500)) &&
            !(await engine.healthy())
          ) {
            // The engine itself is gone, not this request: fail the chunk so Temporal retries it
            // (perhaps on another GPU) instead of writing off every request it holds.
            const why = outcome.kind === 'network' ? outcome.message : `it answered ${outcome.status}`;
            throw ApplicationFailure.retryable(
              `the engine at ${engine.options.baseUrl} is unavailable: ${why}`,
              FailureType.EngineUnavailable,
            );
          }
          const row = resultRow(batchId, lineNumber, request.custom_id, outcome);
          writer.add(row);
          deps.progress();
          requestsTotal.inc({ model, outcome: row.ok ? 'completed' : 'failed' });
          tokensTotal.inc({ model, kind: 'prompt' }, row.input_tokens);
          tokensTotal.inc({ model, kind: 'cached' }, row.cached_tokens);
          tokensTotal.inc({ model, kind: 'completion' }, row.output_tokens);
          if (!row.ok)
            log.debug(
              {
                line: lineNumber,
                customId: safeText(request.custom_id),
                requestId: 'requestId' in outcome ? outcome.requestId : null,
                attempts: outcome.attempts,
              },
              'request failed',
            );
        } finally {
          letGo();
        }
      };

      try {
        // A prefix-grouped chunk sends one group's run after another, each read from its own span.
        for (const run of members?.runs ?? [{ ...chunk, lines: undefined }]) {
          // A resumed chunk does not read again the runs it has finished.
          if (run.lines?.every((l) => done.has(l)) === true) continue;
          const own = run.lines === undefined ? undefined : new Set(run.lines);
          const lines = readLines(store.read(input.inputKey, { start: run.byteStart, end: run.byteEnd }), {
            firstLine: run.firstLine,
            startOffset: run.byteStart,
          });
          for await (const line of lines) {
            if (signal.aborted) break;
            if (isBlank(line) || done.has(line.number) || (own !== undefined && !own.has(line.number))) continue;
            const request = JSON.parse(line.text) as RequestLine;
            // Waiting for a slot before reading on keeps at most the lines in flight in memory.
            const permit = await inFlight.acquire(signal, claim);
            sent++;
            const p = runOne(line.number, request, permit).catch((err: unknown) => {
              // While stopping, errors are what stopping looks like (aborted requests, bodies cut off).
              if (!signal.aborted) fail(err);
            });
            pending.add(p);
            void p.finally(() => pending.delete(p));
          }
          if (signal.aborted) break;
        }
      } catch (err) {
        if (!signal.aborted) fail(err);
      } finally {
        await Promise.all(pending);
        clearInterval(heartbeatTimer);
        ctx.cancellationSignal.removeEventListener('abort', onCancel);
      }
      // Whatever finished is kept, even when the chunk is being cancelled or has failed.
      await writer.flush();
      if (failure !== undefined) {
        chunksTotal.inc({ model: chunkModel, outcome: 'failed' });
        log.warn({ err: asError(failure).message, persisted: writer.persisted }, 'chunk attempt failed');
        throw asError(failure);
      }
      if (ctx.cancellationSignal.aborted) {
        chunksTotal.inc({ model: chunkModel, outcome: 'cancelled' });
        log.info({ sent, persisted: writer.persisted }, 'chunk cancelled');
        await ctx.cancelled;
      }
      const { completed, failed } = await resultsInRange(db, batchId, chunk, members?.lines);
      chunksTotal.inc({ model: chunkModel, outcome: 'completed' });
      beat();
      return { chunk: chunk.index, completed, failed, sent };
    },
  };
}

export type InferenceActivities = ReturnType<typeof createInferenceActivities>;
