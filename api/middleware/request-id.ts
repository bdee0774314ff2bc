// A request id on every answer (x-request-id, as OpenAI sends), for logs and support.
import { randomBytes } from 'node:crypto';
import { requestId } from 'hono/request-id';

/** OpenAI-looking request ids; a caller's own X-Request-Id is kept when it sends one. */
export const requestIds = requestId({ generator: () => `req_${randomBytes(16).toString('hex')}` });
