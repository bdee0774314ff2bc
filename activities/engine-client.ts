// Talking to one vLLM server, with each request's own body, and retrying what is worth retrying
// (timeouts, connection errors, 408, 429, 5xx) with backoff and jitter inside a time budget.
//
// Not through the openai SDK, unlike submitters: the worker posts a body already written as JSON and
// keeps the answer's bytes as they came, so the SDK's request building, its Response objects and its
// error classes (unwrapped again here) were all cost: three times the CPU per request of undici's
// request API alone, which made the GPU workers the orchestrator's largest CPU user.
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, errors, request } from 'undici';

import { sleep } from '../lib/abortable.js';
import type { EngineLoad, Overload } from '../lib/adaptive-limit.js';
import { newId } from '../lib/ids.js';
import { attemptOutcome, engineRequestSeconds, engineRetriesTotal } from '../lib/metrics.js';
import { histogramTotals, sampleMax, sampleSum } from '../lib/prometheus-text.js';
import { safeText } from '../lib/sanitize.js';

export interface EngineOptions {
  baseUrl: string;
  apiKey: string | undefined;
  requestTimeoutMs: number;
  /** Most connections open to the engine: at least as many as requests in flight can be. */
  connections: number;
  /** How long an idle connection is kept: below the engine's own (vLLM closes them after 5 s). */
  keepAliveMs: number;
  /** Largest answer read from the engine; a larger one is the request's error, not the worker's memory. */
  maxResponseBytes: number;
  /** Told of every answer that says the engine is overloaded (429, 503, a timeout): the adaptive limit's signal. */
  onOverload?: (why: Overload) => void;
}

export interface RetryPolicy {
  budgetMs: number;
  initialMs: number;
  maxMs: number;
}

/** One attempt's outcome. */
export type Attempt =
  | { kind: 'ok'; status: number; requestId: string | null; body: unknown; raw: string }
  | { kind: 'http'; status: number; requestId: string | null; body: unknown; retryAfterMs: number | undefined }
  | { kind: 'network'; message: string; timeout: boolean }
  | { kind: 'too_large'; message: string };

export type FinalOutcome = { attempts: number; errors: AttemptError[] } &
  /** `raw` is the engine's answer as it sent it; `body` is the same, parsed. */
  (
    | { kind: 'ok'; status: number; requestId: string | null; body: unknown; raw: string }
    | { kind: 'http'; status: number; requestId: string | null; body: unknown }
    | { kind: 'network'; message: string; timeout: boolean }
    /** The body could not be written as JSON at all: no attempt can succeed, so none is made. */
    | { kind: 'unsendable'; message: string }
    /** The engine's answer was over ENGINE_MAX_RESPONSE_BYTES: asking again would bring the same. */
    | { kind: 'too_large'; message: string }
  );

export interface AttemptError {
  at: string;
  status: number | null;
  message: string;
}

/** The server root: VLLM_BASE_URL may be given with or without its /v1 suffix. */
export function engineRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
}

function retryAfterMs(headers: IncomingHttpHeaders): number | undefined {
  const ms = Number(headers['retry-after-ms']);
  if (Number.isFinite(ms) && ms > 0) return ms;
  const value = headers['retry-after'];
  if (typeof value !== 'string') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/**
 * Worth another attempt: timeouts, conflicts, rate limits and what a proxy or an overloaded server
 * answers (502, 503, 504). vLLM's 500 (an exception it did not classify) and 501 (not implemented)
 * say the same again however often they are asked; whether the engine itself is down is asked of
 * its /health by the caller.
 */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status === 502 || status === 503 || status === 504;
}

/** The engine refused this worker's credentials (VLLM_API_KEY): every request would be refused alike. */
export function isAuthFailure(outcome: FinalOutcome): boolean {
  return outcome.kind === 'http' && (outcome.status === 401 || outcome.status === 403);
}

export class Engine {
  private readonly agent: Agent;

  /** The server root, without /v1: a batch line's url starts with it. */
  private readonly root: string;

  /** Sent with every request to the engine. */
  private readonly headers: Record<string, string>;

  constructor(readonly options: EngineOptions) {
    this.agent = new Agent({
      connections: options.connections,
      keepAliveTimeout: options.keepAliveMs,
      keepAliveMaxTimeout: options.keepAliveMs,
      // vLLM sends its headers with the whole answer, so this is the wait for the answer itself.
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
    });
    this.root = engineRoot(options.baseUrl);
    this.headers = { ...this.authHeaders(), 'content-type': 'application/json', accept: 'application/json' };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private authHeaders(): Record<string, string> {
    return this.options.apiKey === undefined ? {} : { authorization: `Bearer ${this.options.apiKey}` };
  }

  /** The models the engine serves (its /v1/models); a refused key says so plainly. */
  async models(timeoutMs = 10_000): Promise<string[]> {
    const res = await request(`${this.root}/v1/models`, {
      headers: this.authHeaders(),
      dispatcher: this.agent,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new Error(
        `the engine at ${this.root} refused this worker's credentials (VLLM_API_KEY): ${res.statusCode} ${safeText(text, 200)}`,
      );
    }
    if (res.statusCode !== 200)
      throw new Error(`the engine's /v1/models answered ${res.statusCode}: ${safeText(text, 200)}`);
    const body = JSON.parse(text) as { data?: { id?: unknown }[] };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }

  /**
   * The batch endpoints the engine serves. vLLM mounts only the routes of its model's kind (a
   * generative model has no /v1/embeddings, an embedding model no chat), and answers a route it does
   * not have with 404 {"detail": "Not Found"}; an empty body to a route it has is a 400 or 422, and
   * runs nothing.
   */
  async servedEndpoints(endpoints: readonly string[], timeoutMs = 10_000): Promise<string[]> {
    const served: string[] = [];
    for (const endpoint of endpoints) {
      const res = await request(`${this.root}${endpoint}`, {
        method: 'POST',
        headers: { ...this.authHeaders(), 'content-type': 'application/json' },
        body: '{}',
        dispatcher: this.agent,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.body.text();
      const missing = res.statusCode === 404 && /"detail"\s*:\s*"Not Found"/.test(text);
      if (!missing) served.push(endpoint);
    }
    return served;
  }

  /** Whether the engine answers its /health now: tells an engine outage from one bad request. */
  async healthy(timeoutMs = 5000): Promise<boolean> {
    try {
      const res = await fetch(`${this.root}/health`, { signal: AbortSignal.timeout(timeoutMs) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /**
   * The engine's load from its Prometheus /metrics (vLLM's names, summed over its engines). A
   * figure it does not export is undefined; an engine that does not answer throws.
   */
  async load(timeoutMs: number): Promise<EngineLoad> {
    const res = await request(`${this.root}/metrics`, {
      headers: this.authHeaders(),
      dispatcher: this.agent,
      signal: AbortSignal.timeout(timeoutMs),
    });
    res.body.on('error', () => undefined);
    if (res.statusCode !== 200) {
      res.body.destroy();
      throw new Error(`the engine's /metrics answered ${res.statusCode}`);
    }
    // A scrape is tens of kilobytes; a body past the answer limit is not one.
    const parts: Buffer[] = [];
    let size = 0;
    for await (const part of res.body as AsyncIterable<Buffer>) {
      size += part.length;
      if (size > this.options.maxResponseBytes) {
        res.body.destroy();
        throw new Error(`the engine's /metrics is larger than ${this.options.maxResponseBytes} bytes`);
      }
      parts.push(part);
    }
    const text = Buffer.concat(parts, size).toString('utf8');
    return {
      waiting: sampleSum(text, 'vllm:num_requests_waiting'),
      // Per engine (data parallel): the fullest one is the one that preempts.
      kvUsage: sampleMax(text, 'vllm:kv_cache_usage_perc'),
      preemptions: sampleSum(text, 'vllm:num_preemptions_total'),
      ttftSeconds: histogramTotals(text, 'vllm:time_to_first_token_seconds'),
      // Older vLLMs name it time_per_output_token_seconds.
      itlSeconds:
        histogramTotals(text, 'vllm:inter_token_latency_seconds') ??
        histogramTotals(text, 'vllm:time_per_output_token_seconds'),
    };
  }

  /**
   * One attempt with the body as JSON text. `url` is the batch line's url, e.g. /v1/chat/completions.
   * Each attempt carries a request id of ours (vLLM takes it as its own, and it is in the output line),
   * unless the engine answers with one of its own.
   */
  async attempt(url: string, payload: string, signal: AbortSignal | undefined): Promise<Attempt> {
    const sentId = newId('batch_req_');
    const { requestTimeoutMs, maxResponseBytes } = this.options;
    const started = performance.now();
    try {
      const res = await request(`${this.root}${url}`, {
        method: 'POST',
        headers: { ...this.headers, 'x-request-id': sentId },
        body: payload,
        signal,
        dispatcher: this.agent,
      });
      // Dropping a body that is too large or too slow aborts it; reading reports any other error.
      res.body.on('error', () => undefined);
      if (Number(res.headers['content-length']) > maxResponseBytes) {
        res.body.destroy();
        return { kind: 'too_large', message: tooLarge(maxResponseBytes) };
      }
      const parts: Buffer[] = [];
      let size = 0;
      for await (const part of res.body as AsyncIterable<Buffer>) {
        size += part.length;
        if (size > maxResponseBytes) {
          res.body.destroy();
          return { kind: 'too_large', message: tooLarge(maxResponseBytes) };
        }
        // The whole answer within the timeout, not only each piece of it: a trickle is a stall.
        if (performance.now() - started > requestTimeoutMs) {
          res.body.destroy();
          return timedOut();
        }
        parts.push(part);
      }
      const raw = Buffer.concat(parts, size).toString('utf8');
      const header = res.headers['x-request-id'];
      const requestId = typeof header === 'string' ? header : sentId;
      if (res.statusCode < 200 || res.statusCode >= 300) {
        const body = parsedOrNull(raw);
        return {
          kind: 'http',
          status: res.statusCode,
          requestId,
          // The engine's whole error body; a body that is not JSON becomes an error with its text.
          body: body ?? (raw === '' ? null : { error: { message: raw } }),
          retryAfterMs: retryAfterMs(res.headers),
        };
      }
      let body: unknown;
      try {
        body = JSON.parse(raw) as unknown;
      } catch (err) {
        // The engine misbehaving (a proxy's page, an answer cut short): worth another attempt.
        return {
          kind: 'network',
          message: `unreadable answer from the engine: ${(err as Error).message}`,
          timeout: false,
        };
      }
      return { kind: 'ok', status: res.statusCode, requestId, body, raw };
    } catch (err) {
      if (signal?.aborted === true) throw new EngineAbortedError();
      if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) return timedOut();
      const code = (err as { code?: unknown }).code;
      const cause = (err as { cause?: unknown }).cause;
      const why = [err instanceof Error ? err.message : String(err), cause instanceof Error ? cause.message : '']
        .filter((m) => m !== '')
        .join(': ');
      return {
        kind: 'network',
        message: `connection error${typeof code === 'string' ? ` (${code})` : ''}: ${why}`,
        timeout: false,
      };
    }
  }

  /**
   * Attempts until success, a non-retryable answer, or the budget runs out. `beforeRetry` lets the
   * caller give back its concurrency slot while waiting, so backoff never idles the GPU.
   */
  async send(
    url: string,
    body: unknown,
    policy: RetryPolicy,
    signal: AbortSignal | undefined,
    waitBetween: (ms: number) => Promise<void> = (ms) => sleep(ms, signal),
  ): Promise<FinalOutcome> {
    const started = Date.now();
    const errors: AttemptError[] = [];
    const model = modelOf(body);
    let payload: string;
    try {
      payload = JSON.stringify(body);
    } catch (err) {
      // Validation bounds nesting, so this is a body that changed shape since; retrying cannot help.
      return {
        kind: 'unsendable',
        message: `the request body cannot be written as JSON: ${err instanceof Error ? err.message : String(err)}`,
        attempts: 0,
        errors,
      };
    }
    for (let attempt = 1; ; attempt++) {
      const sentAt = performance.now();
      const result = await this.attempt(url, payload, signal);
      engineRequestSeconds.observe({ model, outcome: attemptOutcome(result) }, (performance.now() - sentAt) / 1000);
      if (result.kind === 'ok') return { ...result, attempts: attempt, errors };
      const overload = overloadOf(result);
      if (overload !== undefined) this.options.onOverload?.(overload);
      errors.push({
        at: new Date().toISOString(),
        status: result.kind === 'http' ? result.status : null,
        // An error's own words can quote the answer (a JSON parse error does): stored through the sanitizer.
        message: result.kind === 'http' ? describeEngineBody(result.body) : safeText(result.message, 500),
      });
      if (result.kind === 'too_large') return { ...result, attempts: attempt, errors };
      const retryable = result.kind === 'network' || isRetryableStatus(result.status);
      const backoff = Math.min(policy.maxMs, policy.initialMs * 2 ** (attempt - 1));
      // Full jitter spreads a crowd of failed requests out; Retry-After, when given, is a floor.
      let delay = Math.random() * backoff;
      if (result.kind === 'http' && result.retryAfterMs !== undefined) delay = Math.max(delay, result.retryAfterMs);
      if (!retryable || Date.now() - started + delay > policy.budgetMs) {
        if (result.kind === 'http')
          return {
            kind: 'http',
            status: result.status,
            requestId: result.requestId,
            body: result.body,
            attempts: attempt,
            errors,
          };
        return { ...result, attempts: attempt, errors };
      }
      engineRetriesTotal.inc({ model, reason: attemptOutcome(result) });
      await waitBetween(delay);
    }
  }
}

/** What an answer says about the engine's load: 429 and 503 are its own words for "too much", a timeout its silence. */
function overloadOf(result: Attempt): Overload | undefined {
  if (result.kind === 'http' && result.status === 429) return 'rate_limited';
  if (result.kind === 'http' && result.status === 503) return 'unavailable';
  if (result.kind === 'network' && result.timeout) return 'timeout';
  return undefined;
}

/** The metrics' model label: the request's own (validation made it the batch's one model). */
export function modelOf(body: unknown): string {
  const model = (body as { model?: unknown } | null)?.model;
  return typeof model === 'string' ? model : 'unknown';
}

/** The engine's error message for the dead-letter record: it may quote the request, so it goes through safeText. */
export function describeEngineBody(body: unknown): string {
  const message =
    (body as { error?: { message?: unknown }; message?: unknown } | null)?.error?.message ??
    (body as { message?: unknown } | null)?.message;
  if (typeof message === 'string') return safeText(message, 1000);
  try {
    return safeText(JSON.stringify(body), 1000);
  } catch {
    return 'an error body that cannot be shown';
  }
}

/** Thrown when a request is aborted through its signal (the chunk is being cancelled). */
export class EngineAbortedError extends Error {
  constructor() {
    super('the request to the engine was aborted');
    this.name = 'EngineAbortedError';
  }
}

function tooLarge(limit: number): string {
  return `the engine's answer is larger than ${limit} bytes (ENGINE_MAX_RESPONSE_BYTES)`;
}

function timedOut(): Attempt {
  return { kind: 'network', message: 'request to the engine timed out', timeout: true };
}

function parsedOrNull(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
