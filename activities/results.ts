// Persisting finished requests. A request counts only once its row is in batch_results; the row
// and the batch's counters change in one statement, and (batch, line) makes a repeat a no-op, so a
// retried chunk can never count or write a line twice.
import { sql } from 'kysely';

import { asError } from '../lib/as-error.js';
import { newId, nowSeconds } from '../lib/ids.js';
import { jsonb, type Db } from '../schema/db.js';
import { LIVE_BATCH_STATES, type NewBatchResult } from '../schema/tables.js';
import type { OutputLine } from '../wire/openai.js';
import type { AttemptError, FinalOutcome } from './engine-client.js';

export interface ResultRow extends NewBatchResult {
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

/** What is already persisted for a range of a batch's lines (a chunk's): the lines, and how many succeeded or failed. */
export async function resultsInRange(
  db: Db,
  batchId: string,
  range: { firstLine: number; lastLine: number },
): Promise<{ completed: number; failed: number; done: Set<number> }> {
  const rows = await db
    .selectFrom('batch_results')
    .select(['line', 'ok'])
    .where('batch_id', '=', batchId)
    .where('line', '>=', range.firstLine)
    .where('line', '<=', range.lastLine)
    .execute();
  const done = new Set<number>();
  let completed = 0;
  for (const r of rows) {
    done.add(r.line);
    if (r.ok) completed++;
  }
  return { completed, failed: rows.length - completed, done };
}

class BatchEnded extends Error {}

/**
 * Inserts the rows that are not there yet and adds exactly those to the batch's counters (and, for
 * requests that failed for good, to the dead letters), all in one transaction; none once the batch
 * has ended. Returns how many rows it wrote.
 */
export async function persistResults(db: Db, batchId: string, rows: ResultRow[]): Promise<number> {
  try {
    return await persistIfLive(db, batchId, rows);
  } catch (err) {
    if (err instanceof BatchEnded) return 0;
    throw err;
  }
}

async function persistIfLive(db: Db, batchId: string, rows: ResultRow[]): Promise<number> {
  if (rows.length === 0) return 0;
  return db.transaction().execute(async (trx) => {
    const inserted = await trx
      .insertInto('batch_results')
      // In line order: two writers of overlapping lines (a zombie attempt and its retry) then take the
      // index's locks in the same order and cannot deadlock.
      .values([...rows].sort((a, b) => a.line - b.line).map(({ deadLetter: _dl, ...row }) => row))
      .onConflict((c) => c.columns(['batch_id', 'line']).doNothing())
      .returning(['line', 'ok', 'input_tokens', 'cached_tokens', 'output_tokens', 'reasoning_tokens'])
      .execute();
    if (inserted.length === 0) return 0;
    const sum = { completed: 0, failed: 0, input: 0, cached: 0, output: 0, reasoning: 0 };
    for (const r of inserted) {
      if (r.ok) sum.completed++;
      else sum.failed++;
      sum.input += r.input_tokens;
      sum.cached += r.cached_tokens;
      sum.output += r.output_tokens;
      sum.reasoning += r.reasoning_tokens;
    }
    const counted = await trx
      .updateTable('batches')
      .set({
        request_completed: sql`request_completed + ${sum.completed}`,
        request_failed: sql`request_failed + ${sum.failed}`,
        input_tokens: sql`input_tokens + ${sum.input}`,
        cached_tokens: sql`cached_tokens + ${sum.cached}`,
        output_tokens: sql`output_tokens + ${sum.output}`,
        reasoning_tokens: sql`reasoning_tokens + ${sum.reasoning}`,
      })
      .where('id', '=', batchId)
      // A batch that has ended (the reconciler finalized it while a chunk of its still ran) takes
      // no more results: its files are written. Rolled back, so the rows are not kept either.
      .where('status', 'in', LIVE_BATCH_STATES)
      .executeTakeFirst();
    if (counted.numUpdatedRows === 0n) throw new BatchEnded();
    // Only lines this call wrote: a row that was already there keeps its own story.
    const written = new Set(inserted.map((r) => r.line));
    const letters = rows.filter((r) => r.deadLetter !== undefined && written.has(r.line));
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
    return inserted.length;
  });
}

/**
 * Buffers finished requests and writes them in batches (one round trip for many rows), in order,
 * one write at a time. A failed write fails the next add/flush: the chunk then fails and is retried,
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
          await persistResults(this.db, this.batchId, rows);
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
