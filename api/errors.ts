// Every error leaves the API in OpenAI's shape, {error: {message, type, param, code}}, with the
// status OpenAI would use. Handlers throw one of the classes below (one per status, as openai-node
// has them) with a code from ErrorCode; anything else is mapped here, never leaked.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';

import type { Logger } from '../lib/logger.js';
import { safeText } from '../lib/sanitize.js';
import { isDatabaseUnavailable } from '../schema/db.js';
import type { ErrorResponse } from '../wire/openai.js';

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error';

/** Every `code` the API answers with; clients match on these strings, so they never change. */
export type ErrorCode =
  // The request itself
  | 'invalid_request'
  | 'invalid_value'
  | 'missing_required_parameter'
  | 'request_too_large'
  | 'unsupported_media_type'
  | 'unknown_url'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_use'
  // Keys and secrets
  | 'invalid_api_key'
  | 'invalid_webhook_secret'
  // Files
  | 'invalid_file_format'
  | 'file_too_large'
  | 'file_in_use'
  | 'file_content_unavailable'
  // Batches
  | 'batch_not_cancellable'
  | 'batch_not_retryable'
  | 'nothing_to_retry'
  | 'input_file_unavailable'
  // Curation
  | 'curation_unavailable'
  | 'curation_not_imported'
  | 'curation_schema_missing'
  // Webhook endpoints
  | 'invalid_url'
  | 'too_many_webhooks'
  | 'too_many_pending_deliveries'
  // Limits and the server's own state
  | 'rate_limit_exceeded'
  | 'service_unavailable'
  | 'internal_error';

export interface ErrorDetails {
  code?: ErrorCode | null;
  /** The parameter at fault, as OpenAI names it ('input_file_id', 'batch_id', 'Idempotency-Key'...). */
  param?: string | null;
}

/** The error type OpenAI's clients expect for a status (their SDKs pick the exception class by status). */
function typeOf(status: number): ErrorType {
  return status === 401 ? 'authentication_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
}

export class ApiError extends Error {
  readonly code: ErrorCode | null;
  readonly param: string | null;

  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    details: ErrorDetails = {},
    readonly type: ErrorType = typeOf(status),
  ) {
    super(message);
    this.name = new.target.name;
    this.code = details.code ?? null;
    this.param = details.param ?? null;
  }

  body(): ErrorResponse {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** An ApiError class for one status, so each kind is raised one way: `new ConflictError(message, {code, param})`. */
function statusError(status: ContentfulStatusCode, type?: ErrorType) {
  return class extends ApiError {
    constructor(message: string, details?: ErrorDetails) {
      super(status, message, details, type);
    }
  };
}

export class BadRequestError extends statusError(400) {}
export class AuthenticationError extends statusError(401) {}
export class NotFoundError extends statusError(404) {}
export class ConflictError extends statusError(409) {}
export class PayloadTooLargeError extends statusError(413) {}
export class UnsupportedMediaTypeError extends statusError(415) {}
export class RateLimitError extends statusError(429, 'rate_limit_error') {}
export class InternalServerError extends statusError(500) {}
export class ServiceUnavailableError extends statusError(503) {}

/** OpenAI's wording for an id that does not exist (or belongs to another project). */
export function notFound(kind: 'File' | 'Batch', id: string, param = 'id'): NotFoundError {
  return new NotFoundError(`No such ${kind} object: ${id}`, { param });
}

/** A dependency (database, file store, Temporal) is away: the client should try again. */
export function serviceUnavailable(what: string): ServiceUnavailableError {
  return new ServiceUnavailableError(`${what} is unavailable right now; try again shortly.`, {
    code: 'service_unavailable',
  });
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
export function fromZodError(error: ZodError, input: unknown): BadRequestError {
  const issue = error.issues[0];
  if (issue === undefined) return new BadRequestError('Invalid request.', { code: 'invalid_request' });
  const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
  const missing =
    issue.path.length > 0 && valueAt(input, issue.path) === undefined && typeof input === 'object' && input !== null;
  if (missing)
    return new BadRequestError(`Missing required parameter: '${param ?? 'body'}'.`, {
      code: 'missing_required_parameter',
      param,
    });
  return new BadRequestError(`Invalid value for '${param ?? 'body'}': ${issue.message}`, {
    code: 'invalid_value',
    param,
  });
}

/** Postgres's data exceptions (class 22: text it cannot store, a number out of range...): the request's fault. */
function isDataException(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
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
      // Hono's own refusals (malformed JSON bodies and the like) keep the status Hono chose.
      const status = err.status;
      return errorResponse(
        c,
        new ApiError(status, err.message || 'Invalid request.', { code: status === 400 ? 'invalid_request' : null }),
      );
    }
    // Postgres refuses a value (text with a NUL character, a number out of range): the request's fault.
    if (isDataException(err)) {
      return errorResponse(
        c,
        new BadRequestError(
          'The request contains a value that cannot be stored (e.g. a NUL character or an unpaired surrogate).',
          { code: 'invalid_value' },
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
      return errorResponse(
        c,
        new BadRequestError('The request body could not be read to its end.', { code: 'invalid_request' }),
      );
    }
    log.error(
      { err, requestId: c.get('requestId'), method: c.req.method, path: safeText(c.req.path, 300) },
      'unhandled error',
    );
    return errorResponse(
      c,
      new InternalServerError('The server had an error while processing your request.', { code: 'internal_error' }),
    );
  };
}
