// Persisting finished requests. A request counts only once its result is persisted: its output line
// in a segment of the file store, and a row naming it (with its tokens) in result_groups, written by a
// transaction that skips lines already there, so a retried chunk (or a zombie attempt still running
// beside its retry) can never count or write a line twice.
import { sql } from 'kysely';

import { asError } from '../lib/as-error.js';
import type { FileStore } from '../lib/file-store.js';
import { newId, nowSeconds } from '../lib/ids.js';
import { jsonb, type Db } from '../schema/db.js';
import { bucketOf, persistedLines } from '../schema/result-groups.js';
import { LIVE_BATCH_STATES, type NewResultGroup } from '../schema/tables.js';
import type { OutputLine } from '../wire/openai.js';
import type { AttemptError, FinalOutcome } from './engine-client.js';
import { writeSegment } from './result-segments.js';

/** A finished request, as persisted. */
export interface ResultRow {
  batch_id: string;
  line: number;
  custom_id: string;
  ok: boolean;
  /** The complete output-file line, serialized once when the request finishes. */
  output: string;
  input_tokens: number;
  cached_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  /** Set for requests that failed for good: they also go to the dead-letter table. */
  deadLetter?: { attempts: number; errors: AttemptError[] };
}

export interface TokenUsage {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
}

const NO_USAGE: TokenUsage = { input: 0, cached: 0, output: 0, reasoning: 0 };

function num(x: unknown): number {
  return typeof x === 'number' && Number.isFinite(x) ? x : 0;
}

/** Token counts from any endpoint's `usage` (chat/completions/embeddings or responses naming). */
export function usageOf(body: unknown): TokenUsage {
  if (typeof body !== 'object' || body === null) return NO_USAGE;
  const usage = (body as { usage?: unknown }).usage;
  if (typeof usage !== 'object' || usage === null) return NO_USAGE;
  const u = usage as Record<string, unknown>;
  const details = (x: unknown, key: string): number => num((x as Record<string, unknown> | null)?.[key]);
  return {
    input: num(u.prompt_tokens ?? u.input_tokens),
    cached: details(u.prompt_tokens_details ?? u.input_tokens_details, 'cached_tokens'),
    output: num(u.completion_tokens ?? u.output_tokens),
    reasoning: details(u.completion_tokens_details ?? u.output_tokens_details, 'reasoning_tokens'),
  };
}

export function outputLine(customId: string, response: OutputLine['response'], error: OutputLine['error']): string {
  const line: OutputLine = { id: newId('batch_req_'), custom_id: customId, response, error };
  return JSON.stringify(line);
}

/**
 * A success line around the engine's answer exactly as it sent it (no second serialisation), unless
 * the answer spans lines (a pretty-printing proxy), which JSONL cannot hold.
 */
function successLine(customId: string, status: number, requestId: string, rawBody: string, body: unknown): string {
  const compact = rawBody.includes('\n') || rawBody.includes('\r') ? JSON.stringify(body) : rawBody;
  return `{"id":"${newId('batch_req_')}","custom_id":${JSON.stringify(customId)},"response":{"status_code":${status},"request_id":${JSON.stringify(requestId)},"body":${compact}},"error":null}`;
}

/** The row for a request the engine finished with (success, engine error, or unreachable engine). */
export function resultRow(batchId: string, line: number, customId: string, outcome: FinalOutcome): ResultRow {
  const base = { batch_id: batchId, line, custom_id: customId };
  if (outcome.kind === 'ok') {
    const usage = usageOf(outcome.body);
    return {
      ...base,
      ok: true,
      output: successLine(
        customId,
        outcome.status,
        outcome.requestId ?? newId('batch_req_'),
        outcome.raw,
        outcome.body,
      ),
      input_tokens: usage.input,
      cached_tokens: usage.cached,
      output_tokens: usage.output,
      reasoning_tokens: usage.reasoning,
    };
  }
  // A request that failed for good: its line says why, and it goes to the dead letters.
  const failed = (output: string): ResultRow => ({
    ...base,
    ok: false,
    output,
    input_tokens: 0,
    cached_tokens: 0,
    output_tokens: 0,
    reasoning_tokens: 0,
    deadLetter: { attempts: outcome.attempts, errors: outcome.errors },
  });
  if (outcome.kind === 'http') {
    const requestId = outcome.requestId ?? newId('batch_req_');
    return failed(
      outputLine(customId, { status_code: outcome.status, request_id: requestId, body: outcome.body }, null),
    );
  }
  if (outcome.kind === 'unsendable')
    return failed(outputLine(customId, null, { code: 'invalid_request', message: outcome.message }));
  if (outcome.kind === 'too_large')
    return failed(outputLine(customId, null, { code: 'response_too_large', message: outcome.message }));
  return failed(
    outputLine(customId, null, {
      code: outcome.timeout ? 'request_timeout' : 'engine_unavailable',
      message: `${outcome.message} (gave up after ${outcome.attempts} attempts)`,
    }),
  );
}

/** A line that never ran (cancelled, expired, or its chunk was dead-lettered). */
export function notRunRow(batchId: string, line: number, customId: string, code: string, message: string): ResultRow {
  return {
    batch_id: batchId,
    line,
    custom_id: customId,
    ok: false,
    output: outputLine(customId, null, { code, message }),
    input_tokens: 0,
    cached_tokens: 0,
    output_tokens: 0,
    reasoning_tokens: 0,
  };
}

/**
 * What is already persisted for a range of a batch's lines (a chunk's; of a prefix-grouped chunk, its
 * `members` only): the lines, and how many succeeded or failed.
 */
export async function resultsInRange(
  db: Db,
  batchId: string,
  range: { firstLine: number; lastLine: number },
  members?: ReadonlySet<number>,
): Promise<{ completed: number; failed: number; done: Set<number> }> {
  const { done, failed } = await persistedLines(db, batchId, range, members);
  return { completed: done.size - failed.size, failed: failed.size, done };
}

class BatchEnded extends Error {}

type TokenColumns = Pick<ResultRow, 'input_tokens' | 'cached_tokens' | 'output_tokens' | 'reasoning_tokens'>;

/**
 * Writes the rows whose lines have no result yet: their output lines as one segment in the file
 * store, then, in one transaction, a result_groups row per bucket naming exactly those lines (and
 * their tokens) and, for requests that failed for good, the dead letters; none once the batch has
 * ended. Returns how many rows it wrote.
 */
export async function persistResults(db: Db, store: FileStore, batchId: string, rows: ResultRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  const sorted = [...rows].sort((a, b) => a.line - b.line).filter((r, i, all) => all[i - 1]?.line !== r.line);
  const segment = await writeSegment(store, batchId, sorted);
  let written: number;
  try {
    written = await persistIfLive(db, batchId, sorted, segment.key, segment.ranges);
  } catch (err) {
    // Rolled back by us: nothing names the segment. (Any other failure may have committed: it stays,
    // and goes with the batch's folder at finalize.)
    if (!(err instanceof BatchEnded)) throw err;
    written = 0;
  }
  if (written === 0) await store.delete(segment.key).catch(() => undefined);
  return written;
}

async function persistIfLive(
  db: Db,
  batchId: string,
  rows: ResultRow[],
  segment: string,
  ranges: Map<number, { start: number; end: number }>,
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    // A batch that has ended (the reconciler finalized it while a chunk of its still ran) takes no
    // more results: its files are written. (No lock needed: finalize first gives every line a row, so
    // a write that slips past this check finds its lines counted and adds nothing.)
    const batch = await trx.selectFrom('batches').select('status').where('id', '=', batchId).executeTakeFirst();
    if (batch === undefined || !(LIVE_BATCH_STATES as readonly string[]).includes(batch.status)) throw new BatchEnded();
    // Writers of the same bucket take turns (in bucket order, so they cannot deadlock); writers of
    // other buckets, and of other batches, do not wait for each other.
    const buckets = [...ranges.keys()].sort((a, b) => a - b);
    for (const bucket of buckets) await sql`select pg_advisory_xact_lock(hashtext(${batchId}), ${bucket})`.execute(trx);
    const existing = await trx
      .selectFrom('result_groups')
      .select('lines')
      .where('batch_id', '=', batchId)
      .where('bucket', 'in', buckets)
      .execute();
    const there = new Set(existing.flatMap((g) => g.lines));
    const fresh = rows.filter((r) => !there.has(r.line));
    if (fresh.length === 0) return 0;
    type Group = NewResultGroup & { lines: number[]; failed: number[] } & Record<keyof TokenColumns, number>;
    const groups = new Map<number, Group>();
    for (const r of fresh) {
      const bucket = bucketOf(r.line);
      let group = groups.get(bucket);
      if (group === undefined) {
        const range = ranges.get(bucket) ?? { start: 0, end: 0 };
        group = {
          batch_id: batchId,
          bucket,
          segment,
          byte_start: range.start,
          byte_end: range.end,
          lines: [],
          failed: [],
          input_tokens: 0,
          cached_tokens: 0,
          output_tokens: 0,
          reasoning_tokens: 0,
        };
        groups.set(bucket, group);
      }
      group.lines.push(r.line);
      if (!r.ok) group.failed.push(r.line);
      group.input_tokens += r.input_tokens;
      group.cached_tokens += r.cached_tokens;
      group.output_tokens += r.output_tokens;
      group.reasoning_tokens += r.reasoning_tokens;
    }
    await trx
      .insertInto('result_groups')
      .values([...groups.values()])
      .execute();
    // Only lines this call wrote: a line that was already there keeps its own story.
    const letters = fresh.filter((r) => r.deadLetter !== undefined);
    if (letters.length > 0) {
      const created = nowSeconds();
      await trx
        .insertInto('dead_letters')
        .values(
          letters.map((r) => ({
            batch_id: batchId,
            line: r.line,
            custom_id: r.custom_id,
            attempts: r.deadLetter?.attempts ?? 0,
            errors: jsonb(r.deadLetter?.errors ?? []),
            created_at: created,
          })),
        )
        .onConflict((c) => c.columns(['batch_id', 'line']).doNothing())
        .execute();
    }
    return fresh.length;
  });
}

/**
 * Buffers finished requests and writes them in batches (one segment and one round trip for many
 * rows), in order, one write at a time. A failed write fails the next add/flush: the chunk then fails and is retried,
 * which re-runs only what was not persisted.
 */
export class ResultWriter {
  private buffer: ResultRow[] = [];
  private bufferedChars = 0;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;
  private timer: NodeJS.Timeout | undefined;
  persisted = 0;

  constructor(
    private readonly db: Db,
    private readonly store: FileStore,
    private readonly batchId: string,
    /** A flush goes when `flushRows` rows or `flushBytes` of output lines are waiting, or after `flushMs`. */
    private readonly options: { flushRows: number; flushBytes: number; flushMs: number },
    private readonly onPersisted: (rows: ResultRow[]) => void = () => undefined,
  ) {}

  add(row: ResultRow): void {
    if (this.failure !== undefined) throw asError(this.failure);
    this.buffer.push(row);
    // Characters stand in for bytes: a UTF-8 byte count per row would cost more than it saves.
    this.bufferedChars += row.output.length;
    if (this.buffer.length >= this.options.flushRows || this.bufferedChars >= this.options.flushBytes)
      void this.flush().catch(() => undefined);
    else
      this.timer ??= setTimeout(() => {
        void this.flush().catch(() => undefined);
      }, this.options.flushMs);
  }

  /** Writes everything added so far; rejects if any write failed. */
  flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const rows = this.buffer;
    this.buffer = [];
    this.bufferedChars = 0;
    if (rows.length > 0) {
      this.writing = this.writing.then(async () => {
        if (this.failure !== undefined) return;
        try {
          await persistResults(this.db, this.store, this.batchId, rows);
          this.persisted += rows.length;
          this.onPersisted(rows);
        } catch (err) {
          this.failure = err;
        }
      });
    }
    return this.writing.then(() => {
      if (this.failure !== undefined) throw asError(this.failure);
    });
  }
}
