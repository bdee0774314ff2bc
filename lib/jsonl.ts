// Splits a byte stream into lines without holding the file: each line comes with its 1-based
// number and byte offsets, so a later reader can seek straight to a range of lines. A line longer
// than the cap is never buffered: it comes back empty and marked, with its offsets, whatever its size.
import { isUtf8 } from 'node:buffer';

export interface Line {
  /** 1-based line number in the whole file. */
  number: number;
  /** Byte offset of the line's first byte. */
  start: number;
  /** Byte offset just past the line's terminating newline (or end of data). */
  end: number;
  /** The line without its newline (and without a trailing \r); empty when the line has a problem. */
  text: string;
  /** Why the line could not be read as text: longer than the cap, or (when asked) not UTF-8. */
  problem?: 'too_long' | 'not_utf8';
}

export interface ReadLinesOptions {
  /** Number of the first line in the stream (when reading from the middle of a file). */
  firstLine?: number;
  /** Byte offset of the stream's first byte in the file. */
  startOffset?: number;
  /** Longest line, in bytes with its newline, that is read as text. */
  maxLineBytes?: number;
  /** Check each line is valid UTF-8 (validation does; readers of validated files need not). */
  checkUtf8?: boolean;
}

const NEWLINE = 0x0a;

export async function* readLines(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  options: ReadLinesOptions = {},
): AsyncGenerator<Line> {
  const maxLineBytes = options.maxLineBytes ?? Number.POSITIVE_INFINITY;
  let number = options.firstLine ?? 1;
  let offset = options.startOffset ?? 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  // Bytes of the current line dropped because it is over the cap.
  let skipped = 0;

  const emit = (buf: Buffer): Line => {
    const length = buf.length + skipped;
    let line: Line;
    if (length > maxLineBytes) {
      line = { number, start: offset, end: offset + length, text: '', problem: 'too_long' };
    } else if (options.checkUtf8 === true && !isUtf8(buf)) {
      line = { number, start: offset, end: offset + length, text: '', problem: 'not_utf8' };
    } else {
      let text = buf.toString('utf8');
      // Editors on some systems start a file with a byte-order mark; it is not part of the JSON.
      if (offset === 0 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.endsWith('\n')) text = text.slice(0, -1);
      if (text.endsWith('\r')) text = text.slice(0, -1);
      line = { number, start: offset, end: offset + length, text };
    }
    number++;
    offset += length;
    skipped = 0;
    return line;
  };

  for await (const raw of source) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    let from = 0;
    let nl = chunk.indexOf(NEWLINE, from);
    while (nl !== -1) {
      const piece = chunk.subarray(from, nl + 1);
      if (pendingBytes > 0) {
        pending.push(piece);
        yield emit(Buffer.concat(pending, pendingBytes + piece.length));
        pending = [];
        pendingBytes = 0;
      } else {
        yield emit(piece);
      }
      from = nl + 1;
      nl = chunk.indexOf(NEWLINE, from);
    }
    if (from < chunk.length) {
      const rest = chunk.subarray(from);
      pending.push(rest);
      pendingBytes += rest.length;
      if (skipped + pendingBytes > maxLineBytes) {
        // Over the cap: count the bytes, keep none.
        skipped += pendingBytes;
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0 || skipped > 0) yield emit(Buffer.concat(pending, pendingBytes));
}

/** A line with nothing but whitespace is not a request; it is skipped rather than an error. */
export function isBlank(line: Pick<Line, 'text' | 'problem'>): boolean {
  return line.problem === undefined && line.text.trim() === '';
}
