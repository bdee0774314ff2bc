// The simulator against real vLLM: the same requests to both, compared on what the system depends
// on (status, error shape and wording, usage, headers, routes, auth, keep-alive, metrics), never
// on generated text (the real model has random weights). Each deliberate difference (listed in
// simulator/README.md) is asserted here as a difference, so that it cannot grow unnoticed.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { VLLM_VERSION, type SimulatorOptions } from '../../simulator/options.js';
import { startSimulator, type RunningSimulator } from '../../simulator/server.js';
import { REAL_VLLM_DEFAULTS, startRealVllm, type RealVllm, type StartedVllm } from './global-setup.js';

// This file belongs to the real-vLLM tier (vitest.vllm.config.ts, whose global setup starts vLLM);
// under a configuration that starts none it has nothing to compare with and is skipped.
const provided = inject('vllm') as RealVllm | undefined;
const suite = provided === undefined ? describe.skip : describe;
const real: RealVllm = provided ?? {
  url: '',
  model: 'tiny',
  ...REAL_VLLM_DEFAULTS,
  extraArgs: [],
  python: '',
  modelDir: '',
};
const KEY = 'sk-conformance-key';

/** The simulator configured as the shared real server runs (dev/vllm-local.ts), with vLLM's CPU block size. */
const MIRROR: SimulatorOptions = {
  models: [real.model],
  maxModelLen: real.maxModelLen,
  maxNumSeqs: real.maxNumSeqs,
  enablePromptTokensDetails: true,
  // vLLM's CPU build: KV blocks of 128 tokens, 16,384 of them (1 GiB for the tiny model).
  blockSize: 128,
  numGpuBlocks: 16_384,
  // Random weights never emit EOS: answers run to max_tokens or to the end of the context.
  outputTokens: { min: real.maxModelLen, max: real.maxModelLen },
  embeddingDim: 16,
  stepBaseMs: 0,
  stepTokenMs: 0,
};

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers = { 'content-type': 'application/json', ...headers };
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** One request to each; sequential per server, so each sees the same history (its prefix cache). */
async function both(
  targets: { real: string; sim: string },
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<{ real: Answer; sim: Answer }> {
  const [r, s] = await Promise.all([
    call(targets.real, method, path, body, headers),
    call(targets.sim, method, path, body, headers),
  ]);
  return { real: r, sim: s };
}

/** The structure of a JSON value: keys and value types, all the way down (array elements each). */
function shape(value: unknown): unknown {
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.map(shape);
  if (typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, shape(v)]),
    );
  return typeof value;
}

/** Header names, less those every server sets its own way (date, length) and the deliberate ones (README). */
const CONNECTION_LEVEL = new Set(['date', 'content-length', 'server', 'connection', 'keep-alive', 'transfer-encoding']);
function headerNames(h: Headers): string[] {
  return [...h.keys()].filter((k) => !CONNECTION_LEVEL.has(k)).sort();
}

const words = (k: number): string => Array.from({ length: k }, () => 'the').join(' ');
// A run-unique cache salt keeps the prefix-cache figures of this file apart from anything else the shared server saw.
const SALT = `conformance-${process.pid}-${Date.now()}`;

suite('conformance with real vLLM', () => {
  let sim: RunningSimulator;
  let simAuth: RunningSimulator;
  let realAuth: Promise<StartedVllm>;
  let targets: { real: string; sim: string };

  beforeAll(async () => {
    // The second real server (--api-key, no --enable-prompt-tokens-details, --enable-request-id-headers)
    // starts now and comes up while the first tests run: it costs a minute or two of CPU, once.
    realAuth = startRealVllm({
      apiKey: KEY,
      extraArgs: ['--no-enable-prompt-tokens-details', '--enable-request-id-headers'],
    });
    realAuth.catch(() => undefined);
    sim = await startSimulator(MIRROR, { host: '127.0.0.1', port: 0 });
    simAuth = await startSimulator(
      { ...MIRROR, apiKey: KEY, enablePromptTokensDetails: false, enableRequestIdHeaders: true },
      { host: '127.0.0.1', port: 0 },
    );
    targets = { real: real.url, sim: sim.url };
  });

  afterAll(async () => {
    await Promise.all([
      sim.close(),
      simAuth.close(),
      realAuth.then(
        (v) => v.stop(),
        () => undefined,
      ),
    ]);
  });

  describe('routes and discovery', () => {
    it('lists the model with the same fields', async () => {
      const { real: r, sim: s } = await both(targets, 'GET', '/v1/models');
      expect([r.status, s.status]).toEqual([200, 200]);
      expect(shape(s.json)).toEqual(shape(r.json));
      const summary = (a: Answer): unknown[] =>
        (a.json.data as Record<string, unknown>[]).map((m) => [m.id, m.object, m.owned_by, m.max_model_len]);
      expect(summary(s)).toEqual(summary(r));
      expect(s.json.data[0].permission[0].id).toMatch(/^modelperm-[0-9a-f]{16}$/);
      expect(r.json.data[0].permission[0].id).toMatch(/^modelperm-[0-9a-f]{16}$/);
    });

    it('answers /health, /version, /ping, /load, unknown routes and wrong methods the same way', async () => {
      const cases: [string, string, unknown?][] = [
        ['GET', '/health'],
        ['HEAD', '/health'],
        ['POST', '/health'],
        ['GET', '/version'],
        ['GET', '/ping'],
        ['POST', '/ping'],
        ['GET', '/load'],
        ['GET', '/v1/nope'],
        ['POST', '/v1/nope', {}],
        ['GET', '/nope'],
        ['GET', '/v1/chat/completions'],
        ['GET', '/v1/completions'],
        ['GET', '/v1/models/tiny'],
        ['OPTIONS', '/v1/models'],
        // A generative model serves no embeddings: the route is not mounted at all.
        ['POST', '/v1/embeddings', { model: real.model, input: 'the' }],
        ['POST', '/v1/embeddings', '{not json'],
      ];
      for (const [method, path, body] of cases) {
        const { real: r, sim: s } = await both(targets, method, path, body);
        const what = `${method} ${path}`;
        expect({
          what,
          status: s.status,
          body: s.text,
          type: s.headers.get('content-type'),
          allow: s.headers.get('allow'),
        }).toEqual({
          what,
          status: r.status,
          body: r.text,
          type: r.headers.get('content-type'),
          allow: r.headers.get('allow'),
        });
      }
      expect((await call(real.url, 'GET', '/version')).json).toEqual({ version: VLLM_VERSION });
    });

    it('does not serve the routes the project does not use (deliberate, see simulator/README.md)', async () => {
      const { real: r, sim: s } = await both(targets, 'POST', '/tokenize', { model: real.model, prompt: 'the the' });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({ count: 3, max_model_len: real.maxModelLen });
      expect(s.status).toBe(404);
      expect(s.json).toEqual({ detail: 'Not Found' });
    });
  });

  describe('answers', () => {
    it('answers a chat, a completion and a response with the same shape, usage and headers', async () => {
      const requests: [string, Record<string, unknown>, RegExp][] = [
        [
          '/v1/chat/completions',
          {
            model: real.model,
            messages: [{ role: 'user', content: 'the the' }],
            max_tokens: 3,
            ignore_eos: true,
            cache_salt: SALT,
          },
          /^chatcmpl-[0-9a-f]{16}$/,
        ],
        [
          '/v1/completions',
          { model: real.model, prompt: 'the the', max_tokens: 3, ignore_eos: true, cache_salt: SALT },
          /^cmpl-[0-9a-f]{16}$/,
        ],
        [
          '/v1/responses',
          { model: real.model, input: 'the the', max_output_tokens: 3, ignore_eos: true, cache_salt: SALT },
          /^resp_[0-9a-f]{16}$/,
        ],
      ];
      for (const [path, body, id] of requests) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        expect([r.status, s.status]).toEqual([200, 200]);
        expect(shape(s.json)).toEqual(shape(r.json));
        expect(s.json.usage).toEqual(r.json.usage);
        expect(r.json.id).toMatch(id);
        expect(s.json.id).toMatch(id);
        if ('system_fingerprint' in r.json) {
          expect(r.json.system_fingerprint).toMatch(/^vllm-0\.32\.0-[0-9a-f]{8}$/);
          expect(s.json.system_fingerprint).toMatch(/^vllm-0\.32\.0-[0-9a-f]{8}$/);
        }
        if (path === '/v1/responses') {
          for (const a of [r, s])
            expect([a.json.status, a.json.incomplete_details, a.json.max_output_tokens]).toEqual([
              'incomplete',
              { reason: 'max_output_tokens' },
              3,
            ]);
        } else {
          const reasons = (a: Answer): unknown[] =>
            (a.json.choices as Record<string, unknown>[]).map((c) => c.finish_reason);
          expect(reasons(s)).toEqual(reasons(r));
        }
        // Headers: the same set, no X-Request-Id by default.
        expect(headerNames(s.headers)).toEqual(headerNames(r.headers));
        expect(r.headers.get('x-request-id')).toBeNull();
        expect(s.headers.get('x-request-id')).toBeNull();
        expect(s.headers.get('content-type')).toBe(r.headers.get('content-type'));
      }
    });

    it('differs at the connection level only as listed: no "server: uvicorn", Node\'s "connection: keep-alive"', async () => {
      const { real: r, sim: s } = await both(targets, 'GET', '/v1/models');
      expect([r.headers.get('server'), r.headers.get('connection'), r.headers.get('keep-alive')]).toEqual([
        'uvicorn',
        null,
        null,
      ]);
      // Neither announces its idle timeout: a client learns it only by being closed on.
      expect([s.headers.get('server'), s.headers.get('connection'), s.headers.get('keep-alive')]).toEqual([
        null,
        'keep-alive',
        null,
      ]);
      const head = await both(targets, 'HEAD', '/health');
      expect([head.real.status, head.real.headers.get('content-length')]).toEqual([405, '31']);
      expect([head.sim.status, head.sim.headers.get('content-length')]).toEqual([405, null]);
    });

    it('answers a streamed response whole, as JSON (deliberate: Responses API events are not modelled)', async () => {
      const body = { model: real.model, input: 'the', max_output_tokens: 2, stream: true };
      const { real: r, sim: s } = await both(targets, 'POST', '/v1/responses', body);
      expect([r.status, r.headers.get('content-type')]).toEqual([200, 'text/event-stream; charset=utf-8']);
      expect([s.status, s.headers.get('content-type'), s.json.object]).toEqual([200, 'application/json', 'response']);
    });

    it('counts tokens as a 4-character tokenizer does, not as Llama 3\'s (deliberate; equal for text like "the the")', async () => {
      const { real: r, sim: s } = await both(targets, 'POST', '/v1/completions', {
        model: real.model,
        prompt: 'Hello world',
        max_tokens: 1,
      });
      expect([r.json.usage.prompt_tokens, s.json.usage.prompt_tokens]).toEqual([3, 4]);
    });

    it('takes a client X-Request-Id as the id without echoing it', async () => {
      for (const [path, body, prefix] of [
        [
          '/v1/chat/completions',
          { model: real.model, messages: [{ role: 'user', content: 'the' }], max_tokens: 1 },
          'chatcmpl-',
        ],
        ['/v1/completions', { model: real.model, prompt: 'the', max_tokens: 1 }, 'cmpl-'],
      ] as const) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body, { 'x-request-id': 'my-id-123' });
        expect([r.json.id, s.json.id]).toEqual([`${prefix}my-id-123`, `${prefix}my-id-123`]);
        expect([r.headers.get('x-request-id'), s.headers.get('x-request-id')]).toEqual([null, null]);
      }
    });

    it('answers n=2 with two choices, counting the prompt once', async () => {
      for (const [path, body] of [
        [
          '/v1/chat/completions',
          { model: real.model, messages: [{ role: 'user', content: 'the' }], max_tokens: 3, n: 2, ignore_eos: true },
        ],
        ['/v1/completions', { model: real.model, prompt: 'the', max_tokens: 3, n: 2, ignore_eos: true }],
      ] as const) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        expect([r.status, s.status]).toEqual([200, 200]);
        expect(shape(s.json)).toEqual(shape(r.json));
        expect((s.json.choices as Record<string, unknown>[]).map((c) => c.index)).toEqual([0, 1]);
        expect(s.json.usage).toEqual(r.json.usage);
      }
    });

    it('accepts what vLLM accepts: no model, an unknown role, an unknown field, a priority', async () => {
      const chat = (extra: Record<string, unknown>): Record<string, unknown> => ({
        model: real.model,
        messages: [{ role: 'user', content: 'the' }],
        max_tokens: 1,
        ...extra,
      });
      for (const body of [
        { messages: [{ role: 'user', content: 'the' }], max_tokens: 1 },
        chat({ messages: [{ role: 'wizard', content: 'the' }] }),
        chat({ frobnicate: true }),
        chat({ priority: 1 }),
        chat({ model: null, max_tokens: true }),
      ]) {
        const { real: r, sim: s } = await both(targets, 'POST', '/v1/chat/completions', body);
        expect({ body, status: s.status, model: s.json.model }).toEqual({
          body,
          status: r.status,
          model: r.json.model,
        });
        expect(r.status).toBe(200);
      }
    });

    it('streams chat as vLLM does: the same events, chunk keys and usage', async () => {
      const body = {
        model: real.model,
        messages: [{ role: 'user', content: 'the the' }],
        max_tokens: 3,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
        cache_salt: SALT,
      };
      const { real: r, sim: s } = await both(targets, 'POST', '/v1/chat/completions', body);
      const events = (a: Answer): string[] =>
        a.text
          .split('\n\n')
          .filter((e) => e !== '')
          .map((e) => e.replace(/^data: /, ''));
      expect(s.headers.get('content-type')).toBe(r.headers.get('content-type'));
      expect(headerNames(s.headers)).toEqual(headerNames(r.headers));
      const [re, se] = [events(r), events(s)];
      expect(se.at(-1)).toBe('[DONE]');
      expect(re.at(-1)).toBe('[DONE]');
      const chunks = (e: string[]): any[] => e.slice(0, -1).map((x) => JSON.parse(x) as unknown);
      const [rc, sc] = [chunks(re), chunks(se)];
      // First (role) chunk, a token chunk, the last token's chunk (finish_reason), the usage chunk.
      expect(shape(sc[0])).toEqual(shape(rc[0]));
      expect(Object.keys(sc[1]).sort()).toEqual(Object.keys(rc[1]).sort());
      expect(Object.keys(sc[1].choices[0]).sort()).toEqual(Object.keys(rc[1].choices[0]).sort());
      const lastToken = (c: any[]): any => c.filter((x) => x.choices.length > 0).at(-1).choices[0];
      expect([lastToken(sc).finish_reason, Object.keys(lastToken(sc)).sort()]).toEqual([
        lastToken(rc).finish_reason,
        Object.keys(lastToken(rc)).sort(),
      ]);
      expect(shape(sc.at(-1))).toEqual(shape(rc.at(-1)));
      expect(sc.at(-1).usage).toEqual(rc.at(-1).usage);
    });
  });

  describe('the context length', () => {
    const limit = real.maxModelLen;
    const chat = (k: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      model: real.model,
      messages: [{ role: 'user', content: words(k) }],
      ignore_eos: true,
      cache_salt: `${SALT}-ctx`,
      ...extra,
    });

    it('cuts prompt + max_tokens over the limit to the room left: 200, finish_reason length', async () => {
      const cases: [string, Record<string, unknown>, number][] = [
        // A chat message of k words is k + 10 tokens; a completion prompt k + 1; a response input k + 11.
        ['/v1/chat/completions', chat(1990, { max_tokens: 100 }), 2000],
        [
          '/v1/completions',
          { model: real.model, prompt: words(2000), max_tokens: 100, ignore_eos: true, cache_salt: `${SALT}-ctx` },
          2001,
        ],
        [
          '/v1/responses',
          {
            model: real.model,
            input: words(1989),
            max_output_tokens: 100,
            ignore_eos: true,
            cache_salt: `${SALT}-ctx`,
          },
          2000,
        ],
        // No max_tokens: the room left.
        ['/v1/chat/completions', chat(2000), 2010],
        ['/v1/chat/completions', chat(2037), 2047],
      ];
      for (const [path, body, prompt] of cases) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        expect([r.status, s.status]).toEqual([200, 200]);
        expect(shape(s.json)).toEqual(shape(r.json));
        expect(s.json.usage).toEqual(r.json.usage);
        if (path === '/v1/responses') {
          expect(r.json.usage).toMatchObject({
            input_tokens: prompt,
            output_tokens: limit - prompt,
            total_tokens: limit,
          });
          for (const a of [r, s])
            expect([a.json.status, a.json.incomplete_details, a.json.max_output_tokens]).toEqual([
              'incomplete',
              { reason: 'max_output_tokens' },
              limit - prompt,
            ]);
        } else {
          expect(r.json.usage).toMatchObject({
            prompt_tokens: prompt,
            completion_tokens: limit - prompt,
            total_tokens: limit,
          });
          expect([r.json.choices[0].finish_reason, s.json.choices[0].finish_reason]).toEqual(['length', 'length']);
        }
      }
    });

    it("refuses max_tokens alone over the limit, the prompt alone over it, and a prompt that fills it, with vLLM's words", async () => {
      const cases: [string, Record<string, unknown>][] = [
        ['/v1/chat/completions', chat(1, { max_tokens: 5000 })],
        ['/v1/chat/completions', chat(1, { max_completion_tokens: 5000 })],
        ['/v1/completions', { model: real.model, prompt: 'the', max_tokens: 5000 }],
        ['/v1/responses', { model: real.model, input: 'the', max_output_tokens: 5000 }],
        // Checked before the prompt is looked at.
        ['/v1/chat/completions', chat(2100, { max_tokens: 5000 })],
        ['/v1/chat/completions', chat(2100, { max_tokens: 10 })],
        ['/v1/chat/completions', chat(2100)],
        ['/v1/completions', { model: real.model, prompt: words(2100), max_tokens: 10 }],
        // Token ids are counted as they are (no "at least").
        ['/v1/completions', { model: real.model, prompt: Array.from({ length: 2100 }, () => 1820), max_tokens: 10 }],
        ['/v1/responses', { model: real.model, input: words(2100) }],
        // Exactly the limit: no room for one output token.
        ['/v1/chat/completions', chat(limit - 10, { max_tokens: 10 })],
        ['/v1/chat/completions', chat(limit - 10)],
      ];
      for (const [path, body] of cases) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        const what = `${path} ${JSON.stringify(body).slice(0, 80)}`;
        expect({ what, status: s.status, body: s.json }).toEqual({ what, status: r.status, body: r.json });
        expect(r.status).toBe(400);
      }
    });
  });

  describe('validation errors', () => {
    it('words request errors as vLLM does: type, param, code and message', async () => {
      const chat = (extra: Record<string, unknown>): Record<string, unknown> => ({
        model: real.model,
        messages: [{ role: 'user', content: 'the' }],
        max_tokens: 2,
        ...extra,
      });
      const cases: [string, unknown][] = [
        ['/v1/chat/completions', { model: real.model, max_tokens: 2 }],
        ['/v1/chat/completions', chat({ messages: [] })],
        ['/v1/chat/completions', chat({ messages: 'the' })],
        ['/v1/chat/completions', chat({ messages: [{ content: 'the' }] })],
        ['/v1/chat/completions', chat({ messages: ['the'] })],
        ['/v1/chat/completions', chat({ temperature: 'hot' })],
        ['/v1/chat/completions', chat({ temperature: -1 })],
        ['/v1/chat/completions', chat({ temperature: 3 })],
        ['/v1/chat/completions', chat({ top_p: 0 })],
        ['/v1/chat/completions', chat({ max_tokens: 0 })],
        ['/v1/chat/completions', chat({ max_tokens: -1 })],
        ['/v1/chat/completions', chat({ max_tokens: 'x' })],
        ['/v1/chat/completions', chat({ max_tokens: 2.5 })],
        ['/v1/chat/completions', chat({ n: 0 })],
        ['/v1/chat/completions', chat({ n: 2, temperature: 0 })],
        ['/v1/chat/completions', chat({ model: 123 })],
        ['/v1/chat/completions', chat({ priority: null, ignore_eos: 'maybe', stream: 3 })],
        ['/v1/chat/completions', chat({ temperature: 'x', top_p: 'y', max_tokens: 'z' })],
        ['/v1/chat/completions', chat({ model: 'nope' })],
        ['/v1/chat/completions', { model: 'nope', max_tokens: 5000 }],
        ['/v1/chat/completions', '{"model":'],
        ['/v1/chat/completions', '{nope'],
        ['/v1/chat/completions', '[1,2]'],
        ['/v1/completions', { model: real.model, max_tokens: 2 }],
        ['/v1/completions', { model: real.model, prompt: '', max_tokens: 2 }],
        ['/v1/completions', { model: real.model, prompt: [], max_tokens: 2 }],
        ['/v1/completions', { model: 'nope', prompt: 'the', max_tokens: 2 }],
        ['/v1/completions', { model: real.model, prompt: 'the', max_tokens: 2, temperature: -1 }],
        ['/v1/responses', { model: real.model, max_output_tokens: 2 }],
        ['/v1/responses', { model: real.model, input: [], max_output_tokens: 2 }],
        ['/v1/responses', { model: real.model, input: 'the', max_output_tokens: 2, top_p: 7 }],
      ];
      for (const [path, body] of cases) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        const what = `${path} ${typeof body === 'string' ? body : JSON.stringify(body)}`;
        expect({ what, status: s.status, body: s.json }).toEqual({ what, status: r.status, body: r.json });
        expect(r.status).toBeGreaterThanOrEqual(400);
      }
    });

    it("words a message of the wrong content type with the same param, listing fewer of pydantic's union errors (deliberate)", async () => {
      const body = { model: real.model, messages: [{ role: 'user', content: 5 }], max_tokens: 2 };
      const { real: r, sim: s } = await both(targets, 'POST', '/v1/chat/completions', body);
      expect([s.status, s.json.error.type, s.json.error.param]).toEqual([
        r.status,
        r.json.error.type,
        r.json.error.param,
      ]);
      expect(r.json.error.message).toMatch(/^22 validation errors:/);
      expect(s.json.error.message).toMatch(/^1 validation error:/);
    });
  });

  describe('usage and the prefix cache', () => {
    it('reports cached and created cache tokens alike (blocks of 128 tokens on the CPU)', async () => {
      const salt = `${SALT}-cache`;
      const chat = {
        model: real.model,
        messages: [{ role: 'user', content: words(1990) }],
        max_tokens: 1,
        cache_salt: salt,
      };
      const completion = { model: real.model, prompt: words(2000), max_tokens: 1, cache_salt: salt };
      const response = { model: real.model, input: words(1989), max_output_tokens: 1, cache_salt: salt };
      const seen: unknown[] = [];
      for (const [path, body] of [
        ['/v1/chat/completions', chat],
        ['/v1/chat/completions', chat],
        ['/v1/completions', completion],
        ['/v1/completions', completion],
        ['/v1/responses', response],
        ['/v1/responses', response],
      ] as const) {
        const { real: r, sim: s } = await both(targets, 'POST', path, body);
        expect({ path, usage: s.json.usage }).toEqual({ path, usage: r.json.usage });
        seen.push(r.json.usage);
      }
      // The first chat wrote 15 full blocks; the same prompt again found them.
      expect(seen[0]).toMatchObject({
        prompt_tokens: 2000,
        prompt_tokens_details: { cached_tokens: 0, created_cache_tokens: 1920 },
      });
      expect(seen[1]).toMatchObject({ prompt_tokens_details: { cached_tokens: 1920, created_cache_tokens: 0 } });
      expect(seen[3]).toMatchObject({ prompt_tokens_details: { cached_tokens: 1920, created_cache_tokens: null } });
    });
  });

  describe('keep-alive', () => {
    /** Seconds from the end of a response to the server closing the idle connection (null: still open after `waitMs`). */
    function idleClose(base: string, request: string | null, waitMs: number): Promise<number | null> {
      const { hostname, port } = new URL(base);
      return new Promise((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        let answeredAt = request === null ? performance.now() : 0;
        let buffer = '';
        const timer = setTimeout(() => {
          socket.destroy();
          resolve(null);
        }, waitMs);
        socket.on('connect', () => {
          if (request !== null) socket.write(request);
        });
        socket.on('data', (d) => {
          buffer += d.toString();
          if (answeredAt === 0 && /\r\n\r\n/.test(buffer)) answeredAt = performance.now();
        });
        socket.on('close', () => {
          clearTimeout(timer);
          resolve(answeredAt === 0 ? null : (performance.now() - answeredAt) / 1000);
        });
        socket.on('error', reject);
      });
    }

    it('closes an idle keep-alive connection 5 s after the last response, and leaves a silent one open', async () => {
      const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`;
      const [realModels, simModels, realHealth, simHealth, realSilent, simSilent] = await Promise.all([
        idleClose(real.url, get('/v1/models'), 15_000),
        idleClose(sim.url, get('/v1/models'), 15_000),
        idleClose(real.url, get('/health'), 15_000),
        idleClose(sim.url, get('/health'), 15_000),
        idleClose(real.url, null, 9_000),
        idleClose(sim.url, null, 9_000),
      ]);
      for (const seconds of [realModels, simModels, realHealth, simHealth]) {
        expect(seconds).not.toBeNull();
        expect(seconds!).toBeGreaterThan(4.5);
        expect(seconds!).toBeLessThan(6.5);
      }
      expect([realSilent, simSilent]).toEqual([null, null]);
    });
  });

  describe('metrics', () => {
    interface Family {
      type: string;
      labels: string[];
      buckets: number[];
    }
    /** vllm: families from an exposition: type, label names, histogram bounds (Python's separate _created gauges left out). */
    function families(text: string): Map<string, Family> {
      const out = new Map<string, Family>();
      for (const line of text.split('\n')) {
        const m = /^# TYPE (vllm:\S+) (\S+)$/.exec(line);
        if (m?.[1] !== undefined && m[2] !== undefined && !m[1].endsWith('_created'))
          out.set(m[1], { type: m[2], labels: [], buckets: [] });
      }
      for (const line of text.split('\n')) {
        const m = /^(vllm:[^{\s]+)\{([^}]*)\}/.exec(line);
        if (m?.[1] === undefined) continue;
        const name = m[1].replace(/_(bucket|count|sum)$/, '');
        const family = out.get(m[1]) ?? out.get(name);
        if (family === undefined) continue;
        for (const [, label, value] of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) {
          if (label === 'le') {
            const bound = value === '+Inf' ? Number.POSITIVE_INFINITY : Number(value);
            if (!family.buckets.includes(bound)) family.buckets.push(bound);
          } else if (label !== undefined && !family.labels.includes(label)) family.labels.push(label);
        }
      }
      for (const f of out.values()) {
        f.labels.sort();
        f.buckets.sort((a, b) => a - b);
      }
      return out;
    }

    it("has vLLM's metric families, types, labels and buckets, present from start-up", async () => {
      // A fresh simulator: its metrics exist before any request, as vLLM's do.
      const fresh = await startSimulator(MIRROR, { host: '127.0.0.1', port: 0 });
      try {
        const [r, s] = await Promise.all([call(real.url, 'GET', '/metrics'), call(fresh.url, 'GET', '/metrics')]);
        expect([r.status, s.status]).toEqual([200, 200]);
        const [rf, sf] = [families(r.text), families(s.text)];
        // Deliberate: no model, so no FLOPs or memory-traffic estimates (simulator/README.md).
        const notModelled = [
          'vllm:estimated_flops_per_gpu_total',
          'vllm:estimated_read_bytes_per_gpu_total',
          'vllm:estimated_write_bytes_per_gpu_total',
        ];
        for (const name of notModelled) {
          expect(rf.has(name)).toBe(true);
          expect(sf.has(name)).toBe(false);
        }
        const expected = Object.fromEntries([...rf].filter(([name]) => !notModelled.includes(name)));
        expect(Object.fromEntries(sf)).toEqual(expected);
        // Every series names the engine and the model (admission rejections: the model and a reason;
        // the cache configuration: the engine).
        const series = s.text.split('\n').filter((l) => l.startsWith('vllm:'));
        expect(series.length).toBeGreaterThan(100);
        for (const line of series) {
          if (!line.startsWith('vllm:cache_config_info')) expect(line).toMatch(/model_name="tiny"/);
          if (!line.startsWith('vllm:admission_rejections')) expect(line).toMatch(/engine="0"/);
        }
        // Deliberate: prom-client's exposition, announced as the text format 0.0.4 (vLLM's Python client says 1.0.0).
        expect(r.headers.get('content-type')).toBe('text/plain; version=1.0.0; charset=utf-8');
        expect(s.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      } finally {
        await fresh.close();
      }
    });
  });

  describe('--api-key, --enable-request-id-headers, no --enable-prompt-tokens-details', () => {
    let auth: { real: string; sim: string };
    beforeAll(async () => {
      auth = { real: (await realAuth).info.url, sim: simAuth.url };
    });

    it('guards /v1/* with a Bearer key (401 {"error":"Unauthorized"}) and leaves the rest open', async () => {
      const chat = { model: real.model, messages: [{ role: 'user', content: 'the' }], max_tokens: 1 };
      const cases: [string, string, unknown, Record<string, string>][] = [
        ['POST', '/v1/chat/completions', chat, {}],
        ['POST', '/v1/chat/completions', chat, { authorization: 'Bearer wrong' }],
        ['POST', '/v1/chat/completions', chat, { 'x-api-key': KEY }],
        ['POST', '/v1/chat/completions', chat, { authorization: KEY }],
        ['GET', '/v1/models', undefined, {}],
        ['GET', '/v1/nope', undefined, {}],
        ['POST', '/v1/embeddings', { model: real.model, input: 'the' }, {}],
        ['POST', '/v1/embeddings', { model: real.model, input: 'the' }, { authorization: `Bearer ${KEY}` }],
        ['GET', '/nope', undefined, {}],
        ['GET', '/health', undefined, {}],
        ['GET', '/version', undefined, {}],
        ['OPTIONS', '/v1/models', undefined, {}],
      ];
      for (const [method, path, body, headers] of cases) {
        const { real: r, sim: s } = await both(auth, method, path, body, headers);
        const what = `${method} ${path} ${JSON.stringify(headers)}`;
        expect({ what, status: s.status, body: s.text, names: headerNames(s.headers) }).toEqual({
          what,
          status: r.status,
          body: r.text,
          names: headerNames(r.headers),
        });
      }
      const ok = await both(auth, 'POST', '/v1/chat/completions', chat, { authorization: `bearer ${KEY}` });
      expect([ok.real.status, ok.sim.status]).toEqual([200, 200]);
      const metrics = await both(auth, 'GET', '/metrics');
      expect([metrics.real.status, metrics.sim.status]).toEqual([200, 200]);
    });

    it("sends X-Request-Id on every answer with --enable-request-id-headers (the client's, or a new one)", async () => {
      const chat = { model: real.model, messages: [{ role: 'user', content: 'the' }], max_tokens: 1 };
      const given = await both(auth, 'POST', '/v1/chat/completions', chat, {
        authorization: `Bearer ${KEY}`,
        'x-request-id': 'mine-1',
      });
      expect([given.real.headers.get('x-request-id'), given.sim.headers.get('x-request-id')]).toEqual([
        'mine-1',
        'mine-1',
      ]);
      expect([given.real.json.id, given.sim.json.id]).toEqual(['chatcmpl-mine-1', 'chatcmpl-mine-1']);
      for (const path of ['/health', '/nope']) {
        const fresh = await both(auth, 'GET', path);
        expect(fresh.real.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
        expect(fresh.sim.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
      }
    });

    it('leaves prompt_tokens_details null without --enable-prompt-tokens-details (the Responses API reports cached tokens anyway)', async () => {
      const headers = { authorization: `Bearer ${KEY}` };
      for (const [path, body] of [
        ['/v1/chat/completions', { model: real.model, messages: [{ role: 'user', content: 'the' }], max_tokens: 1 }],
        ['/v1/completions', { model: real.model, prompt: 'the', max_tokens: 1 }],
        ['/v1/responses', { model: real.model, input: 'the', max_output_tokens: 1 }],
      ] as const) {
        const { real: r, sim: s } = await both(auth, 'POST', path, body, headers);
        expect({ path, usage: s.json.usage }).toEqual({ path, usage: r.json.usage });
      }
    });
  });
});
