// Where finished requests' output lines are kept until finalize: segment objects in the file store,
// one per flush of results, never one per request; Postgres keeps only which lines each holds
// (result_groups), so the database carries what exactly-once needs and not the answers.
//
// A segment is sorted by line, each line `<input line>\t<output line>\n`, so the lines of one bucket
// are one byte range of it, and finalize merges a bucket's segments in input order while holding
// only a read window of each.
import { randomBytes } from 'node:crypto';

import { writeChunk, type FileStore } from '../lib/file-store.js';
import { readLines } from '../lib/jsonl.js';
import type { Db } from '../schema/db.js';
import { bucketOf, segmentFolder } from '../schema/result-groups.js';

export interface SegmentLine {
  line: number;
  output: string;
}

export interface WrittenSegment {
  key: string;
  /** Per bucket, the bytes of the segment holding its lines. */
  ranges: Map<number, { start: number; end: number }>;
}

/** Writes lines (ascending, one per line number) as one segment object. */
export async function writeSegment(store: FileStore, batchId: string, lines: SegmentLine[]): Promise<WrittenSegment> {
  const key = `${segmentFolder(batchId)}${randomBytes(12).toString('hex')}.seg`;
  const writer = await store.createWriter(key);
  const ranges = new Map<number, { start: number; end: number }>();
  let offset = 0;
  try {
    for (const { line, output } of lines) {
      const text = `${line}\t${output}\n`;
      const bytes = Buffer.byteLength(text);
      const bucket = bucketOf(line);
      const range = ranges.get(bucket);
      if (range === undefined) ranges.set(bucket, { start: offset, end: offset + bytes });
      else range.end = offset + bytes;
      offset += bytes;
      await writeChunk(writer.stream, text);
    }
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return { key, ranges };
}

export interface StoredResult {
  line: number;
  ok: boolean;
  /** The output-file line, without its newline. */
  output: string;
}

/**
 * A byte range of an object, read in windows, each read whole before the next is asked for: no read
 * stays open while the merge waits on other segments (an S3 client has a bounded pool of connections,
 * and a bucket may have hundreds of segments).
 */
async function* inWindows(store: FileStore, key: string, start: number, end: number, window: number) {
  for (let at = start; at < end; at += window) {
    const parts: Buffer[] = [];
    for await (const part of store.read(key, { start: at, end: Math.min(at + window, end) }))
      parts.push(Buffer.from(part as Uint8Array));
    yield Buffer.concat(parts);
  }
}

/** A group's counted lines, read from its segment's bytes (or, stored before 0008, from legacy_batch_results). */
async function* groupLines(
  db: Db,
  store: FileStore,
  batchId: string,
  group: { segment: string | null; byte_start: number; byte_end: number; lines: number[] },
  window: number,
): AsyncGenerator<SegmentLine> {
  const counted = new Set(group.lines);
  let seen = 0;
  if (group.segment === null) {
    const first = group.lines[0] ?? 0;
    const last = group.lines[group.lines.length - 1] ?? -1;
    const rows = await db
      .selectFrom('legacy_batch_results')
      .select(['line', 'output'])
      .where('batch_id', '=', batchId)
      .where('line', '>=', first)
      .where('line', '<=', last)
      .orderBy('line')
      .execute();
    for (const row of rows) {
      if (!counted.has(row.line)) continue;
      seen++;
      yield row;
    }
  } else {
    for await (const { text } of readLines(inWindows(store, group.segment, group.byte_start, group.byte_end, window))) {
      const tab = text.indexOf('\t');
      const line = Number(text.slice(0, tab));
      if (tab < 1 || !Number.isInteger(line)) throw new Error(`result segment ${group.segment} is damaged`);
      if (!counted.has(line)) continue; // a copy another attempt's row counts
      seen++;
      yield { line, output: text.slice(tab + 1) };
    }
  }
  if (seen !== counted.size)
    throw new Error(
      `result segment ${group.segment ?? '(legacy_batch_results)'} of ${batchId} holds ${seen} of the ${counted.size} lines it should`,
    );
}

async function pull(source: AsyncGenerator<SegmentLine>): Promise<SegmentLine | undefined> {
  const next = await source.next();
  return next.done === true ? undefined : next.value;
}

/**
 * Every persisted result of a batch in input order, streamed: bucket by bucket, a merge of the
 * bucket's segments (each already in order), so memory holds a read window (`windowBytes`, and at
 * least a line) per segment of one bucket.
 */
export async function* resultsInOrder(
  db: Db,
  store: FileStore,
  batchId: string,
  windowBytes: number,
): AsyncGenerator<StoredResult> {
  const buckets = await db
    .selectFrom('result_groups')
    .select('bucket')
    .distinct()
    .where('batch_id', '=', batchId)
    .orderBy('bucket')
    .execute();
  for (const { bucket } of buckets) {
    const groups = await db
      .selectFrom('result_groups')
      .select(['segment', 'byte_start', 'byte_end', 'lines', 'failed'])
      .where('batch_id', '=', batchId)
      .where('bucket', '=', bucket)
      .execute();
    const failed = new Set(groups.flatMap((g) => g.failed));
    const sources = groups.map((g) => groupLines(db, store, batchId, g, windowBytes));
    const heads: (SegmentLine | undefined)[] = [];
    try {
      // Every segment's first read at once: a bucket of small flushes is many small ranged reads.
      heads.push(...(await Promise.all(sources.map(pull))));
      for (;;) {
        let next = -1;
        for (let i = 0; i < heads.length; i++) {
          const head = heads[i];
          if (head !== undefined && (next === -1 || head.line < (heads[next]?.line ?? Infinity))) next = i;
        }
        const head = heads[next];
        const source = sources[next];
        if (head === undefined || source === undefined) break;
        yield { line: head.line, ok: !failed.has(head.line), output: head.output };
        heads[next] = await pull(source);
      }
    } finally {
      // An early stop (a failed write) must not leave segment reads open.
      await Promise.all(sources.map((s) => s.return(undefined)));
    }
  }
}
