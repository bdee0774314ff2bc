// Consecutive ranges of an input file's lines (a batch's chunks, an import's pages), each with the
// byte span to read it back from, so a later activity fetches only its own part of the file.
import type { Line } from '../lib/jsonl.js';

export interface LineRange {
  /** First and last line numbers (1-based, inclusive). */
  firstLine: number;
  lastLine: number;
  /** Byte range of the range's lines in the file, end exclusive. */
  byteStart: number;
  byteEnd: number;
}

/**
 * Adds `line` to the last of `ranges`, or to a new range when there is none yet or the last is
 * `full`; `start` gives a new range's own fields (from its index). Returns the range the line is in.
 */
export function addLine<R extends LineRange>(
  ranges: R[],
  line: Line,
  full: (last: R) => boolean,
  start: (index: number) => Omit<R, keyof LineRange>,
): R {
  let range = ranges[ranges.length - 1];
  if (range === undefined || full(range)) {
    const span: LineRange = { firstLine: line.number, lastLine: line.number, byteStart: line.start, byteEnd: line.end };
    range = { ...start(ranges.length), ...span } as R;
    ranges.push(range);
  }
  range.lastLine = line.number;
  range.byteEnd = line.end;
  return range;
}
