// Every error leaves the API in OpenAI's shape, {error: {message, type, param, code}}, with the
// status OpenAI would use. Handlers throw ApiError; anything else is mapped here, never leaked.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';

import type { Logger } from '../lib/logger.js';
import { safeText } from '../lib/sanitize.js';
import { isDatabaseUnavailable } from '../schema/db.js';
import type { ErrorResponse } from '../wire/openai.js';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'conflict_error'
  | 'rate_limit_error'
  | 'server_error';

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly type: ErrorType = status === 401
      ? 'authentication_error'
      : status >= 500
        ? 'server_error'
        : 'invalid_request_error',
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ErrorResponse {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** OpenAI's wording for an id that does not exist (or belongs to another project). */
export function notFound(kind: 'File' | 'Batch', id: string, param = 'id'): ApiError {
  return new ApiError(404, `No such ${kind} object: ${id}`, null, param);
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** The first problem zod found, as OpenAI would word it; `input` tells a missing field from a bad one. */
export function fromZodError(error: ZodError, input: unknown): ApiError {
  const issue = error.issues[0];
  if (issue === undefined) return new ApiError(400, 'Invalid request.', 'invalid_request');
  const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
  const missing =
    issue.path.length > 0 && valueAt(input, issue.path) === undefined && typeof input === 'object' && input !== null;
  if (missing)
    return new ApiError(400, `Missing required parameter: '${param ?? 'body'}'.`, 'missing_required_parameter', param);
  return new ApiError(400, `Invalid value for '${param ?? 'body'}': ${issue.message}`, 'invalid_value', param);
}

/** Postgres's data exceptions (class 22: text it cannot store, a number out of range...): the request's fault. */
function isDataException(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
}

export function serviceUnavailable(what: string): ApiError {
  return new ApiError(
    503,
    `${what} is unavailable right now; try again shortly.`,
    'service_unavailable',
    null,
    'server_error',
  );
}

function isBodyReadError(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    err.name === 'AbortError' ||
    (err instanceof TypeError && /^(terminated|aborted)/i.test(err.message))
  );
}

export function errorResponse(c: Context, err: ApiError): Response {
  return c.json(err.body(), err.status);
}

export function errorHandler(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof ApiError) return errorResponse(c, err);
    if (err instanceof HTTPException) {
      // Hono's own refusals: malformed JSON bodies and the like.
      const status = err.status;
      return errorResponse(
        c,
        new ApiError(status, err.message || 'Invalid request.', status === 400 ? 'invalid_request' : null),
      );
    }
    // Postgres refuses a value (text with a NUL character, a number out of range): the request's fault.
    if (isDataException(err)) {
      return errorResponse(
        c,
        new ApiError(
          400,
          'The request contains a value that cannot be stored (e.g. a NUL character or an unpaired surrogate).',
          'invalid_value',
        ),
      );
    }
    // The database is restarting or away: the client should retry, and the process stays up.
    if (isDatabaseUnavailable(err)) {
      log.warn({ err: err.message, requestId: c.get('requestId') }, 'database unavailable');
      return errorResponse(c, serviceUnavailable('The database'));
    }
    // The request's body could not be read to the end: the client went away or sent a broken body.
    if (isBodyReadError(err)) {
      return errorResponse(c, new ApiError(400, 'The request body could not be read to its end.', 'invalid_request'));
    }
    log.error(
      { err, requestId: c.get('requestId'), method: c.req.method, path: safeText(c.req.path, 300) },
      'unhandled error',
    );
    return errorResponse(
      c,
      new ApiError(
        500,
        'The server had an error while processing your request.',
        'internal_error',
        null,
        'server_error',
      ),
    );
  };
}
