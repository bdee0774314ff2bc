// An HTTP server that answers like vLLM's OpenAI-compatible server: the same routes, response
// shapes, error shape and capacity behaviour, with deterministic outputs and injectable faults.
// Only /control/* is the simulator's own.
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { serve, type HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { aborted, AbortedError, sleep } from '../lib/abortable.js';
import { CapacityModel } from './capacity.js';
import { decideFault, faultsSchema, noFaults, type Faults } from './faults.js';
import { countTokens, embeddingVector, generateText, prng, seedOf } from './text.js';

export interface SimulatorOptions {
  models: string[];
  maxNumSeqs: number;
  maxModelLen: number;
  prefillTokensPerSec: number;
  prefillMs: number;
  tokenLatencyMs: number;
  outputTokens: { min: number; max: number };
  embeddingDim: number;
  faults?: Faults;
  seed?: number;
  /** Keep a count of requests per body, for tests that check nothing is sent twice. */
  recordRequests?: boolean;
}

export interface SimulatorStats {
  received: number;
  served: number;
  rejected: number;
  aborted: number;
  faults: { error: number; hang: number; drop: number; spike: number; stall: number; truncate: number };
  running: number;
  waiting: number;
  maxRunning: number;
  /** Epoch milliseconds of the first and the latest inference request (null before any). */
  firstRequestAt: number | null;
  lastRequestAt: number | null;
  /** Epoch milliseconds at which the latest request was answered. */
  lastServedAt: number | null;
}

type Env = { Bindings: HttpBindings };
type Json = Record<string, unknown>;

const ERROR_TYPES: Record<number, string> = {
  400: 'BadRequestError',
  401: 'Unauthorized',
  404: 'NotFoundError',
  408: 'RequestTimeout',
  429: 'TooManyRequests',
  500: 'InternalServerError',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'GatewayTimeout',
};

class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

const now = (): number => Math.floor(Date.now() / 1000);
const hexId = (): string => randomBytes(16).toString('hex');

function isRecord(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function positiveIntOrUndefined(body: Json, key: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RequestError(400, `${key} must be a positive integer, got ${JSON.stringify(v)}`, key);
  }
  return v;
}

function textOfContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => {
        if (isRecord(part)) {
          if (typeof part.text === 'string') return part.text;
          // An image or audio part costs tokens too; count a fixed amount, like a vision encoder would.
          return ' '.repeat(256 * 4);
        }
        return '';
      })
      .join('');
  }
  return '';
}

interface Prepared {
  model: string;
  promptTokens: number;
  /** One entry per sequence to generate (n × prompts); embeddings generate none. */
  sequences: { seed: number; tokens: number; finish: 'stop' | 'length' }[];
  body: Json;
}

export class SimulatorState {
  faults: Faults;
  readonly capacity: CapacityModel;
  readonly registry = new Registry();
  readonly requestCounts = new Map<string, number>();
  private readonly random: () => number;
  private readonly stats = {
    received: 0,
    served: 0,
    rejected: 0,
    aborted: 0,
    faults: { error: 0, hang: 0, drop: 0, spike: 0, stall: 0, truncate: 0 },
    maxRunning: 0,
    firstRequestAt: null as number | null,
    lastRequestAt: null as number | null,
    lastServedAt: null as number | null,
  };
  private readonly metrics;

  constructor(readonly options: SimulatorOptions) {
    this.faults = options.faults ?? noFaults;
    this.capacity = new CapacityModel(options);
    this.random = prng(options.seed ?? 1);
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    this.metrics = {
      running: new Gauge({ name: 'vllm:num_requests_running', help: 'Number of requests in model execution batches.', labelNames, registers }),
      waiting: new Gauge({ name: 'vllm:num_requests_waiting', help: 'Number of requests waiting to be processed.', labelNames, registers }),
      promptTokens: new Counter({ name: 'vllm:prompt_tokens_total', help: 'Number of prefill tokens processed.', labelNames, registers }),
      generationTokens: new Counter({ name: 'vllm:generation_tokens_total', help: 'Number of generation tokens processed.', labelNames, registers }),
      success: new Counter({ name: 'vllm:request_success_total', help: 'Count of successfully processed requests.', labelNames: ['model_name', 'finished_reason'], registers }),
      latency: new Histogram({
        name: 'vllm:e2e_request_latency_seconds',
        help: 'Histogram of end to end request latency in seconds.',
        labelNames,
        buckets: [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120],
        registers,
      }),
      faults: new Counter({ name: 'sim_faults_injected_total', help: 'Faults the simulator injected, by kind.', labelNames: ['kind'], registers }),
    };
  }

  snapshot(): SimulatorStats {
    return {
      ...this.stats,
      faults: { ...this.stats.faults },
      running: this.capacity.running,
      waiting: this.capacity.queued,
    };
  }

  get defaultModel(): string {
    return this.options.models[0] ?? 'model';
  }

  private naturalLength(seed: number): number {
    const { min, max } = this.options.outputTokens;
    return min + (seed % (max - min + 1));
  }

  private resolveModel(body: Json): string {
    const model = body.model;
    if (model === undefined || model === null) return this.defaultModel;
    if (typeof model !== 'string' || !this.options.models.includes(model)) {
      throw new RequestError(404, `The model \`${typeof model === 'string' ? model : JSON.stringify(model)}\` does not exist.`, 'model');
    }
    return model;
  }

  private checkContext(promptTokens: number, maxTokens: number | undefined, what: string): void {
    const limit = this.options.maxModelLen;
    const requested = promptTokens + (maxTokens ?? 0);
    if (requested > limit || promptTokens >= limit) {
      throw new RequestError(
        400,
        `This model's maximum context length is ${limit} tokens. However, you requested ${requested} tokens ` +
          `(${promptTokens} in the ${what}, ${maxTokens ?? 0} in the completion). ` +
          `Please reduce the length of the ${what} or completion.`,
      );
    }
  }

  private sequencesFor(seedBase: string, count: number, maxTokens: number | undefined): Prepared['sequences'] {
    const sequences: Prepared['sequences'] = [];
    for (let i = 0; i < count; i++) {
      const seed = seedOf(`${seedBase}#${i}`);
      const natural = this.naturalLength(seed);
      const tokens = maxTokens !== undefined && maxTokens < natural ? maxTokens : natural;
      sequences.push({ seed, tokens, finish: tokens < natural ? 'length' : 'stop' });
    }
    return sequences;
  }

  prepare(kind: Endpoint, body: Json): Prepared {
    const model = this.resolveModel(body);
    const key = JSON.stringify(body);
    const n = positiveIntOrUndefined(body, 'n') ?? 1;
    switch (kind) {
      case 'chat': {
        const messages = body.messages;
        if (!Array.isArray(messages) || messages.length === 0) {
          throw new RequestError(400, 'messages: Field required (a non-empty list of messages)', 'messages');
        }
        let promptTokens = 3;
        for (const m of messages) {
          if (!isRecord(m) || typeof m.role !== 'string') throw new RequestError(400, 'each message needs a role', 'messages');
          promptTokens += 4 + countTokens(textOfContent(m.content));
        }
        const maxTokens = positiveIntOrUndefined(body, 'max_completion_tokens') ?? positiveIntOrUndefined(body, 'max_tokens');
        this.checkContext(promptTokens, maxTokens, 'messages');
        return { model, promptTokens, sequences: this.sequencesFor(key, n, maxTokens), body };
      }
      case 'completions': {
        const prompt = body.prompt;
        let prompts: unknown[];
        if (typeof prompt === 'string') prompts = [prompt];
        else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'number')) prompts = [prompt];
        else if (Array.isArray(prompt) && prompt.length > 0) prompts = prompt;
        else throw new RequestError(400, 'prompt: Field required (a string, a list of strings or token ids)', 'prompt');
        let promptTokens = 0;
        for (const p of prompts) {
          if (typeof p === 'string') promptTokens += countTokens(p);
          else if (Array.isArray(p)) promptTokens += p.length;
          else throw new RequestError(400, 'prompt must be strings or lists of token ids', 'prompt');
        }
        const maxTokens = positiveIntOrUndefined(body, 'max_tokens') ?? 16;
        this.checkContext(promptTokens, maxTokens, 'prompt');
        return { model, promptTokens, sequences: this.sequencesFor(key, n * prompts.length, maxTokens), body };
      }
      case 'embeddings': {
        const input = body.input;
        let inputs: unknown[];
        if (typeof input === 'string') inputs = [input];
        else if (Array.isArray(input) && input.length > 0 && input.every((p) => typeof p === 'number')) inputs = [input];
        else if (Array.isArray(input) && input.length > 0) inputs = input;
        else throw new RequestError(400, 'input: Field required (a string, a list of strings or token ids)', 'input');
        let promptTokens = 0;
        for (const p of inputs) {
          const tokens = typeof p === 'string' ? countTokens(p) : Array.isArray(p) ? p.length : -1;
          if (tokens < 0) throw new RequestError(400, 'input must be strings or lists of token ids', 'input');
          if (tokens > this.options.maxModelLen) this.checkContext(tokens, 0, 'input');
          promptTokens += tokens;
        }
        return { model, promptTokens, sequences: [], body: { ...body, input: inputs } };
      }
      case 'responses': {
        const input = body.input;
        let text = typeof body.instructions === 'string' ? body.instructions : '';
        if (typeof input === 'string') text += input;
        else if (Array.isArray(input) && input.length > 0) {
          for (const item of input) if (isRecord(item)) text += textOfContent(item.content);
        } else throw new RequestError(400, 'input: Field required', 'input');
        const promptTokens = countTokens(text) + 3;
        const maxTokens = positiveIntOrUndefined(body, 'max_output_tokens');
        this.checkContext(promptTokens, maxTokens, 'input');
        return { model, promptTokens, sequences: this.sequencesFor(key, 1, maxTokens), body };
      }
    }
  }

  recordArrival(body: string): void {
    this.stats.received++;
    const now = Date.now();
    this.stats.firstRequestAt ??= now;
    this.stats.lastRequestAt = now;
    if (this.options.recordRequests === true) {
      const key = String(seedOf(body));
      this.requestCounts.set(key, (this.requestCounts.get(key) ?? 0) + 1);
    }
  }

  /** Runs one request through the capacity model; resolves when its last token would be out. */
  async execute(prepared: Prepared, extraLatencyMs: number, signal: AbortSignal): Promise<void> {
    const labels = { model_name: prepared.model };
    const started = performance.now();
    this.metrics.waiting.set(labels, this.capacity.queued + 1);
    const release = await this.capacity.acquire(signal);
    try {
      this.stats.maxRunning = Math.max(this.stats.maxRunning, this.capacity.running);
      this.metrics.running.set(labels, this.capacity.running);
      this.metrics.waiting.set(labels, this.capacity.queued);
      const outputTokens = prepared.sequences.reduce((sum, s) => sum + s.tokens, 0);
      // Sequences of one request (n > 1) decode side by side: the longest sets the time.
      const longest = prepared.sequences.reduce((m, s) => Math.max(m, s.tokens), 0);
      await sleep(this.capacity.serviceTimeMs(prepared.promptTokens, longest) + extraLatencyMs, signal);
      this.metrics.promptTokens.inc(labels, prepared.promptTokens);
      this.metrics.generationTokens.inc(labels, outputTokens);
      const finish = prepared.sequences.some((s) => s.finish === 'length') ? 'length' : 'stop';
      this.metrics.success.inc({ model_name: prepared.model, finished_reason: finish });
      this.metrics.latency.observe(labels, (performance.now() - started) / 1000);
      this.stats.served++;
      this.stats.lastServedAt = Date.now();
    } finally {
      release();
      this.metrics.running.set(labels, this.capacity.running);
    }
  }

  resetStats(): void {
    Object.assign(this.stats, { received: 0, served: 0, rejected: 0, aborted: 0, maxRunning: 0, firstRequestAt: null, lastRequestAt: null, lastServedAt: null });
    this.stats.faults = { error: 0, hang: 0, drop: 0, spike: 0, stall: 0, truncate: 0 };
    this.requestCounts.clear();
  }

  countFault(kind: keyof SimulatorStats['faults']): void {
    this.stats.faults[kind]++;
    this.metrics.faults.inc({ kind });
  }

  countRejected(): void {
    this.stats.rejected++;
  }

  countAborted(): void {
    this.stats.aborted++;
  }

  rollFault(): ReturnType<typeof decideFault> {
    return decideFault(this.faults, this.random);
  }
}

type Endpoint = 'chat' | 'completions' | 'embeddings' | 'responses';

function usageOf(p: Prepared): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  const completion = p.sequences.reduce((s, x) => s + x.tokens, 0);
  return { prompt_tokens: p.promptTokens, completion_tokens: completion, total_tokens: p.promptTokens + completion };
}

function responseBody(kind: Endpoint, p: Prepared, embeddingDim: number): Json {
  const created = now();
  const usage = usageOf(p);
  switch (kind) {
    case 'chat':
      return {
        id: `chatcmpl-${hexId()}`,
        object: 'chat.completion',
        created,
        model: p.model,
        choices: p.sequences.map((s, index) => ({
          index,
          message: { role: 'assistant', content: generateText(s.seed, s.tokens), refusal: null, annotations: null, audio: null, function_call: null, tool_calls: [], reasoning_content: null },
          logprobs: null,
          finish_reason: s.finish,
          stop_reason: null,
        })),
        service_tier: null,
        system_fingerprint: null,
        usage: { ...usage, prompt_tokens_details: null },
        prompt_logprobs: null,
        kv_transfer_params: null,
      };
    case 'completions':
      return {
        id: `cmpl-${hexId()}`,
        object: 'text_completion',
        created,
        model: p.model,
        choices: p.sequences.map((s, index) => ({
          index,
          text: generateText(s.seed, s.tokens),
          logprobs: null,
          finish_reason: s.finish,
          stop_reason: null,
          prompt_logprobs: null,
        })),
        service_tier: null,
        system_fingerprint: null,
        usage: { ...usage, prompt_tokens_details: null },
        kv_transfer_params: null,
      };
    case 'embeddings': {
      const inputs = p.body.input as unknown[];
      const base64 = p.body.encoding_format === 'base64';
      const dims = typeof p.body.dimensions === 'number' && p.body.dimensions > 0 ? p.body.dimensions : embeddingDim;
      return {
        id: `embd-${hexId()}`,
        object: 'list',
        created,
        model: p.model,
        data: inputs.map((input, index) => {
          const vector = embeddingVector(seedOf(JSON.stringify(input)), dims);
          return {
            index,
            object: 'embedding',
            embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
          };
        }),
        usage: { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens, completion_tokens: 0, prompt_tokens_details: null },
      };
    }
    case 'responses': {
      const s = p.sequences[0] ?? { seed: 0, tokens: 0, finish: 'stop' as const };
      return {
        id: `resp_${hexId()}`,
        object: 'response',
        created_at: created,
        model: p.model,
        status: s.finish === 'length' ? 'incomplete' : 'completed',
        incomplete_details: s.finish === 'length' ? { reason: 'max_output_tokens' } : null,
        instructions: p.body.instructions ?? null,
        metadata: p.body.metadata ?? null,
        max_output_tokens: p.body.max_output_tokens ?? null,
        output: [
          {
            id: `msg_${hexId()}`,
            type: 'message',
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text: generateText(s.seed, s.tokens), annotations: [], logprobs: null }],
          },
        ],
        parallel_tool_calls: true,
        temperature: p.body.temperature ?? 1,
        tool_choice: 'auto',
        tools: [],
        top_p: p.body.top_p ?? 1,
        background: false,
        previous_response_id: null,
        reasoning: null,
        service_tier: 'auto',
        text: null,
        truncation: 'disabled',
        user: null,
        usage: {
          input_tokens: p.promptTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: s.tokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: p.promptTokens + s.tokens,
        },
      };
    }
  }
}

function errorResponse(c: Context<Env>, status: number, message: string, param: string | null, retryAfter?: number): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfter !== undefined && (status === 429 || status === 503)) headers['retry-after'] = String(retryAfter);
  const body = { error: { message, type: ERROR_TYPES[status] ?? 'Error', param, code: status } };
  return c.body(JSON.stringify(body), status as 400, headers);
}

export function createSimulatorApp(state: SimulatorState): Hono<Env> {
  const app = new Hono<Env>();

  const inference = (kind: Endpoint) => async (c: Context<Env>): Promise<Response> => {
    const raw = await c.req.text();
    state.recordArrival(raw);
    const signal = c.req.raw.signal;
    const requestId = c.req.header('x-request-id') ?? hexId();
    c.header('x-request-id', requestId);

    const fault = state.rollFault();
    if (fault.kind === 'drop') {
      state.countFault('drop');
      c.env.incoming.socket.destroy();
      return c.body(null);
    }
    if (fault.kind === 'hang') {
      state.countFault('hang');
      await aborted(signal);
      return c.body(null);
    }
    if (fault.extraLatencyMs > 0) state.countFault('spike');
    if (fault.kind === 'error') {
      state.countFault('error');
      try {
        await sleep(fault.extraLatencyMs, signal);
      } catch {
        return c.body(null);
      }
      return errorResponse(c, fault.status, `simulated ${fault.status} error`, null, state.faults.retryAfterSeconds);
    }

    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      state.countRejected();
      return errorResponse(c, 400, 'JSON decode error: the request body is not valid JSON', null);
    }
    let prepared: Prepared;
    try {
      if (!isRecord(body)) throw new RequestError(400, 'the request body must be a JSON object');
      prepared = state.prepare(kind, body);
    } catch (err) {
      state.countRejected();
      if (err instanceof RequestError) return errorResponse(c, err.status, err.message, err.param);
      throw err;
    }

    if (body.stream === true && (kind === 'chat' || kind === 'completions')) {
      return streamCompletion(c, state, kind, prepared, fault.extraLatencyMs, signal);
    }
    try {
      await state.execute(prepared, fault.extraLatencyMs, signal);
    } catch (err) {
      if (err instanceof AbortedError) {
        state.countAborted();
        return c.body(null);
      }
      throw err;
    }
    const answer = JSON.stringify(responseBody(kind, prepared, state.options.embeddingDim));
    if (fault.body !== undefined) return brokenAnswer(c, state, answer, fault.body, signal);
    return c.body(answer, 200, { 'content-type': 'application/json' });
  };

  app.post('/v1/chat/completions', inference('chat'));
  app.post('/v1/completions', inference('completions'));
  app.post('/v1/embeddings', inference('embeddings'));
  app.post('/v1/responses', inference('responses'));

  app.get('/v1/models', (c) =>
    c.json({
      object: 'list',
      data: state.options.models.map((id) => ({
        id,
        object: 'model',
        created: now(),
        owned_by: 'vllm',
        root: id,
        parent: null,
        max_model_len: state.options.maxModelLen,
        permission: [
          {
            id: `modelperm-${hexId()}`,
            object: 'model_permission',
            created: now(),
            allow_create_engine: false,
            allow_sampling: true,
            allow_logprobs: true,
            allow_search_indices: false,
            allow_view: true,
            allow_fine_tuning: false,
            organization: '*',
            group: null,
            is_blocking: false,
          },
        ],
      })),
    }),
  );
  app.get('/health', (c) => (state.faults.down ? c.body(null, 503) : c.body(null, 200)));
  app.get('/version', (c) => c.json({ version: '0.11.0+simulated' }));
  app.get('/metrics', async (c) => c.body(await state.registry.metrics(), 200, { 'content-type': state.registry.contentType }));

  // The simulator's own controls (not part of vLLM).
  app.get('/control/faults', (c) => c.json(state.faults));
  app.put('/control/faults', async (c) => {
    const parsed = faultsSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) return c.json({ error: { message: parsed.error.message, type: 'BadRequestError', param: null, code: 400 } }, 400);
    state.faults = parsed.data;
    return c.json(state.faults);
  });
  app.get('/control/stats', (c) => c.json(state.snapshot()));
  app.post('/control/stats/reset', (c) => {
    state.resetStats();
    return c.json(state.snapshot());
  });
  app.get('/control/requests', (c) => c.json(Object.fromEntries(state.requestCounts)));

  app.notFound((c) => errorResponse(c, 404, `Not Found: ${c.req.method} ${c.req.path}`, null));
  app.onError((err, c) => errorResponse(c, 500, err.message, null));
  return app;
}

/** Status, headers and half the body, then nothing more (stall) or a dropped connection (truncate). */
function brokenAnswer(c: Context<Env>, state: SimulatorState, answer: string, how: 'stall' | 'truncate', signal: AbortSignal): Response {
  state.countFault(how);
  const half = answer.slice(0, Math.floor(answer.length / 2));
  const socket = c.env.incoming.socket;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(half));
      if (how === 'truncate') setTimeout(() => socket.destroy(), 20);
      else signal.addEventListener('abort', () => { controller.close(); }, { once: true });
    },
  });
  return c.body(body, 200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(answer)) });
}

function streamCompletion(
  c: Context<Env>,
  state: SimulatorState,
  kind: 'chat' | 'completions',
  p: Prepared,
  extraLatencyMs: number,
  signal: AbortSignal,
): Response {
  const id = kind === 'chat' ? `chatcmpl-${hexId()}` : `cmpl-${hexId()}`;
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const created = now();
  const includeUsage = isRecord(p.body.stream_options) && p.body.stream_options.include_usage === true;
  return streamSSE(c, async (stream) => {
    const labels = p.model;
    const release = await state.capacity.acquire(signal).catch(() => undefined);
    if (release === undefined) {
      state.countAborted();
      return;
    }
    try {
      await sleep(state.capacity.prefillTimeMs(p.promptTokens) + extraLatencyMs, signal);
      const texts = p.sequences.map((s) => generateText(s.seed, s.tokens).split(' '));
      const longest = texts.reduce((m, t) => Math.max(m, t.length), 0);
      const chunk = (choices: Json[], usage: Json | null = null): string =>
        JSON.stringify({ id, object, created, model: labels, choices, ...(includeUsage ? { usage } : {}) });
      if (kind === 'chat') {
        await stream.writeSSE({ data: chunk(p.sequences.map((_, index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }))) });
      }
      for (let t = 0; t < longest; t++) {
        await sleep(state.options.tokenLatencyMs, signal);
        const choices: Json[] = [];
        texts.forEach((words, index) => {
          const word = words[t];
          if (word === undefined) return;
          const text = t === 0 ? word : ` ${word}`;
          choices.push(kind === 'chat' ? { index, delta: { content: text }, logprobs: null, finish_reason: null } : { index, text, logprobs: null, finish_reason: null });
        });
        await stream.writeSSE({ data: chunk(choices) });
      }
      const last = p.sequences.map((s, index) =>
        kind === 'chat' ? { index, delta: {}, logprobs: null, finish_reason: s.finish, stop_reason: null } : { index, text: '', logprobs: null, finish_reason: s.finish, stop_reason: null },
      );
      await stream.writeSSE({ data: chunk(last) });
      if (includeUsage) await stream.writeSSE({ data: JSON.stringify({ id, object, created, model: labels, choices: [], usage: usageOf(p) }) });
      await stream.writeSSE({ data: '[DONE]' });
    } catch (err) {
      if (err instanceof AbortedError) state.countAborted();
      else throw err;
    } finally {
      release();
    }
  });
}

export interface RunningSimulator {
  url: string;
  port: number;
  state: SimulatorState;
  close(): Promise<void>;
}

export async function startSimulator(options: SimulatorOptions, listen: { host: string; port: number }): Promise<RunningSimulator> {
  const state = new SimulatorState(options);
  const app = createSimulatorApp(state);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: listen.host, port: listen.port }, () => { resolve(s); });
    s.once('error', reject);
  });
  // Hundreds of keep-alive connections are the normal load; never let Node's timeouts cut a long generation.
  if ('requestTimeout' in server) {
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    server.keepAliveTimeout = 60_000;
  }
  const address = server.address() as AddressInfo;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    state,
    close: () =>
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close(() => { resolve(); });
      }),
  };
}
