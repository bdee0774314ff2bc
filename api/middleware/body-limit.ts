// A bound on bodies read whole (JSON, the webhook's). Unlike Hono's bodyLimit, it leaves the body
// untouched when the declared size is within the bound: @hono/node-server (2.1.9) discards an unread
// body after the answer, but not once its stream was made and left unread (the stream's reader
// pauses the socket again), and a 401 to a body within the bound ended in a reset. What a refused
// body leaves unread is heard out by ./unread-body.ts.
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';

import { BadRequestError, errorResponse, PayloadTooLargeError } from '../errors.js';

export interface BodyLimitOptions {
  /** The largest body let through. */
  maxBytes: number;
}

export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler {
  const { maxBytes } = options;
  const refuse = (c: Context): Response =>
    errorResponse(
      c,
      new PayloadTooLargeError(`The request body is larger than the ${maxBytes}-byte limit.`, {
        code: 'request_too_large',
      }),
    );
  return createMiddleware(async (c, next) => {
    // Node's parser has checked the header's syntax and refuses a message with both.
    const chunked = c.req.header('transfer-encoding') !== undefined;
    const declared = chunked ? undefined : c.req.header('content-length');
    if (declared !== undefined) return Number(declared) <= maxBytes ? next() : refuse(c);
    const body = chunked ? c.req.raw.body : null;
    if (body === null) return next();
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
      if (size > maxBytes) {
        // What is left is read after the answer is made (unread-body.ts).
        reader.releaseLock();
        return refuse(c);
      }
      chunks.push(value);
    }
    c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks, size) });
    return next();
  });
}
