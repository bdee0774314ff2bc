// An HTTP server that answers like vLLM's OpenAI-compatible server (vLLM 0.32): the same routes,
// response shapes, errors, headers, authentication, keep-alive and capacity behaviour, with
// deterministic outputs and injectable faults. Only /control/* is the simulator's own.
// tests/vllm/conformance.test.ts holds it to a real vLLM; simulator/README.md lists what differs.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve, type HttpBindings } from '@hono/node-server';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { streamSSE } from 'hono/streaming';
import { Counter, Registry } from 'prom-client';

import { aborted, AbortedError, sleep } from '../lib/abortable.js';
import { resolveCapacity, type CapacityOptions } from './capacity.js';
import { Engine } from './engine.js';
import { decideFault, faultsSchema, noFaults, type Faults } from './faults.js';
import { VllmMetrics } from './metrics.js';
import type { EngineRequest, EngineRequestInput } from './scheduler.js';
import { embeddingVector, generateText, prng, seedOf, tokenize } from './text.js';
import {
  checkOutputLimit,
  checkPromptLength,
  isRecord,
  parameterError,
  parseBody,
  RequestError,
  validateFields,
  verifySampling,
  type Endpoint,
  type Json,
} from './validation.js';

/** The vLLM release whose HTTP behaviour the simulator copies (what GET /version answers). */
export const VLLM_VERSION = '0.32.0';

export interface SimulatorOptions extends CapacityOptions {
  models: string[];
  /**
   * Which served names are embedding (pooling) models; the others are generative. vLLM mounts
   * /v1/embeddings only for a pooling model, and chat, completions and responses only for a
   * generative one (404 {"detail":"Not Found"} otherwise). Default: the names containing "embed".
   */
  embeddingModels?: string[];
  /** vLLM's --api-key (one or several): then /v1/* answers 401 {"error":"Unauthorized"} without `Authorization: Bearer <key>`. */
  apiKey?: string | string[];
  /** vLLM's --enable-request-id-headers: an X-Request-Id header on every answer (the client's, or a new one). Off by default, as in vLLM. */
  enableRequestIdHeaders?: boolean;
  /** How long an idle keep-alive connection stays open, ms (vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE: 5 s). */
  keepAliveTimeoutMs?: number;
  /** usage.prompt_tokens_details (cached and created cache tokens); default off, as in vLLM. */
  enablePromptTokensDetails?: boolean;
  /** Fixed time before a request reaches the engine (the server's own work), ms; default 0. */
  prefillMs?: number;
  /** Where a sequence would stop by itself (its EOS), in tokens; max_tokens and the context cut it shorter. */
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
type ModelKind = 'generate' | 'embed';

/** The served names that are embedding models (the option, or the names containing "embed"). */
export function embeddingModelsOf(options: Pick<SimulatorOptions, 'models' | 'embeddingModels'>): Set<string> {
  return new Set(options.embeddingModels ?? options.models.filter((m) => /embed/i.test(m)));
}

/** A route that is not mounted for the request's model: FastAPI's 404 {"detail":"Not Found"}. */
class NotMounted extends Error {}

const now = (): number => Math.floor(Date.now() / 1000);
/** vLLM's random_uuid(): 16 hex characters. */
const hexId = (): string => randomBytes(8).toString('hex');

function textOfContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => {
        if (isRecord(part)) {
          if (typeof part.text === 'string') return part.text;
          // An image or audio part costs tokens too; count a fixed amount, like a vision encoder would
          // (different images are different tokens, the same image the same).
          return `\u0000${seedOf(JSON.stringify(part))}`.padEnd(256 * 4, '\u0000');
        }
        return '';
      })
      .join('');
  }
  return '';
}

const BOS = '<|begin_of_text|>';

/**
 * A chat prompt as tokens, laid out as Llama 3's chat template renders it: <|begin_of_text|>, then
 * per message a header of 4 tokens (start, role, end, blank line), the trimmed content and <|eot_id|>,
 * then the 4-token header of the answer. One message of k tokens is k + 10 tokens, as with real vLLM.
 */
function chatTokens(messages: { role: string; content: unknown }[]): string[] {
  const tokens = [BOS];
  for (const m of messages)
    tokens.push(
      '<|start_header_id|>',
      `<|${m.role}|>`,
      '<|end_header_id|>',
      '\n\n',
      ...tokenize(textOfContent(m.content).trim()),
      '<|eot_id|>',
    );
  tokens.push('<|start_header_id|>', '<|assistant|>', '<|end_header_id|>', '\n\n');
  return tokens;
}

interface Sequence {
  seed: number;
  /** Output tokens it will have. */
  tokens: number;
  finish: 'stop' | 'length';
  /** Which prompt it samples from. */
  prompt: number;
  /** Its max_tokens once the context is accounted for (vLLM's get_max_tokens). */
  maxTokens: number;
}

interface Prepared {
  kind: Endpoint;
  model: string;
  id: string;
  promptTokens: number;
  /** Each prompt's tokens (one per prompt or embedding input): what the engine schedules and caches. */
  prompts: string[][];
  /** One entry per sequence to generate (n × prompts); embeddings generate none. */
  sequences: Sequence[];
  n: number;
  body: Json;
  priority: number;
  /** Mixed into the first block's hash, so requests with different salts share no cache (vLLM's cache_salt). */
  cacheSalt: string | undefined;
  /** Prompt tokens found in the prefix cache, and full prompt blocks this request wrote to it (known once run). */
  cachedTokens: number;
  createdCacheTokens: number;
}

export class SimulatorState {
  faults: Faults;
  readonly engine: Engine;
  readonly registry = new Registry();
  readonly requestCounts = new Map<string, number>();
  readonly embeddingModels: Set<string>;
  /** vLLM's system_fingerprint: the version and a digest of the configuration. */
  readonly fingerprint: string;
  private readonly metrics: VllmMetrics;
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
  private readonly faultCounter: Counter<'kind'>;

  constructor(readonly options: SimulatorOptions) {
    this.faults = options.faults ?? noFaults;
    this.random = prng(options.seed ?? 1);
    this.embeddingModels = embeddingModelsOf(options);
    for (const m of this.embeddingModels)
      if (!options.models.includes(m))
        throw new Error(`embedding model "${m}" is not a served model (${options.models.join(', ')})`);
    const capacity = resolveCapacity(options);
    const { scheduler, timing } = capacity;
    this.fingerprint = `vllm-${VLLM_VERSION}-${createHash('sha256')
      .update(JSON.stringify([options.models, options.maxModelLen, scheduler]))
      .digest('hex')
      .slice(0, 8)}`;
    // One engine serves every model name, as vLLM does with several --served-model-name: its metrics carry the first.
    const metrics = new VllmMetrics(this.registry, this.defaultModel, options.maxModelLen, scheduler);
    this.metrics = metrics;
    this.engine = new Engine(scheduler, timing, {
      onState: (s) => {
        metrics.onState(s);
        if (s.running.length > this.stats.maxRunning) this.stats.maxRunning = s.running.length;
      },
      onStep: (plan, outcome) => {
        metrics.onStep(plan, outcome);
      },
      onToken: (request, at) => {
        metrics.onToken(request, at);
      },
      onFinish: (request, at) => {
        metrics.onFinish(request, at);
      },
    });
    this.faultCounter = new Counter({
      name: 'sim_faults_injected_total',
      help: 'Faults the simulator injected, by kind.',
      labelNames: ['kind'],
      registers: [this.registry],
    });
  }

  snapshot(): SimulatorStats {
    return {
      ...this.stats,
      faults: { ...this.stats.faults },
      running: this.engine.scheduler.running.length,
      waiting: this.engine.scheduler.numWaiting,
    };
  }

  get defaultModel(): string {
    return this.options.models[0] ?? 'model';
  }

  /** The served names of one kind (what a vLLM serving that kind would list). */
  modelsOf(kind: ModelKind): string[] {
    return this.options.models.filter((m) => this.embeddingModels.has(m) === (kind === 'embed'));
  }

  private naturalLength(seed: number): number {
    const { min, max } = this.options.outputTokens;
    return min + (seed % (max - min + 1));
  }

  /**
   * The request's model, as vLLM's _check_model: none (or "") means the served one; an unknown name
   * is a 404 naming the valid ones. A served model of the other kind has no such route (404 detail).
   */
  private resolveModel(body: Json, kind: ModelKind): string {
    const model = body.model;
    const names = this.modelsOf(kind);
    if (model === undefined || model === null || model === '') return names[0] ?? this.defaultModel;
    // validateFields made it a string.
    const name = typeof model === 'string' ? model : JSON.stringify(model);
    if (names.includes(name)) return name;
    if (this.options.models.includes(name)) throw new NotMounted();
    throw new RequestError(404, `The model \`${name}\` does not exist. Valid aliases: ${names.join(', ')}.`, 'model');
  }

  /**
   * n sequences for each prompt (in vLLM each is a request of its own; they share the prompt's blocks),
   * each stopping at its own max_tokens (already within the context), or earlier at its natural end
   * (never with ignore_eos).
   */
  private sequencesFor(seedBase: string, maxTokens: number[], n: number, ignoreEos: boolean): Sequence[] {
    const sequences: Sequence[] = [];
    for (let i = 0; i < maxTokens.length * n; i++) {
      const prompt = Math.floor(i / n);
      const seed = seedOf(`${seedBase}#${i}`);
      const natural = ignoreEos ? Number.POSITIVE_INFINITY : this.naturalLength(seed);
      const max = maxTokens[prompt] ?? 1;
      const tokens = Math.min(natural, max);
      sequences.push({ seed, tokens, finish: tokens < natural ? 'length' : 'stop', prompt, maxTokens: max });
    }
    return sequences;
  }

  /**
   * What vLLM does with a request before it reaches the engine, in its order: the body's validation,
   * the model, the output limit alone, the prompt (rendered and counted), the prompt alone over the
   * context, max_tokens resolved (the request's, capped by the room left; the room left by default),
   * then the sampling parameters. `requestIdHeader` is the client's X-Request-Id, which becomes the id.
   */
  prepare(kind: Endpoint, raw: Json, requestIdHeader?: string): Prepared {
    const limit = this.options.maxModelLen;
    if (kind === 'completions') {
      // A model validator that runs before the fields are checked.
      const prompt = raw.prompt;
      if (
        (prompt === undefined || prompt === null || prompt === '') &&
        (raw.prompt_embeds === undefined || raw.prompt_embeds === null)
      ) {
        throw parameterError('Either prompt or prompt_embeds must be provided and non-empty.', 'prompt');
      }
    }
    const body = validateFields(kind, raw);
    const model = this.resolveModel(body, kind === 'embeddings' ? 'embed' : 'generate');
    const seedBase = JSON.stringify(raw);
    const priority = typeof body.priority === 'number' ? body.priority : 0;
    const cacheSalt = typeof body.cache_salt === 'string' ? body.cache_salt : undefined;
    const ignoreEos = body.ignore_eos === true;
    const baseId = requestIdHeader ?? (typeof body.request_id === 'string' ? body.request_id : undefined);
    const base = { kind, model, body, priority, cacheSalt, cachedTokens: 0, createdCacheTokens: 0 };
    const intOf = (key: string): number | undefined => (typeof body[key] === 'number' ? body[key] : undefined);
    switch (kind) {
      case 'chat': {
        const param = intOf('max_completion_tokens') !== undefined ? 'max_completion_tokens' : 'max_tokens';
        const requested = intOf(param);
        checkOutputLimit(requested ?? 0, param, limit);
        const messages = body.messages as Json[];
        if (messages.length === 0)
          throw new RequestError(
            400,
            'Cannot apply chat template to an empty conversation. Provide at least one message.',
          );
        const tokens = chatTokens(messages.map((m) => ({ role: String(m.role), content: m.content })));
        checkPromptLength(tokens.length, limit, true);
        const maxTokens = Math.min(limit - tokens.length, requested ?? Number.POSITIVE_INFINITY);
        const n = intOf('n') ?? 1;
        verifySampling(body, n, maxTokens);
        return {
          ...base,
          id: `chatcmpl-${baseId ?? hexId()}`,
          n,
          promptTokens: tokens.length,
          prompts: [tokens],
          sequences: this.sequencesFor(seedBase, [maxTokens], n, ignoreEos),
        };
      }
      case 'completions': {
        const prompt = body.prompt;
        let prompts: unknown[];
        if (typeof prompt === 'string') prompts = [prompt];
        else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'number'))
          prompts = [prompt];
        else if (Array.isArray(prompt)) prompts = prompt;
        else throw parameterError('Either prompt or prompt_embeds must be provided and non-empty.', 'prompt');
        if (prompts.length === 0) throw new RequestError(400, 'You must pass at least one prompt');
        const requested = intOf('max_tokens') ?? 16;
        checkOutputLimit(requested, 'max_tokens', limit);
        const tokens = prompts.map((p) => {
          if (typeof p === 'string') return [BOS, ...tokenize(p)];
          if (Array.isArray(p) && p.every((id) => typeof id === 'number')) return p.map((id) => `#${String(id)}`);
          throw new RequestError(
            400,
            'prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids',
            'prompt',
          );
        });
        tokens.forEach((t, i) => {
          checkPromptLength(t.length, limit, typeof prompts[i] === 'string');
        });
        const maxTokens = tokens.map((t) => Math.min(limit - t.length, requested));
        const n = intOf('n') ?? 1;
        verifySampling(body, n, Math.min(...maxTokens));
        const promptTokens = tokens.reduce((sum, t) => sum + t.length, 0);
        return {
          ...base,
          id: `cmpl-${baseId ?? hexId()}`,
          n,
          promptTokens,
          prompts: tokens,
          sequences: this.sequencesFor(seedBase, maxTokens, n, ignoreEos),
        };
      }
      case 'responses': {
        const requested = intOf('max_output_tokens');
        checkOutputLimit(requested ?? 0, 'max_output_tokens', limit);
        const messages: { role: string; content: unknown }[] = [];
        if (typeof body.instructions === 'string') messages.push({ role: 'system', content: body.instructions });
        const input = body.input;
        if (typeof input === 'string') messages.push({ role: 'user', content: input });
        else if (Array.isArray(input)) {
          for (const item of input)
            if (isRecord(item) && typeof item.role === 'string')
              messages.push({ role: item.role, content: item.content });
        }
        if (messages.length === 0)
          throw new RequestError(
            400,
            'Cannot apply chat template to an empty conversation. Provide at least one message.',
          );
        // The Responses API tokenizes the rendered template with special tokens: one <|begin_of_text|> more.
        const tokens = [BOS, ...chatTokens(messages)];
        checkPromptLength(tokens.length, limit, true);
        const maxTokens = Math.min(limit - tokens.length, requested ?? Number.POSITIVE_INFINITY);
        verifySampling(body, 1, maxTokens);
        const id = typeof body.request_id === 'string' ? body.request_id : `resp_${hexId()}`;
        return {
          ...base,
          id,
          n: 1,
          promptTokens: tokens.length,
          prompts: [tokens],
          sequences: this.sequencesFor(seedBase, [maxTokens], 1, ignoreEos),
        };
      }
      case 'embeddings': {
        const input = body.input;
        let inputs: unknown[];
        if (typeof input === 'string') inputs = [input];
        else if (Array.isArray(input) && input.length > 0 && input.every((p) => typeof p === 'number'))
          inputs = [input];
        else if (Array.isArray(input) && input.length > 0) inputs = input;
        else throw new RequestError(400, 'You must pass at least one prompt');
        const tokens = inputs.map((p) => {
          const t =
            typeof p === 'string' ? tokenize(p) : Array.isArray(p) ? p.map((id) => `#${String(id)}`) : undefined;
          if (t === undefined) throw new RequestError(400, 'input must be strings or lists of token ids', 'input');
          checkPromptLength(t.length, limit, typeof p === 'string');
          return t;
        });
        const promptTokens = tokens.reduce((sum, t) => sum + t.length, 0);
        return {
          ...base,
          id: `embd-${baseId ?? hexId()}`,
          n: 1,
          promptTokens,
          prompts: tokens,
          sequences: [],
          body: { ...body, input: inputs },
        };
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

  /**
   * Runs a request through the engine: each prompt × n sample is an engine request of its own (an
   * embedding input is one that ends with its prefill). Resolves when all have ended; rejects with
   * AbortedError (and frees their blocks) when the client goes away. onToken hears every output token.
   */
  async execute(
    prepared: Prepared,
    extraLatencyMs: number,
    signal: AbortSignal,
    onToken?: (sequence: number, request: EngineRequest) => void,
  ): Promise<void> {
    const delay = (this.options.prefillMs ?? 0) + extraLatencyMs;
    if (delay > 0) await sleep(delay, signal);
    // A prompt of no tokens still has the tokenizer's begin-of-text token; a cache salt changes the first token's identity.
    const promptOf = (i: number): string[] => {
      const tokens = prepared.prompts[i] ?? [];
      const prompt = tokens.length > 0 ? [...tokens] : [BOS];
      if (prepared.cacheSalt !== undefined) prompt[0] = `${prepared.cacheSalt}\u0003${prompt[0] ?? ''}`;
      return prompt;
    };
    const inputs: EngineRequestInput[] =
      prepared.sequences.length > 0
        ? prepared.sequences.map((s) => ({
            prompt: promptOf(s.prompt),
            maxTokens: s.tokens,
            finishReason: s.finish,
            priority: prepared.priority,
            outputSeed: s.seed,
          }))
        : prepared.prompts.map((_, i) => ({ prompt: promptOf(i), maxTokens: 0, priority: prepared.priority }));
    const requests = await this.runOnEngine(inputs, signal, onToken);
    // vLLM reports each prompt's cached tokens once (the first sample's), summed over prompts; the
    // tokens it wrote to the cache are its full prompt blocks that were not hits.
    const { blockSize, enablePrefixCaching } = this.engine.scheduler.config;
    const counted = new Set<number>();
    prepared.cachedTokens = 0;
    prepared.createdCacheTokens = 0;
    requests.forEach((request, i) => {
      const prompt = prepared.sequences.length > 0 ? (prepared.sequences[i]?.prompt ?? 0) : i;
      if (counted.has(prompt)) return;
      counted.add(prompt);
      const cached = Math.max(0, request.numCached);
      prepared.cachedTokens += cached;
      if (enablePrefixCaching)
        prepared.createdCacheTokens += Math.max(
          0,
          Math.floor(request.numPromptTokens / blockSize) * blockSize - cached,
        );
    });
    if (prepared.sequences.length > 0) {
      this.metrics.onParentFinished(
        prepared.n,
        prepared.sequences.map((s) => s.maxTokens),
        requests.map((r) => r.numOutput),
      );
    }
    this.stats.served++;
    this.stats.lastServedAt = Date.now();
  }

  private runOnEngine(
    inputs: EngineRequestInput[],
    signal: AbortSignal,
    onToken?: (sequence: number, request: EngineRequest) => void,
  ): Promise<EngineRequest[]> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new AbortedError());
        return;
      }
      const requests: EngineRequest[] = [];
      let open = inputs.length;
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        for (const request of requests) this.engine.abort(request);
        reject(new AbortedError());
      };
      const done = (): void => {
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(requests);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      inputs.forEach((input, sequence) => {
        requests.push(
          this.engine.submit(input, (request, event) => {
            if (settled) return;
            if (event === 'token') onToken?.(sequence, request);
            else if (--open === 0) done();
          }),
        );
      });
      if (open === 0) done();
    });
  }

  close(): void {
    this.engine.close();
  }

  resetStats(): void {
    Object.assign(this.stats, {
      received: 0,
      served: 0,
      rejected: 0,
      aborted: 0,
      maxRunning: 0,
      firstRequestAt: null,
      lastRequestAt: null,
      lastServedAt: null,
    });
    this.stats.faults = { error: 0, hang: 0, drop: 0, spike: 0, stall: 0, truncate: 0 };
    this.requestCounts.clear();
  }

  countFault(kind: keyof SimulatorStats['faults']): void {
    this.stats.faults[kind]++;
    this.faultCounter.inc({ kind });
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

interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  prompt_tokens_details: { cached_tokens: number; created_cache_tokens: number | null; multimodal_tokens: null } | null;
  completion_tokens_details: null;
}

/** vLLM's usage: prompt_tokens_details only with --enable-prompt-tokens-details (completions leave created_cache_tokens null). */
function usageOf(p: Prepared, details: boolean): Usage {
  const completion = p.sequences.reduce((s, x) => s + x.tokens, 0);
  return {
    prompt_tokens: p.promptTokens,
    total_tokens: p.promptTokens + completion,
    completion_tokens: completion,
    prompt_tokens_details: details
      ? {
          cached_tokens: p.cachedTokens,
          created_cache_tokens: p.kind === 'chat' ? p.createdCacheTokens : null,
          multimodal_tokens: null,
        }
      : null,
    completion_tokens_details: null,
  };
}

function responseBody(p: Prepared, state: SimulatorState): Json {
  const created = now();
  const details = state.options.enablePromptTokensDetails === true;
  const fingerprint = state.fingerprint;
  switch (p.kind) {
    case 'chat':
      return {
        id: p.id,
        object: 'chat.completion',
        created,
        model: p.model,
        choices: p.sequences.map((s, index) => ({
          index,
          message: {
            role: 'assistant',
            content: generateText(s.seed, s.tokens),
            refusal: null,
            annotations: null,
            audio: null,
            function_call: null,
            reasoning: null,
          },
          logprobs: null,
          finish_reason: s.finish,
          stop_reason: null,
          token_ids: null,
          routed_experts: null,
        })),
        service_tier: null,
        system_fingerprint: fingerprint,
        usage: usageOf(p, details),
        prompt_logprobs: null,
        prompt_token_ids: null,
        prompt_text: null,
        kv_transfer_params: null,
        ec_transfer_params: null,
        metrics: null,
      };
    case 'completions':
      return {
        id: p.id,
        object: 'text_completion',
        created,
        model: p.model,
        choices: p.sequences.map((s, index) => ({
          index,
          text: generateText(s.seed, s.tokens),
          logprobs: null,
          finish_reason: s.finish,
          stop_reason: null,
          token_ids: null,
          prompt_logprobs: null,
          prompt_token_ids: null,
          routed_experts: null,
        })),
        service_tier: null,
        system_fingerprint: fingerprint,
        usage: usageOf(p, details),
        kv_transfer_params: null,
        ec_transfer_params: null,
        metrics: null,
      };
    case 'embeddings': {
      const inputs = p.body.input as unknown[];
      const base64 = p.body.encoding_format === 'base64';
      const dims =
        typeof p.body.dimensions === 'number' && p.body.dimensions > 0 ? p.body.dimensions : state.options.embeddingDim;
      return {
        id: p.id,
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
        usage: {
          prompt_tokens: p.promptTokens,
          total_tokens: p.promptTokens,
          completion_tokens: 0,
          prompt_tokens_details: null,
        },
      };
    }
    case 'responses': {
      const s = p.sequences[0] ?? { seed: 0, tokens: 0, finish: 'stop' as const, maxTokens: 0 };
      const num = (key: string, fallback: number): number => (typeof p.body[key] === 'number' ? p.body[key] : fallback);
      return {
        id: p.id,
        created_at: created,
        incomplete_details: s.finish === 'length' ? { reason: 'max_output_tokens' } : null,
        instructions: p.body.instructions ?? null,
        metadata: p.body.metadata ?? null,
        model: p.model,
        object: 'response',
        output: [
          {
            id: `msg_${hexId()}`,
            content: [{ annotations: [], text: generateText(s.seed, s.tokens), type: 'output_text', logprobs: null }],
            role: 'assistant',
            status: 'completed',
            type: 'message',
            phase: null,
          },
        ],
        parallel_tool_calls: true,
        temperature: num('temperature', 1),
        tool_choice: 'none',
        tools: [],
        top_p: num('top_p', 1),
        background: false,
        // What the request was given: its max_output_tokens within the context (the room left by default).
        max_output_tokens: s.maxTokens,
        max_tool_calls: null,
        previous_response_id: null,
        prompt: null,
        reasoning: null,
        service_tier: 'auto',
        status: s.finish === 'length' ? 'incomplete' : 'completed',
        text: null,
        top_logprobs: null,
        truncation: 'disabled',
        // The Responses API reports cached tokens whatever --enable-prompt-tokens-details says.
        usage: {
          input_tokens: p.promptTokens,
          input_tokens_details: {
            cached_tokens: p.cachedTokens,
            cache_write_tokens: p.createdCacheTokens,
            input_tokens_per_turn: [],
            cached_tokens_per_turn: [],
          },
          output_tokens: s.tokens,
          output_tokens_details: {
            reasoning_tokens: 0,
            tool_output_tokens: 0,
            output_tokens_per_turn: [],
            tool_output_tokens_per_turn: [],
          },
          total_tokens: p.promptTokens + s.tokens,
        },
        user: null,
        presence_penalty: num('presence_penalty', 0),
        frequency_penalty: num('frequency_penalty', 0),
        kv_transfer_params: null,
        ec_transfer_params: null,
        input_messages: null,
        output_messages: null,
      };
    }
  }
}

const JSON_TYPE = { 'content-type': 'application/json' };

function errorResponse(c: Context<Env>, err: RequestError, retryAfter?: number): Response {
  const headers: Record<string, string> = { ...JSON_TYPE };
  if (retryAfter !== undefined && (err.status === 429 || err.status === 503))
    headers['retry-after'] = String(retryAfter);
  const body = { error: { message: err.message, type: err.type, param: err.param, code: err.status } };
  return c.body(JSON.stringify(body), err.status as 400, headers);
}

/** The error type vLLM gives a status: its own exception names, else the HTTP phrase (as for its 503s). */
function errorTypeOf(status: number): string {
  const own: Record<number, string> = {
    400: 'BadRequestError',
    404: 'NotFoundError',
    422: 'UnprocessableEntityError',
    500: 'InternalServerError',
    501: 'NotImplementedError',
  };
  return own[status] ?? STATUS_CODES[status] ?? 'Error';
}

const notFound = (c: Context<Env>): Response => c.body('{"detail":"Not Found"}', 404, JSON_TYPE);
const unauthorized = (c: Context<Env>): Response => c.body('{"error":"Unauthorized"}', 401, JSON_TYPE);

/** vLLM's AuthenticationMiddleware: these prefixes need the key (any method but OPTIONS); the rest is open. */
const GUARDED_PREFIXES = ['/v1', '/v2', '/inference', '/cohere'];

function authMiddleware(keys: string[]): MiddlewareHandler<Env> {
  const digests = keys.map((k) => createHash('sha256').update(k).digest());
  return async (c, next) => {
    if (c.req.method === 'OPTIONS' || !GUARDED_PREFIXES.some((p) => c.req.path.startsWith(p))) return next();
    const header = c.req.header('authorization') ?? '';
    const space = header.indexOf(' ');
    const scheme = space < 0 ? header : header.slice(0, space);
    const token = space < 0 ? '' : header.slice(space + 1);
    const digest = createHash('sha256').update(token).digest();
    const ok = scheme.toLowerCase() === 'bearer' && digests.some((d) => timingSafeEqual(d, digest));
    if (!ok) return unauthorized(c);
    return next();
  };
}

export function createSimulatorApp(state: SimulatorState): Hono<Env> {
  const app = new Hono<Env>();
  const generative = state.modelsOf('generate').length > 0;
  const embedding = state.modelsOf('embed').length > 0;
  // The routes vLLM mounts for this server (only those the project uses; see simulator/README.md), and the simulator's own.
  const routes: Record<string, string[]> = {
    '/health': ['GET'],
    '/version': ['GET'],
    '/metrics': ['GET'],
    '/load': ['GET'],
    '/ping': ['GET', 'POST'],
    '/v1/models': ['GET'],
    ...(generative ? { '/v1/chat/completions': ['POST'], '/v1/completions': ['POST'], '/v1/responses': ['POST'] } : {}),
    ...(embedding ? { '/v1/embeddings': ['POST'] } : {}),
    '/control/faults': ['GET', 'PUT'],
    '/control/stats': ['GET'],
    '/control/stats/reset': ['POST'],
    '/control/requests': ['GET'],
  };

  // Outermost: X-Request-Id only with --enable-request-id-headers; CORS's "vary: Origin" on all but the 401s.
  app.use(async (c, next) => {
    await next();
    if (c.res.status !== 401) c.res.headers.set('vary', 'Origin');
    // Node would announce its idle timeout ("keep-alive: timeout=5"), and clients such as undici would
    // then close idle connections in time; uvicorn announces nothing. A Connection header of our own
    // keeps Node from adding it, so clients meet the same 5-second close as with vLLM.
    const incoming = c.env.incoming;
    if (incoming.httpVersion === '1.1' && !/\bclose\b/i.test(c.req.header('connection') ?? ''))
      c.res.headers.set('connection', 'keep-alive');
    if (state.options.enableRequestIdHeaders === true)
      c.res.headers.set('x-request-id', c.req.header('x-request-id') ?? randomUUID().replaceAll('-', ''));
  });
  const keys = state.options.apiKey === undefined ? [] : [state.options.apiKey].flat();
  if (keys.length > 0) app.use(authMiddleware(keys));
  // Starlette's routing: an unknown path is 404 {"detail":"Not Found"}; a known one with another method (HEAD too) 405.
  app.use(async (c, next) => {
    const methods = routes[c.req.path];
    if (methods === undefined) return notFound(c);
    if (!methods.includes(c.req.method))
      return c.body('{"detail":"Method Not Allowed"}', 405, { ...JSON_TYPE, allow: methods.join(', ') });
    return next();
  });

  const inference =
    (kind: Endpoint) =>
    async (c: Context<Env>): Promise<Response> => {
      const raw = await c.req.text();
      state.recordArrival(raw);
      const signal = c.req.raw.signal;

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
        if (fault.status === 401) return unauthorized(c);
        return errorResponse(
          c,
          new RequestError(fault.status, `simulated ${fault.status} error`, null, errorTypeOf(fault.status)),
          state.faults.retryAfterSeconds,
        );
      }

      let prepared: Prepared;
      try {
        prepared = state.prepare(kind, parseBody(raw), c.req.header('x-request-id'));
      } catch (err) {
        state.countRejected();
        if (err instanceof NotMounted) return notFound(c);
        if (err instanceof RequestError) return errorResponse(c, err);
        throw err;
      }

      if (prepared.body.stream === true && (kind === 'chat' || kind === 'completions')) {
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
      const answer = JSON.stringify(responseBody(prepared, state));
      if (fault.body !== undefined) return brokenAnswer(c, state, answer, fault.body, signal);
      return c.body(answer, 200, JSON_TYPE);
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
  // An empty 200 (no content type), as vLLM's; 503 while the simulated engine is down.
  app.get('/health', (c) => c.body(null, state.faults.down ? 503 : 200));
  app.get('/version', (c) => c.json({ version: VLLM_VERSION }));
  app.get('/ping', (c) => c.body(null, state.faults.down ? 503 : 200));
  app.post('/ping', (c) => c.body(null, state.faults.down ? 503 : 200));
  // vLLM counts in-flight requests here only with --enable-server-load-tracking, which the simulator does not model.
  app.get('/load', (c) => c.json({ server_load: 0 }));
  app.get('/metrics', async (c) =>
    c.body(await state.registry.metrics(), 200, { 'content-type': state.registry.contentType }),
  );

  // The simulator's own controls (not part of vLLM; open even with an API key).
  app.get('/control/faults', (c) => c.json(state.faults));
  app.put('/control/faults', async (c) => {
    const parsed = faultsSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success)
      return c.json({ error: { message: parsed.error.message, type: 'BadRequestError', param: null, code: 400 } }, 400);
    state.faults = parsed.data;
    return c.json(state.faults);
  });
  app.get('/control/stats', (c) => c.json(state.snapshot()));
  app.post('/control/stats/reset', (c) => {
    state.resetStats();
    return c.json(state.snapshot());
  });
  app.get('/control/requests', (c) => c.json(Object.fromEntries(state.requestCounts)));

  app.notFound((c) => notFound(c));
  app.onError((err, c) => errorResponse(c, new RequestError(500, err.message, null, 'InternalServerError')));
  return app;
}

/** Status, headers and half the body, then nothing more (stall) or a dropped connection (truncate). */
function brokenAnswer(
  c: Context<Env>,
  state: SimulatorState,
  answer: string,
  how: 'stall' | 'truncate',
  signal: AbortSignal,
): Response {
  state.countFault(how);
  const half = answer.slice(0, Math.floor(answer.length / 2));
  const socket = c.env.incoming.socket;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(half));
      if (how === 'truncate') setTimeout(() => socket.destroy(), 20);
      else
        signal.addEventListener(
          'abort',
          () => {
            controller.close();
          },
          { once: true },
        );
    },
  });
  return c.body(body, 200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(answer)) });
}

/**
 * Server-sent events as vLLM streams them: (chat) a first chunk with the role, a chunk per token (the
 * last one of a sequence carries its finish_reason), with include_usage a last chunk of usage with no
 * choices, then [DONE].
 */
function streamCompletion(
  c: Context<Env>,
  state: SimulatorState,
  kind: 'chat' | 'completions',
  p: Prepared,
  extraLatencyMs: number,
  signal: AbortSignal,
): Response {
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const created = now();
  const includeUsage = isRecord(p.body.stream_options) && p.body.stream_options.include_usage === true;
  const details = state.options.enablePromptTokensDetails === true;
  const response = streamSSE(c, async (stream) => {
    const texts = p.sequences.map((s) => generateText(s.seed, s.tokens).split(' '));
    const chunk = (choices: Json[], extra: Json = {}): string =>
      JSON.stringify({ id: p.id, object, created, model: p.model, choices, ...extra });
    // Tokens come from the engine's steps; this loop writes them out as they come.
    const pending: { sequence: number; token: number }[] = [];
    const run: { ended: boolean; failure: Error | null; wake: (() => void) | undefined } = {
      ended: false,
      failure: null,
      wake: undefined,
    };
    void state
      .execute(p, extraLatencyMs, signal, (sequence, request) => {
        pending.push({ sequence, token: request.numOutput - 1 });
        run.wake?.();
      })
      .then(
        () => {
          run.ended = true;
          run.wake?.();
        },
        (err: unknown) => {
          run.failure = err instanceof Error ? err : new Error(String(err));
          run.ended = true;
          run.wake?.();
        },
      );
    try {
      let started = false;
      for (;;) {
        while (pending.length === 0 && !run.ended)
          await new Promise<void>((resolve) => {
            run.wake = resolve;
          });
        run.wake = undefined;
        if (run.failure !== null) throw run.failure;
        if (kind === 'chat' && !started) {
          await stream.writeSSE({
            data: chunk(
              p.sequences.map((_, index) => ({
                index,
                delta: { role: 'assistant', content: '' },
                logprobs: null,
                finish_reason: null,
              })),
              { prompt_token_ids: null, prompt_text: null },
            ),
          });
        }
        started = true;
        for (const { sequence: index, token } of pending.splice(0)) {
          const s = p.sequences[index];
          const word = texts[index]?.[token];
          if (s === undefined || word === undefined) continue;
          const text = token === 0 ? word : ` ${word}`;
          const last = token === s.tokens - 1;
          const end = last ? { finish_reason: s.finish, stop_reason: null } : { finish_reason: null };
          const choice =
            kind === 'chat'
              ? { index, delta: { content: text }, logprobs: null, ...end, token_ids: null }
              : { index, text, logprobs: null, ...end, stop_reason: null, prompt_token_ids: null, token_ids: null };
          await stream.writeSSE({ data: chunk([choice]) });
        }
        if (run.ended && pending.length === 0) break;
      }
      if (includeUsage) {
        // Stream chunks leave out unset fields (vLLM serialises them with exclude_unset).
        const { prompt_tokens_details, completion_tokens_details: _, ...usage } = usageOf(p, details);
        const streamed =
          prompt_tokens_details === null
            ? usage
            : {
                ...usage,
                prompt_tokens_details:
                  kind === 'chat'
                    ? {
                        cached_tokens: prompt_tokens_details.cached_tokens,
                        created_cache_tokens: prompt_tokens_details.created_cache_tokens,
                      }
                    : { cached_tokens: prompt_tokens_details.cached_tokens },
              };
        await stream.writeSSE({ data: chunk([], { usage: streamed, system_fingerprint: state.fingerprint }) });
      }
      await stream.writeSSE({ data: '[DONE]' });
    } catch (err) {
      if (err instanceof AbortedError) state.countAborted();
      else throw err;
    }
  });
  response.headers.set('content-type', 'text/event-stream; charset=utf-8');
  response.headers.delete('cache-control');
  return response;
}

export interface RunningSimulator {
  url: string;
  port: number;
  state: SimulatorState;
  close(): Promise<void>;
}

export async function startSimulator(
  options: SimulatorOptions,
  listen: { host: string; port: number },
): Promise<RunningSimulator> {
  const state = new SimulatorState(options);
  const app = createSimulatorApp(state);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: listen.host, port: listen.port }, () => {
      resolve(s);
    });
    s.once('error', reject);
  });
  if ('requestTimeout' in server) {
    // Never let Node's timeouts cut a long generation; but close an idle keep-alive connection after
    // 5 s, as vLLM's uvicorn does (a client must not reuse a connection idle for longer).
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 5000;
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
        server.close(() => {
          state.close();
          resolve();
        });
      }),
  };
}
