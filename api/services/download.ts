// What a download route sends: a streamed body and its headers, so a route only hands them to Hono.
import { Readable } from 'node:stream';

export interface Download {
  body: ReadableStream<Uint8Array>;
  headers: Record<string, string>;
}

/**
 * A source failing mid-body (the file store, Label Studio going away) cuts the download short: the
 * client sees an incomplete body. The error is swallowed here, as nobody else listens to it and an
 * unheard stream error would end the process.
 */
export function download(source: Readable | AsyncIterable<string>, headers: Record<string, string>): Download {
  const stream = source instanceof Readable ? source : Readable.from(source);
  stream.on('error', () => undefined);
  return { body: Readable.toWeb(stream) as ReadableStream<Uint8Array>, headers };
}
