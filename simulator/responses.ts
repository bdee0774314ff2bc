// What the simulator answers, in vLLM's shapes: the JSON bodies of chat, completions, embeddings and
// responses (with vLLM's usage), server-sent events for a streamed request, error bodies and their
// types, and the half-written answers of the stall and truncate faults.
import { STATUS_CODES } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';

import { AbortedError } from '../lib/abortable.js';
import { isRecord } from '../lib/json.js';
import { hexId, type Prepared } from './requests.js';
import type { SimulatorState } from './state.js';
import { embeddingVector, generateText, seedOf } from './text.js';
import type { Json, RequestError } from './validation.js';

/** The Hono environment of the simulator's app: Node's request and socket, for faults and keep-alive. */
export type SimulatorEnv = { Bindings: HttpBindings };

/** Seconds since the epoch, as vLLM's `created`. */
export const now = (): number => Math.floor(Date.now() / 1000);

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

/** The JSON answer to a request that ran, in vLLM's shape for its endpoint. */
export function responseBody(p: Prepared, state: SimulatorState): Json {
  const created = now();
  const details = state.options.enablePromptTokensDetails === true;
  // What chat and completions answers share, before their choices and after them.
  const head = (object: string): Json => ({ id: p.id, object, created, model: p.model });
  const served = { service_tier: null, system_fingerprint: state.fingerprint, usage: usageOf(p, details) };
  const transfer = { kv_transfer_params: null, ec_transfer_params: null, metrics: null };
  switch (p.kind) {
    case 'chat':
      return {
        ...head('chat.completion'),
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
        ...served,
        prompt_logprobs: null,
        prompt_token_ids: null,
        prompt_text: null,
        ...transfer,
      };
    case 'completions':
      return {
        ...head('text_completion'),
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
        ...served,
        ...transfer,
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

export const JSON_TYPE = { 'content-type': 'application/json' };

export function errorResponse(c: Context<SimulatorEnv>, err: RequestError, retryAfter?: number): Response {
  const headers: Record<string, string> = { ...JSON_TYPE };
  if (retryAfter !== undefined && (err.status === 429 || err.status === 503))
    headers['retry-after'] = String(retryAfter);
  const body = { error: { message: err.message, type: err.type, param: err.param, code: err.status } };
  return c.body(JSON.stringify(body), err.status as 400, headers);
}

/** The error type vLLM gives a status: its own exception names, else the HTTP phrase (as for its 503s). */
export function errorTypeOf(status: number): string {
  const own: Record<number, string> = {
    400: 'BadRequestError',
    404: 'NotFoundError',
    422: 'UnprocessableEntityError',
    500: 'InternalServerError',
    501: 'NotImplementedError',
  };
  return own[status] ?? STATUS_CODES[status] ?? 'Error';
}

export const notFound = (c: Context<SimulatorEnv>): Response => c.body('{"detail":"Not Found"}', 404, JSON_TYPE);
export const unauthorized = (c: Context<SimulatorEnv>): Response => c.body('{"error":"Unauthorized"}', 401, JSON_TYPE);

/** Status, headers and half the body, then nothing more (stall) or a dropped connection (truncate). */
export function brokenAnswer(
  c: Context<SimulatorEnv>,
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
export function streamCompletion(
  c: Context<SimulatorEnv>,
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
