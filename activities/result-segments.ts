// Where finished requests' output lines are kept until finalize: segment objects in the file store,
// one per flush of results, never one per request; Postgres keeps only which lines each holds
// (result_groups), so the database carries what exactly-once needs and not the answers.
//
// A segment is sorted by line, each line `<input line>\t<output line>\n`, so the lines of one bucket
// are one byte range of it, and finalize merges a bucket's segments in input order while holding
// only a read window of each.
import { randomBytes } from 'node:crypto';

import { writeBytes, type FileStore } from '../lib/file-store.js';
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
  const ranges = new Map<number, { start: number; end: number }>();
  let offset = 0;
  const texts: string[] = [];
  for (const { line, output } of lines) {
    const text = `${line}\t${output}\n`;
    const bytes = Buffer.byteLength(text);
    const bucket = bucketOf(line);
    const range = ranges.get(bucket);
    if (range === undefined) ranges.set(bucket, { start: offset, end: offset + bytes });
    else range.end = offset + bytes;
    offset += bytes;
    texts.push(text);
  }
  // One write: a flush is bounded (RESULT_SEGMENT_BYTES) and already in memory, and a write per line
  // is a system call per line.
  await writeBytes(store, key, texts.join(''));
  return { key, ranges };
}

export interface StoredResult {
  line: number;
  ok: boolean;
  /** The output-file line, its newline included, as bytes: finalize copies it without decoding it. */
  output: Buffer;
}

const NEWLINE = 0x0a;
const TAB = 0x09;

export interface RawRecord {
  line: number;
  output: Buffer;
}

/**
 * The records of a segment's byte range, split as bytes (88 KB embeddings lines are copied, not
 * decoded and encoded again): the input line number before the tab, the output line after it. A
 * record is a view of the window it was read in; only one that straddles two windows is copied.
 */
async function* segmentRecords(key: string, chunks: AsyncIterable<Buffer>): AsyncGenerator<RawRecord> {
  const damaged = (): Error => new Error(`result segment ${key} is damaged`);
  const record = (buf: Buffer, at: number, nl: number): RawRecord => {
    const tab = buf.indexOf(TAB, at);
    const line = Number(buf.toString('latin1', at, tab));
    if (tab <= at || tab > nl || !Number.isInteger(line)) throw damaged();
    return { line, output: buf.subarray(tab + 1, nl + 1) };
  };
  // The start of a record whose newline has not come yet (a line longer than a read window).
  let pending: Buffer[] = [];
  for await (const chunk of chunks) {
    // A segment shorter than its range reads short.
    if (chunk.length === 0) throw damaged();
    let at = 0;
    if (pending.length > 0) {
      const nl = chunk.indexOf(NEWLINE);
      if (nl < 0) {
        pending.push(chunk);
        continue;
      }
      const joined = Buffer.concat([...pending, chunk.subarray(0, nl + 1)]);
      pending = [];
      yield record(joined, 0, joined.length - 1);
      at = nl + 1;
    }
    for (let nl = chunk.indexOf(NEWLINE, at); nl >= 0; nl = chunk.indexOf(NEWLINE, at)) {
      yield record(chunk, at, nl);
      at = nl + 1;
    }
    if (at < chunk.length) pending.push(chunk.subarray(at));
  }
  // A group's range ends with a record's newline.
  if (pending.length > 0) throw damaged();
}

/**
 * A byte range of an object, read in windows, each read whole before the next is asked for: no read
 * stays open while the merge waits on other segments (an S3 client has a bounded pool of connections,
 * and a bucket may have hundreds of segments).
 */
async function* inWindows(store: FileStore, key: string, start: number, end: number, window: number) {
  for (let at = start; at < end; at += window) {
    const parts: Buffer[] = [];
    const until = Math.min(at + window, end);
    for await (const part of store.read(key, { start: at, end: until, pieceBytes: until - at }))
      parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part as Uint8Array));
    // Read in one piece (a local file), the window is that piece: no copy.
    yield parts.length === 1 && parts[0] !== undefined ? parts[0] : Buffer.concat(parts);
  }
}

/** The records in bytes [start, end) of a segment (a range of whole records), read in windows of `window` bytes. */
export function readSegment(
  store: FileStore,
  key: string,
  start: number,
  end: number,
  window: number,
): AsyncGenerator<RawRecord> {
  return segmentRecords(key, inWindows(store, key, start, end, window));
}

/** A group's counted lines in `wanted`, read from its segment's bytes (or, stored before 0008, from legacy_batch_results). */
async function* groupLines(
  db: Db,
  store: FileStore,
  batchId: string,
  group: { segment: string | null; byte_start: number; byte_end: number; lines: number[] },
  wanted: (line: number) => boolean,
  window: number,
): AsyncGenerator<RawRecord> {
  const counted = new Set(group.lines.filter(wanted));
  let seen = 0;
  if (counted.size === 0) return;
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
      yield { line: row.line, output: Buffer.from(`${row.output}\n`) };
    }
  } else {
    for await (const record of readSegment(store, group.segment, group.byte_start, group.byte_end, window)) {
      if (!counted.has(record.line)) continue; // a copy another attempt's row counts, or a line out of range
      seen++;
      yield record;
    }
  }
  if (seen !== counted.size)
    throw new Error(
      `result segment ${group.segment ?? '(legacy_batch_results)'} of ${batchId} holds ${seen} of the ${counted.size} lines it should`,
    );
}

async function pull(source: AsyncGenerator<RawRecord>): Promise<RawRecord | undefined> {
  const next = await source.next();
  return next.done === true ? undefined : next.value;
}

/** Input lines [from, to): `to` omitted, to the end. */
export interface LineSpan {
  from: number;
  to?: number;
}

/**
 * The persisted results of a batch (of its lines in `span`) in input order, streamed: bucket by
 * bucket, a merge of the bucket's segments (each already in order), so memory holds a read window
 * (`windowBytes`, and at least a line) per segment of one bucket.
 */
export async function* resultsInOrder(
  db: Db,
  store: FileStore,
  batchId: string,
  windowBytes: number,
  span: LineSpan = { from: 0 },
): AsyncGenerator<StoredResult> {
  const { from, to } = span;
  const wanted = (line: number): boolean => line >= from && (to === undefined || line < to);
  if (to !== undefined && to <= from) return;
  let query = db
    .selectFrom('result_groups')
    .select('bucket')
    .distinct()
    .where('batch_id', '=', batchId)
    .where('bucket', '>=', bucketOf(from));
  if (to !== undefined) query = query.where('bucket', '<=', bucketOf(to - 1));
  const buckets = await query.orderBy('bucket').execute();
  for (const { bucket } of buckets) {
    const groups = await db
      .selectFrom('result_groups')
      .select(['segment', 'byte_start', 'byte_end', 'lines', 'failed'])
      .where('batch_id', '=', batchId)
      .where('bucket', '=', bucket)
      .execute();
    const failed = new Set(groups.flatMap((g) => g.failed));
    const sources = groups.map((g) => groupLines(db, store, batchId, g, wanted, windowBytes));
    const heads: (RawRecord | undefined)[] = [];
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
