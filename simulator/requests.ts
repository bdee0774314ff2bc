// What vLLM does with a request before it reaches the engine: the body checked (validation.ts), the
// model resolved, the prompt rendered as tokens (Llama 3's chat template), max_tokens fitted to the
// context, and the sequences it will generate laid out (n per prompt, each with its own length).
import { randomBytes } from 'node:crypto';

import { isRecord } from '../lib/json.js';
import type { ModelKind, SimulatorOptions } from './options.js';
import { seedOf, tokenize } from './text.js';
import {
  checkOutputLimit,
  checkPromptLength,
  parameterError,
  RequestError,
  validateFields,
  verifySampling,
  type Endpoint,
  type Json,
} from './validation.js';

/** What preparing a request needs to know of the server: its served names and limits. */
export interface Served {
  readonly options: Pick<SimulatorOptions, 'models' | 'maxModelLen' | 'outputTokens'>;
  readonly defaultModel: string;
  /** The served names of one kind (what a vLLM serving that kind would list). */
  modelsOf(kind: ModelKind): string[];
}

/** A route that is not mounted for the request's model: FastAPI's 404 {"detail":"Not Found"}. */
export class NotMounted extends Error {}

/** vLLM's random_uuid(): 16 hex characters. */
export const hexId = (): string => randomBytes(8).toString('hex');

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

export const BOS = '<|begin_of_text|>';

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

export interface Sequence {
  seed: number;
  /** Output tokens it will have. */
  tokens: number;
  finish: 'stop' | 'length';
  /** Which prompt it samples from. */
  prompt: number;
  /** Its max_tokens once the context is accounted for (vLLM's get_max_tokens). */
  maxTokens: number;
}

/** A request as vLLM has it once checked: its prompts as tokens, and the sequences it will generate. */
export interface Prepared {
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

function naturalLength(outputTokens: SimulatorOptions['outputTokens'], seed: number): number {
  const { min, max } = outputTokens;
  return min + (seed % (max - min + 1));
}

/**
 * A prompt field (completions' prompt, embeddings' input) as a list of prompts: a string or a list of
 * token ids is one prompt, any other list holds one per member; undefined when it is not a list at all.
 */
function promptsOf(value: unknown): unknown[] | undefined {
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value)) return undefined;
  const list: unknown[] = value;
  return list.length > 0 && list.every((p) => typeof p === 'number') ? [list] : list;
}

/**
 * The request's model, as vLLM's _check_model: none (or "") means the served one; an unknown name
 * is a 404 naming the valid ones. A served model of the other kind has no such route (404 detail).
 */
function resolveModel(served: Served, body: Json, kind: ModelKind): string {
  const model = body.model;
  const names = served.modelsOf(kind);
  if (model === undefined || model === null || model === '') return names[0] ?? served.defaultModel;
  // validateFields made it a string.
  const name = typeof model === 'string' ? model : JSON.stringify(model);
  if (names.includes(name)) return name;
  if (served.options.models.includes(name)) throw new NotMounted();
  throw new RequestError(404, `The model \`${name}\` does not exist. Valid aliases: ${names.join(', ')}.`, 'model');
}

/**
 * n sequences for each prompt (in vLLM each is a request of its own; they share the prompt's blocks),
 * each stopping at its own max_tokens (already within the context), or earlier at its natural end
 * (never with ignore_eos).
 */
function sequencesFor(
  outputTokens: SimulatorOptions['outputTokens'],
  seedBase: string,
  maxTokens: number[],
  n: number,
  ignoreEos: boolean,
): Sequence[] {
  const sequences: Sequence[] = [];
  for (let i = 0; i < maxTokens.length * n; i++) {
    const prompt = Math.floor(i / n);
    const seed = seedOf(`${seedBase}#${i}`);
    const natural = ignoreEos ? Number.POSITIVE_INFINITY : naturalLength(outputTokens, seed);
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
export function prepareRequest(served: Served, kind: Endpoint, raw: Json, requestIdHeader?: string): Prepared {
  const limit = served.options.maxModelLen;
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
  const model = resolveModel(served, body, kind === 'embeddings' ? 'embed' : 'generate');
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
        sequences: sequencesFor(served.options.outputTokens, seedBase, [maxTokens], n, ignoreEos),
      };
    }
    case 'completions': {
      const prompts = promptsOf(body.prompt);
      if (prompts === undefined)
        throw parameterError('Either prompt or prompt_embeds must be provided and non-empty.', 'prompt');
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
        sequences: sequencesFor(served.options.outputTokens, seedBase, maxTokens, n, ignoreEos),
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
        sequences: sequencesFor(served.options.outputTokens, seedBase, [maxTokens], 1, ignoreEos),
      };
    }
    case 'embeddings': {
      const inputs = promptsOf(body.input);
      if (inputs === undefined || inputs.length === 0) throw new RequestError(400, 'You must pass at least one prompt');
      const tokens = inputs.map((p) => {
        const t = typeof p === 'string' ? tokenize(p) : Array.isArray(p) ? p.map((id) => `#${String(id)}`) : undefined;
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
