// A bound on bodies read whole (JSON, the webhook's), that the client still hears when it is crossed.
// Hono's own bodyLimit answers 413 without reading the rest of the body, and the client, still
// sending, could meet a reset instead of the answer (see ../request-body.ts): here a refused body is
// heard out, up to a bound, before the answer.
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';

import { BadRequestError, errorResponse, PayloadTooLargeError } from '../errors.js';
import { drain } from '../request-body.js';

export interface BodyLimitOptions {
  /** The largest body let through. */
  maxBytes: number;
  /**
   * What is left of a refused body, up to this size, is read to its end before the answer. Beyond
   * it (or when the body is declared larger) the answer comes at once and closes the connection:
   * a client sending gigabytes is not waited for.
   */
  drainBytes: number;
}

export function bodyLimit(options: BodyLimitOptions): MiddlewareHandler {
  const { maxBytes, drainBytes } = options;
  const refuse = (c: Context, drained: boolean): Response =>
    errorResponse(
      c,
      new PayloadTooLargeError(`The request body is larger than the ${maxBytes}-byte limit.`, {
        code: 'request_too_large',
        closeConnection: !drained,
      }),
    );
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
      if (size > maxBytes) return refuse(c, await drain(reader, drainBytes));
      chunks.push(value);
    }
    c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks, size) });
    return next();
  });
}
