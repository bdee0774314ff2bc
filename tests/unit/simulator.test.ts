// The simulator is the one stand-in in the system, so it is held to vLLM's HTTP behaviour.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { parseFaultSpec } from '../../simulator/faults.js';
import { VLLM_VERSION } from '../../simulator/options.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { setFaults, startTestSimulator } from '../support/simulator.js';

const sims: RunningSimulator[] = [];
async function sim(options: Parameters<typeof startTestSimulator>[0] = {}): Promise<RunningSimulator> {
  const s = await startTestSimulator(options);
  sims.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function post(s: RunningSimulator, path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...init,
  });
}

/** vLLM's error answer, word for word: its status, and the same status again as the body's `code`. */
async function expectVllmError(
  response: Promise<Response>,
  status: number,
  error: { message: string; type: string; param: string },
): Promise<void> {
  const res = await response;
  expect(res.status).toBe(status);
  expect(await res.json()).toEqual({ error: { ...error, code: status } });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'sim-test',
  messages: [{ role: 'user', content }],
  ...extra,
});

describe('vLLM simulator: the HTTP API', () => {
  it('answers chat completions in OpenAI shape with usage, deterministically per request', async () => {
    const s = await sim();
    const a = (await (await post(s, '/v1/chat/completions', chat('hello'))).json()) as Record<string, any>;
    const b = (await (await post(s, '/v1/chat/completions', chat('hello'))).json()) as Record<string, any>;
    const c = (await (await post(s, '/v1/chat/completions', chat('something else entirely'))).json()) as Record<
      string,
      any
    >;
    expect(a).toMatchObject({
      object: 'chat.completion',
      model: 'sim-test',
      choices: [{ index: 0, message: { role: 'assistant' } }],
    });
    expect(a.id).toMatch(/^chatcmpl-/);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
    expect(a.choices[0].message.content).not.toBe(c.choices[0].message.content);
    expect(a.usage.total_tokens).toBe(Number(a.usage.prompt_tokens) + Number(a.usage.completion_tokens));
    expect(a.usage.completion_tokens).toBe(a.choices[0].message.content.split(' ').length);
  });

  it('stops at max_tokens with finish_reason length', async () => {
    const s = await sim({ outputTokens: { min: 50, max: 50 } });
    const res = (await (await post(s, '/v1/chat/completions', chat('x', { max_tokens: 3 }))).json()) as Record<
      string,
      any
    >;
    expect(res.choices[0].finish_reason).toBe('length');
    expect(res.usage.completion_tokens).toBe(3);
  });

  it('serves completions, embeddings (float and base64, from an embedding model) and responses', async () => {
    const s = await sim({ models: ['sim-test', 'sim-embed'], embeddingDim: 8 });
    const completion = (await (
      await post(s, '/v1/completions', { model: 'sim-test', prompt: ['a', 'b'], max_tokens: 5 })
    ).json()) as Record<string, any>;
    expect(completion).toMatchObject({ object: 'text_completion' });
    expect(completion.choices).toHaveLength(2);

    const floats = (await (
      await post(s, '/v1/embeddings', { model: 'sim-embed', input: ['x', 'y'] })
    ).json()) as Record<string, any>;
    expect(floats.data).toHaveLength(2);
    expect(floats.data[0].embedding).toHaveLength(8);
    const norm = Math.sqrt((floats.data[0].embedding as number[]).reduce((s2, v) => s2 + v * v, 0));
    expect(norm).toBeCloseTo(1, 5);
    const b64 = (await (
      await post(s, '/v1/embeddings', { model: 'sim-embed', input: 'x', encoding_format: 'base64' })
    ).json()) as Record<string, any>;
    const raw = Buffer.from(b64.data[0].embedding as string, 'base64');
    const decoded = Array.from(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4));
    expect(decoded).toEqual(floats.data[0].embedding);

    const response = (await (await post(s, '/v1/responses', { model: 'sim-test', input: 'hi' })).json()) as Record<
      string,
      any
    >;
    expect(response).toMatchObject({
      object: 'response',
      status: 'completed',
      output: [{ type: 'message', content: [{ type: 'output_text' }] }],
    });
    expect(response.usage).toMatchObject({
      input_tokens: expect.any(Number),
      output_tokens: expect.any(Number),
      total_tokens: expect.any(Number),
    });
  });

  it('serves each route only for its kind of model, as vLLM mounts them: 404 {"detail":"Not Found"} otherwise', async () => {
    const mixed = await sim({ models: ['sim-test', 'sim-embed'] });
    // A generative model has no embeddings, an embedding model no chat (each would be its own vLLM).
    for (const [path, body] of [
      ['/v1/embeddings', { model: 'sim-test', input: 'x' }],
      ['/v1/chat/completions', chat('x', { model: 'sim-embed' })],
      ['/v1/completions', { model: 'sim-embed', prompt: 'x' }],
    ] as const) {
      const res = await post(mixed, path, body);
      expect([path, res.status, await res.json()]).toEqual([path, 404, { detail: 'Not Found' }]);
    }
    const unknown = await post(mixed, '/v1/embeddings', { model: 'nope', input: 'x' });
    expect(await unknown.json()).toMatchObject({
      error: { message: 'The model `nope` does not exist. Valid aliases: sim-embed.', param: 'model', code: 404 },
    });
    // Only generative models (the default unless a name contains "embed", or embeddingModels says otherwise): no route at all.
    const generative = await sim();
    const res = await fetch(`${generative.url}/v1/embeddings`, { method: 'POST', body: '{not json' });
    expect([res.status, await res.json()]).toEqual([404, { detail: 'Not Found' }]);
    const chosen = await sim({ models: ['a', 'b'], embeddingModels: ['b'] });
    expect((await post(chosen, '/v1/embeddings', { model: 'b', input: 'x' })).status).toBe(200);
    expect((await post(chosen, '/v1/embeddings', { model: 'a', input: 'x' })).status).toBe(404);
  });

  it('refuses like vLLM: unknown model 404, max_tokens or the prompt alone over the context 400, bad fields 400, in its error shapes', async () => {
    const s = await sim({ maxModelLen: 100 });
    await expectVllmError(post(s, '/v1/chat/completions', { ...chat('x'), model: 'gpt-4' }), 404, {
      message: 'The model `gpt-4` does not exist. Valid aliases: sim-test.',
      type: 'NotFoundError',
      param: 'model',
    });
    await expectVllmError(post(s, '/v1/chat/completions', chat('x', { max_tokens: 500 })), 400, {
      message:
        'max_tokens=500 cannot be greater than max_model_len=100. Please request fewer output tokens. (parameter=max_tokens, value=500)',
      type: 'BadRequestError',
      param: 'max_tokens',
    });
    // A chat message of 4n characters is n + 10 tokens here.
    await expectVllmError(post(s, '/v1/chat/completions', chat('x'.repeat(400), { max_tokens: 5 })), 400, {
      message:
        "This model's maximum context length is 100 tokens. However, your prompt contains at least 101 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=101)",
      type: 'BadRequestError',
      param: 'input_tokens',
    });
    const full = await post(s, '/v1/chat/completions', chat('x'.repeat(360)));
    expect(await full.json()).toMatchObject({
      error: { message: 'max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)', param: 'max_tokens' },
    });
    await expectVllmError(post(s, '/v1/chat/completions', { model: 'sim-test' }), 400, {
      message:
        "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}",
      type: 'Bad Request',
      param: 'body.messages',
    });
    const badJson = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: '{nope' });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ error: { type: 'Bad Request', param: 'body.1', code: 400 } });
    await expectVllmError(post(s, '/v1/chat/completions', chat('x', { temperature: -1 })), 400, {
      message: 'temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)',
      type: 'BadRequestError',
      param: 'temperature',
    });
  });

  it('cuts prompt + max_tokens over the context to the room left (200, finish_reason length), as vLLM >= 0.11 does', async () => {
    const s = await sim({ maxModelLen: 100, outputTokens: { min: 1000, max: 1000 } });
    // 80 characters: 20 tokens of content, 30 with the chat template; 70 left of the 100.
    const cut = (await (
      await post(s, '/v1/chat/completions', chat('x'.repeat(80), { max_tokens: 90 }))
    ).json()) as Record<string, any>;
    expect(cut.choices[0].finish_reason).toBe('length');
    expect(cut.usage).toMatchObject({ prompt_tokens: 30, completion_tokens: 70, total_tokens: 100 });
    // No max_tokens: the room left too; completions default to 16.
    const open = (await (await post(s, '/v1/chat/completions', chat('x'.repeat(80)))).json()) as Record<string, any>;
    expect(open.usage.completion_tokens).toBe(70);
    const completion = (await (
      await post(s, '/v1/completions', { model: 'sim-test', prompt: 'x'.repeat(80) })
    ).json()) as Record<string, any>;
    expect(completion.usage).toMatchObject({ prompt_tokens: 21, completion_tokens: 16 });
    const response = (await (
      await post(s, '/v1/responses', { model: 'sim-test', input: 'x'.repeat(80), max_output_tokens: 90 })
    ).json()) as Record<string, any>;
    expect(response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      max_output_tokens: 69,
      usage: { input_tokens: 31, output_tokens: 69 },
    });
  });

  it('answers unknown routes and wrong methods as FastAPI does, and says which vLLM it copies', async () => {
    const s = await sim();
    for (const [method, path] of [
      ['GET', '/v1/nope'],
      ['POST', '/nope'],
      ['GET', '/v1/models/sim-test'],
    ] as const) {
      const res = await fetch(`${s.url}${path}`, { method });
      expect([method, path, res.status, await res.json()]).toEqual([method, path, 404, { detail: 'Not Found' }]);
    }
    const wrong = await fetch(`${s.url}/v1/chat/completions`);
    expect([wrong.status, wrong.headers.get('allow'), await wrong.json()]).toEqual([
      405,
      'POST',
      { detail: 'Method Not Allowed' },
    ]);
    expect((await fetch(`${s.url}/health`, { method: 'HEAD' })).status).toBe(405);
    expect(await (await fetch(`${s.url}/version`)).json()).toEqual({ version: VLLM_VERSION });
  });

  it('guards /v1/* with --api-key as vLLM does: 401 {"error":"Unauthorized"}; /health, /metrics and /control stay open', async () => {
    const s = await sim({ apiKey: 'sk-sim' });
    for (const headers of [
      {},
      { authorization: 'Bearer wrong' },
      { 'x-api-key': 'sk-sim' },
      { authorization: 'sk-sim' },
    ] as Record<string, string>[]) {
      const res = await post(s, '/v1/chat/completions', chat('x'), {
        headers: { 'content-type': 'application/json', ...headers },
      });
      expect([res.status, await res.text(), res.headers.get('vary')]).toEqual([401, '{"error":"Unauthorized"}', null]);
    }
    expect((await fetch(`${s.url}/v1/nope`)).status).toBe(401);
    expect((await fetch(`${s.url}/v1/models`, { headers: { authorization: 'bearer sk-sim' } })).status).toBe(200);
    expect(
      (
        await post(s, '/v1/chat/completions', chat('x'), {
          headers: { 'content-type': 'application/json', authorization: 'Bearer sk-sim' },
        })
      ).status,
    ).toBe(200);
    for (const path of ['/health', '/metrics', '/version', '/control/stats'])
      expect([path, (await fetch(`${s.url}${path}`)).status]).toEqual([path, 200]);
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
  });

  it("sends no X-Request-Id unless asked to (--enable-request-id-headers); a client's X-Request-Id becomes the id", async () => {
    const plain = await sim();
    const res = await post(plain, '/v1/chat/completions', chat('x'), {
      headers: { 'content-type': 'application/json', 'x-request-id': 'mine' },
    });
    expect(res.headers.get('x-request-id')).toBeNull();
    expect(((await res.json()) as { id: string }).id).toBe('chatcmpl-mine');
    expect(
      ((await (await post(plain, '/v1/completions', { model: 'sim-test', prompt: 'x' })).json()) as { id: string }).id,
    ).toMatch(/^cmpl-[0-9a-f]{16}$/);
    const headed = await sim({ enableRequestIdHeaders: true });
    expect(
      (
        await post(headed, '/v1/chat/completions', chat('x'), {
          headers: { 'content-type': 'application/json', 'x-request-id': 'mine' },
        })
      ).headers.get('x-request-id'),
    ).toBe('mine');
    expect((await fetch(`${headed.url}/health`)).headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
  });

  it("closes idle keep-alive connections (5 s by default, as vLLM's uvicorn)", async () => {
    const s = await sim({ keepAliveTimeoutMs: 300 });
    const { hostname, port } = new URL(s.url);
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
      let answered = 0;
      socket.on('data', () => {
        answered ||= performance.now();
      });
      socket.on('close', () => {
        resolve(performance.now() - answered);
      });
      socket.on('error', reject);
    });
    expect(closedAfter).toBeGreaterThan(250);
    expect(closedAfter).toBeLessThan(2000);
    // Like uvicorn, it does not announce the timeout (no Keep-Alive header): clients must not count on a hint.
    const defaults = await sim();
    expect((await fetch(`${defaults.url}/health`)).headers.get('keep-alive')).toBeNull();
  });

  it('lists models, reports health and a version, and exposes vLLM metrics', async () => {
    const s = await sim({ models: ['a', 'b'] });
    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as {
      data: { id: string; owned_by: string; max_model_len: number }[];
    };
    expect(models.data.map((m) => m.id)).toEqual(['a', 'b']);
    expect(models.data[0]).toMatchObject({ owned_by: 'vllm', max_model_len: 4096 });
    const health = await fetch(`${s.url}/health`);
    expect([health.status, await health.text(), health.headers.get('content-type')]).toEqual([200, '', null]);
    await post(s, '/v1/chat/completions', { ...chat('x'), model: 'b' });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    // One engine serves every name; like vLLM's, its metrics carry engine="0" and the first served name.
    expect(metrics).toMatch(
      /vllm:request_success_total\{engine="0",finished_reason="(stop|length)",model_name="a"\} 1/,
    );
    expect(metrics).toContain('vllm:num_requests_running');
    expect(metrics).toContain('vllm:generation_tokens_total');
  });

  it('streams chat completions as server-sent events ending in [DONE]', async () => {
    const s = await sim({ outputTokens: { min: 3, max: 3 } });
    const text = await (
      await post(s, '/v1/chat/completions', chat('x', { stream: true, stream_options: { include_usage: true } }))
    ).text();
    const events = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, any>);
    expect(chunks[0]?.choices[0].delta.role).toBe('assistant');
    expect(chunks.at(-1)?.usage.completion_tokens).toBe(3);
  });
});

describe('vLLM simulator: capacity', () => {
  it('runs at most max-num-seqs at once; the rest wait, so time grows in waves', async () => {
    const s = await sim({ maxNumSeqs: 4, tokenLatencyMs: 10, outputTokens: { min: 10, max: 10 }, prefillMs: 0 });
    const started = performance.now();
    let sawWaiting = false;
    const poll = setInterval(() => {
      if (s.state.snapshot().waiting > 0) sawWaiting = true;
    }, 5);
    await Promise.all(
      Array.from({ length: 12 }, (_, i) => post(s, '/v1/chat/completions', chat(`q${i}`)).then((r) => r.json())),
    );
    clearInterval(poll);
    const elapsed = performance.now() - started;
    const stats = s.state.snapshot();
    expect(stats.maxRunning).toBe(4);
    expect(sawWaiting).toBe(true);
    expect(stats.served).toBe(12);
    // Three waves of 4 × (10 tokens × 10 ms) cannot finish sooner than 300 ms.
    expect(elapsed).toBeGreaterThanOrEqual(290);
  });

  it('frees the slot of a request whose client went away', async () => {
    const s = await sim({ maxNumSeqs: 1, tokenLatencyMs: 50, outputTokens: { min: 100, max: 100 } });
    await expect(post(s, '/v1/chat/completions', chat('slow'), { signal: AbortSignal.timeout(100) })).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 50));
    expect(s.state.snapshot()).toMatchObject({ running: 0, aborted: 1 });
  });
});

describe('vLLM simulator: faults', () => {
  it('parses fault specs', () => {
    expect(
      parseFaultSpec('429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.002,stall=0.003,truncate=0.004'),
    ).toEqual({
      errorRates: { '429': 0.1, '500': 0.05 },
      retryAfterSeconds: 2,
      spikeRate: 0.01,
      spikeMs: 1500,
      hangRate: 0.001,
      dropRate: 0.002,
      stallRate: 0.003,
      truncateRate: 0.004,
      down: false,
    });
    expect(() => parseFaultSpec('explode=1')).toThrow(/unknown fault/);
    expect(() => parseFaultSpec('429=lots')).toThrow(/not a number/);
  });

  it('injects errors with Retry-After, drops, hangs and outages, switchable at run time', async () => {
    const s = await sim();
    await setFaults(s, { errorRates: { '429': 1 }, retryAfterSeconds: 3 });
    const limited = await post(s, '/v1/chat/completions', chat('x'));
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('3');
    expect(await limited.json()).toMatchObject({ error: { code: 429 } });

    await setFaults(s, { dropRate: 1 });
    await expect(post(s, '/v1/chat/completions', chat('x'))).rejects.toThrow();

    await setFaults(s, { hangRate: 1 });
    await expect(post(s, '/v1/chat/completions', chat('x'), { signal: AbortSignal.timeout(200) })).rejects.toThrow();

    await setFaults(s, { down: true });
    expect((await fetch(`${s.url}/health`)).status).toBe(503);
    await expect(post(s, '/v1/chat/completions', chat('x'))).rejects.toThrow();

    await setFaults(s, {});
    expect((await post(s, '/v1/chat/completions', chat('x'))).status).toBe(200);
    expect(s.state.snapshot().faults).toMatchObject({ error: 1, drop: 2, hang: 1 });

    const invalid = await fetch(`${s.url}/control/faults`, { method: 'PUT', body: JSON.stringify({ dropRate: 7 }) });
    expect(invalid.status).toBe(400);
  });

  it('starts answers it never finishes, or cuts them off half-way', async () => {
    const s = await sim();
    await setFaults(s, { stallRate: 1 });
    const stalled = await post(s, '/v1/chat/completions', chat('x'));
    expect(stalled.status).toBe(200);
    await expect(
      Promise.race([
        stalled.text(),
        new Promise((_, reject) =>
          setTimeout(() => {
            reject(new Error('still waiting'));
          }, 300),
        ),
      ]),
    ).rejects.toThrow('still waiting');

    await setFaults(s, { truncateRate: 1 });
    const truncated = await post(s, '/v1/chat/completions', chat('x'));
    expect(truncated.status).toBe(200);
    await expect(truncated.text()).rejects.toThrow();
    expect(s.state.snapshot().faults).toMatchObject({ stall: 1, truncate: 1 });
  });

  it('adds latency spikes at the given rate', async () => {
    const s = await sim({ tokenLatencyMs: 0, outputTokens: { min: 1, max: 1 } });
    await setFaults(s, { spikeRate: 1, spikeMs: 150 });
    const started = performance.now();
    expect((await post(s, '/v1/chat/completions', chat('x'))).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });
});
