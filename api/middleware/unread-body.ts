// What a request's handling left of its body is read before the answer goes (see ../request-body.ts):
// the 413 of the body limit, a 401 or 429 to an upload, a malformed form, an unknown URL.
import type { HttpBindings } from '@hono/node-server';
import { createMiddleware } from 'hono/factory';

import { drain, type DrainBounds } from '../request-body.js';

export type UnreadBodyOptions = DrainBounds;

export function hearUnreadBody(options: UnreadBodyOptions) {
  return createMiddleware(async (c, next) => {
    await next();
    // Outside Node's server (app.request in a test) there is no socket to keep.
    const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
    if (incoming === undefined || incoming.readableEnded) return;
    const declared = incoming.headers['content-length'];
    const body = declared !== undefined && Number(declared) > options.bytes ? null : c.req.raw.body;
    // A body declared larger than the bound is not waited for at all, nor one its handler kept locked.
    const heard = body === null ? declared === undefined : !body.locked && (await drain(body.getReader(), options));
    if (heard) return;
    // Unread bytes would be taken for the next request: the connection ends with this answer.
    c.header('connection', 'close');
  });
}
