// The result index: which lines of a batch have a result and which of them failed, from the small
// rows results keep in Postgres (their output lines are in the file store; activities/result-segments.ts).
import { sql } from 'kysely';

import type { Db } from './db.js';
import { RESULT_BUCKET_LINES } from './tables.js';

/** The file-store folder of a batch's result segments: removed whole once its files are written. */
export function segmentFolder(batchId: string): string {
  return `results/${batchId}/`;
}

export function bucketOf(line: number): number {
  return Math.floor(line / RESULT_BUCKET_LINES);
}

/**
 * The lines of a batch (or of a range of its lines, or of those only `members`) that have a result, and
 * which of them failed.
 */
export async function persistedLines(
  db: Db,
  batchId: string,
  range?: { firstLine: number; lastLine: number },
  members?: ReadonlySet<number>,
): Promise<{ done: Set<number>; failed: Set<number> }> {
  let query = db.selectFrom('result_groups').select(['lines', 'failed']).where('batch_id', '=', batchId);
  if (range !== undefined)
    query = query.where('bucket', '>=', bucketOf(range.firstLine)).where('bucket', '<=', bucketOf(range.lastLine));
  const inRange = (line: number): boolean =>
    (range === undefined || (line >= range.firstLine && line <= range.lastLine)) &&
    (members === undefined || members.has(line));
  const done = new Set<number>();
  const failed = new Set<number>();
  for (const group of await query.execute()) {
    for (const line of group.lines) if (inRange(line)) done.add(line);
    for (const line of group.failed) if (inRange(line)) failed.add(line);
  }
  return { done, failed };
}

/** The lines of a batch that succeeded, ascending. */
export async function succeededLines(db: Db, batchId: string): Promise<number[]> {
  const { done, failed } = await persistedLines(db, batchId);
  return [...done].filter((line) => !failed.has(line)).sort((a, b) => a - b);
}

export interface ResultCounts {
  completed: number;
  failed: number;
  input_tokens: number;
  cached_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
}

/** What the batches' results so far add up to (a running batch's counts: its own row gets them at the end). */
export async function resultCounts(db: Db, batchIds: string[]): Promise<Map<string, ResultCounts>> {
  const counts = new Map<string, ResultCounts>();
  if (batchIds.length === 0) return counts;
  const rows = await db
    .selectFrom('result_groups')
    .select((eb) => [
      'batch_id',
      eb.fn.sum<number>(sql`cardinality(lines)`).as('done'),
      eb.fn.sum<number>(sql`cardinality(failed)`).as('failed'),
      eb.fn.sum<number>('input_tokens').as('input_tokens'),
      eb.fn.sum<number>('cached_tokens').as('cached_tokens'),
      eb.fn.sum<number>('output_tokens').as('output_tokens'),
      eb.fn.sum<number>('reasoning_tokens').as('reasoning_tokens'),
    ])
    .where('batch_id', 'in', batchIds)
    .groupBy('batch_id')
    .execute();
  for (const r of rows)
    counts.set(r.batch_id, {
      completed: r.done - r.failed,
      failed: r.failed,
      input_tokens: r.input_tokens,
      cached_tokens: r.cached_tokens,
      output_tokens: r.output_tokens,
      reasoning_tokens: r.reasoning_tokens,
    });
  return counts;
}
