// A bound on bodies read whole (JSON, the webhook's), that the client still hears when it is crossed.
//
// Hono's own bodyLimit answers 413 without reading the rest of the body. The connection cannot then
// carry another request, so it is closed right after the answer, while the client may still be
// sending: its next write meets a reset, and a reset can discard the answer it had not yet read
// (`fetch failed: write EPIPE` where a 413 was sent). Nginx reads on after its answer for the same
// reason ("lingering close"). Here the rest of a refused body is read and dropped before the
// answer, up to a bound: the client, done sending, reads its 413, and the connection stays usable.
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';

import { BadRequestError, errorResponse, PayloadTooLargeError } from '../errors.js';

export interface BodyLimitOptions {
  /** The largest body let through. */
  maxBytes: number;
  /**
   * A refused body up to this size is read to its end before the answer. A larger one (or one
   * declared larger) is answered at once and its connection closed: a client sending gigabytes is
   * not waited for.
   */
  drainBytes: number;
}

/** Reads and drops what is left of a body, up to `budget` bytes: true when it ended within them. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, budget: number): Promise<boolean> {
  let left = budget;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return true;
      left -= value.byteLength;
      if (left < 0) break;
    }
  } catch {
    // The client hung up (or its connection went idle): nobody will hear the answer anyway.
    return false;
  }
  await reader.cancel().catch(() => undefined);
  return false;
}

export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler {
  const { maxBytes, drainBytes } = options;
  const refuse = (c: Context, drained: boolean): Response => {
    // Unread bytes would be taken for the next request: the connection ends with this answer.
    if (!drained) c.header('connection', 'close');
    return errorResponse(
      c,
      new PayloadTooLargeError(`The request body is larger than the ${maxBytes}-byte limit.`, {
        code: 'request_too_large',
      }),
    );
  };
  return createMiddleware(async (c, next) => {
    // Node's parser has checked the header's syntax and refuses a message with both.
    const chunked = c.req.header('transfer-encoding') !== undefined;
    const declared = chunked ? undefined : c.req.header('content-length');
    // The body stream is not even made unless it is read here: @hono/node-server (2.1.9) drains an
    // unread body after the answer, but not once its stream was made and left unread (the stream's
    // reader pauses the socket again), so a 401 to a body within the limit ended in a reset.
    if (declared !== undefined ? Number(declared) <= maxBytes : !chunked) return next();
    const body = c.req.raw.body;
    if (body === null) return next();
    if (declared !== undefined) {
      return refuse(c, Number(declared) <= drainBytes && (await drain(body.getReader(), drainBytes)));
    }
    // Chunked: its size is known only by reading it.
    const reader: ReadableStreamDefaultReader<Uint8Array> = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read().catch((): never => {
        throw new BadRequestError('The request body was cut off before its end.', { code: 'invalid_request' });
      });
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) return refuse(c, await drain(reader, drainBytes - size));
      chunks.push(value);
    }
    c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks, size) });
    return next();
  });
}
