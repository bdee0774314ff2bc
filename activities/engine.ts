// Talking to one vLLM server through the official openai SDK, with each request's own body, and
// retrying what is worth retrying (timeouts, connection errors, 408, 429, 5xx) with backoff and
// jitter inside a time budget. The SDK's own retries are off: the budget is ours.
import { Agent, request, type Dispatcher } from 'undici';
import { sleep } from '../lib/abortable.js';
import { attemptOutcome, engineRequestSeconds, engineRetriesTotal } from '../lib/metrics.js';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';

export interface EngineOptions {
  baseUrl: string;
  apiKey: string | undefined;
  requestTimeoutMs: number;
  /** Connections kept open to the engine: as many as requests in flight. */
  connections: number;
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
  | { kind: 'network'; message: string; timeout: boolean };

export type FinalOutcome = { attempts: number; errors: AttemptError[] } & (
  /** `raw` is the engine's answer as it sent it; `body` is the same, parsed. */
  | { kind: 'ok'; status: number; requestId: string | null; body: unknown; raw: string }
  | { kind: 'http'; status: number; requestId: string | null; body: unknown }
  | { kind: 'network'; message: string; timeout: boolean }
);

export interface AttemptError {
  at: string;
  status: number | null;
  message: string;
}

/** Keeps the engine's whole error body: the SDK would keep only its `error` field. */
class EngineStatusError extends APIError<number, Headers> {
  constructor(
    status: number,
    readonly body: unknown,
    message: string | undefined,
    headers: Headers,
  ) {
    super(status, (body as { error?: object } | undefined)?.error, message, headers);
  }
}

class EngineClient extends OpenAI {
  protected override makeStatusError(status: number, error: object | undefined, message: string | undefined, headers: Headers): APIError {
    return new EngineStatusError(status, error ?? (message !== undefined ? { error: { message } } : null), message, headers);
  }
}

/**
 * The SDK's transport: undici's request API, which costs about half the CPU of fetch per request,
 * over a keep-alive pool sized to the in-flight limit. The whole answer is read before the SDK sees
 * it, so the SDK's timeout covers the body too, and a connection lost mid-body is an ordinary,
 * retryable connection error.
 */
function engineFetch(agent: Agent): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const res = await request(url, {
      method: init?.method ?? 'GET',
      headers: init?.headers === undefined ? undefined : Object.fromEntries(new Headers(init.headers)),
      body: init?.body as Dispatcher.RequestOptions['body'],
      signal: init?.signal ?? undefined,
      dispatcher: agent,
    });
    const body = await res.body.arrayBuffer();
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const empty = res.statusCode === 204 || res.statusCode === 205 || res.statusCode === 304;
    return new Response(empty ? null : body, { status: res.statusCode, headers });
  };
}

/** The server root: VLLM_BASE_URL may be given with or without its /v1 suffix. */
export function engineRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
}

function retryAfterMs(headers: Headers | undefined): number | undefined {
  if (headers === undefined) return undefined;
  const ms = Number(headers.get('retry-after-ms'));
  if (Number.isFinite(ms) && ms > 0) return ms;
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

export class Engine {
  private readonly client: OpenAI;

  private readonly agent: Agent;

  constructor(readonly options: EngineOptions) {
    this.agent = new Agent({
      connections: options.connections,
      keepAliveTimeout: 60_000,
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
    });
    this.client = new EngineClient({
      baseURL: engineRoot(options.baseUrl),
      apiKey: options.apiKey ?? 'EMPTY',
      maxRetries: 0,
      timeout: options.requestTimeoutMs,
      fetch: engineFetch(this.agent),
      logLevel: 'off',
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Whether the engine answers its /health now: tells an engine outage from one bad request. */
  async healthy(timeoutMs = 5000): Promise<boolean> {
    try {
      const res = await fetch(`${engineRoot(this.options.baseUrl)}/health`, { signal: AbortSignal.timeout(timeoutMs) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** One attempt. `url` is the batch line's url, e.g. /v1/chat/completions. */
  async attempt(url: string, body: unknown, signal: AbortSignal | undefined): Promise<Attempt> {
    try {
      const response = await this.client.post<unknown>(url, { body, signal }).asResponse();
      const raw = await response.text();
      return { kind: 'ok', status: response.status, requestId: response.headers.get('x-request-id'), body: JSON.parse(raw) as unknown, raw };
    } catch (err) {
      if (err instanceof APIUserAbortError) throw err;
      if (err instanceof EngineStatusError) {
        return { kind: 'http', status: err.status, requestId: err.headers.get('x-request-id'), body: err.body, retryAfterMs: retryAfterMs(err.headers) };
      }
      if (err instanceof APIConnectionTimeoutError) return { kind: 'network', message: 'request to the engine timed out', timeout: true };
      if (err instanceof APIConnectionError) {
        const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
        return { kind: 'network', message: `${err.message}${cause}`, timeout: false };
      }
      // Anything else (an answer that is not JSON, say) is the engine misbehaving: retry it.
      if (signal?.aborted === true) throw new APIUserAbortError();
      return { kind: 'network', message: `unreadable answer from the engine: ${err instanceof Error ? err.message : String(err)}`, timeout: false };
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
    for (let attempt = 1; ; attempt++) {
      const sentAt = performance.now();
      const result = await this.attempt(url, body, signal);
      engineRequestSeconds.observe({ model, outcome: attemptOutcome(result) }, (performance.now() - sentAt) / 1000);
      if (result.kind === 'ok') return { ...result, attempts: attempt, errors };
      errors.push({
        at: new Date().toISOString(),
        status: result.kind === 'http' ? result.status : null,
        message: result.kind === 'http' ? describeBody(result.body) : result.message,
      });
      const retryable = result.kind === 'network' || isRetryableStatus(result.status);
      const backoff = Math.min(policy.maxMs, policy.initialMs * 2 ** (attempt - 1));
      // Full jitter spreads a crowd of failed requests out; Retry-After, when given, is a floor.
      let delay = Math.random() * backoff;
      if (result.kind === 'http' && result.retryAfterMs !== undefined) delay = Math.max(delay, result.retryAfterMs);
      if (!retryable || Date.now() - started + delay > policy.budgetMs) {
        if (result.kind === 'http') return { kind: 'http', status: result.status, requestId: result.requestId, body: result.body, attempts: attempt, errors };
        return { ...result, attempts: attempt, errors };
      }
      engineRetriesTotal.inc({ model, reason: attemptOutcome(result) });
      await waitBetween(delay);
    }
  }
}

/** The metrics' model label: the request's own (validation made it the batch's one model). */
export function modelOf(body: unknown): string {
  const model = (body as { model?: unknown } | null)?.model;
  return typeof model === 'string' ? model : 'unknown';
}

function describeBody(body: unknown): string {
  const message = (body as { error?: { message?: unknown }; message?: unknown } | null)?.error?.message ?? (body as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(body);
}

/** Thrown when a request is aborted through its signal (the chunk is being cancelled). */
