// Splits a byte stream into lines without holding the file: each line comes with its 1-based
// number and byte offsets, so a later reader can seek straight to a range of lines.

export interface Line {
  /** 1-based line number in the whole file. */
  number: number;
  /** Byte offset of the line's first byte. */
  start: number;
  /** Byte offset just past the line's terminating newline (or end of data). */
  end: number;
  /** The line without its newline (and without a trailing \r). */
  text: string;
}

export interface ReadLinesOptions {
  /** Number of the first line in the stream (when reading from the middle of a file). */
  firstLine?: number;
  /** Byte offset of the stream's first byte in the file. */
  startOffset?: number;
}

const NEWLINE = 0x0a;

export async function* readLines(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  options: ReadLinesOptions = {},
): AsyncGenerator<Line> {
  let number = options.firstLine ?? 1;
  let offset = options.startOffset ?? 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  const emit = (buf: Buffer): Line => {
    let text = buf.toString('utf8');
    // Editors on some systems start a file with a byte-order mark; it is not part of the JSON.
    if (offset === 0 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const length = buf.length;
    if (text.endsWith('\n')) text = text.slice(0, -1);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    const line = { number, start: offset, end: offset + length, text };
    number++;
    offset += length;
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
    }
  }
  if (pendingBytes > 0) yield emit(Buffer.concat(pending, pendingBytes));
}

/** A line with nothing but whitespace is not a request; it is skipped rather than an error. */
export function isBlank(text: string): boolean {
  return text.trim() === '';
}
