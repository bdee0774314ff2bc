// The result index: which lines of a batch have a result and which of them failed, from the small
// rows results keep in Postgres (their output lines are in the file store; activities/result-segments.ts).
import type { Db } from './db.js';
import { RESULT_BUCKET_LINES } from './tables.js';

export function bucketOf(line: number): number {
  return Math.floor(line / RESULT_BUCKET_LINES);
}

/** The lines of a batch (or of a range of its lines) that have a result, and which of them failed. */
export async function persistedLines(
  db: Db,
  batchId: string,
  range?: { firstLine: number; lastLine: number },
): Promise<{ done: Set<number>; failed: Set<number> }> {
  let query = db.selectFrom('result_groups').select(['lines', 'failed']).where('batch_id', '=', batchId);
  if (range !== undefined)
    query = query.where('bucket', '>=', bucketOf(range.firstLine)).where('bucket', '<=', bucketOf(range.lastLine));
  const inRange = (line: number): boolean => range === undefined || (line >= range.firstLine && line <= range.lastLine);
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
