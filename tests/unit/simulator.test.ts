// The simulator is the one stand-in in the system, so it is held to vLLM's HTTP behaviour.
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningSimulator } from '../../simulator/server.js';
import { parseFaultSpec } from '../../simulator/faults.js';
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
  return fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...init });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'sim-test', messages: [{ role: 'user', content }], ...extra });

describe('vLLM simulator: the HTTP API', () => {
  it('answers chat completions in OpenAI shape with usage, deterministically per request', async () => {
    const s = await sim();
    const a = (await (await post(s, '/v1/chat/completions', chat('hello'))).json()) as Record<string, any>;
    const b = (await (await post(s, '/v1/chat/completions', chat('hello'))).json()) as Record<string, any>;
    const c = (await (await post(s, '/v1/chat/completions', chat('something else entirely'))).json()) as Record<string, any>;
    expect(a).toMatchObject({ object: 'chat.completion', model: 'sim-test', choices: [{ index: 0, message: { role: 'assistant' } }] });
    expect(a.id).toMatch(/^chatcmpl-/);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
    expect(a.choices[0].message.content).not.toBe(c.choices[0].message.content);
    expect(a.usage.total_tokens).toBe(Number(a.usage.prompt_tokens) + Number(a.usage.completion_tokens));
    expect(a.usage.completion_tokens).toBe(a.choices[0].message.content.split(' ').length);
  });

  it('stops at max_tokens with finish_reason length', async () => {
    const s = await sim({ outputTokens: { min: 50, max: 50 } });
    const res = (await (await post(s, '/v1/chat/completions', chat('x', { max_tokens: 3 }))).json()) as Record<string, any>;
    expect(res.choices[0].finish_reason).toBe('length');
    expect(res.usage.completion_tokens).toBe(3);
  });

  it('serves completions, embeddings (float and base64) and responses', async () => {
    const s = await sim({ embeddingDim: 8 });
    const completion = (await (await post(s, '/v1/completions', { model: 'sim-test', prompt: ['a', 'b'], max_tokens: 5 })).json()) as Record<string, any>;
    expect(completion).toMatchObject({ object: 'text_completion' });
    expect(completion.choices).toHaveLength(2);

    const floats = (await (await post(s, '/v1/embeddings', { model: 'sim-test', input: ['x', 'y'] })).json()) as Record<string, any>;
    expect(floats.data).toHaveLength(2);
    expect(floats.data[0].embedding).toHaveLength(8);
    const norm = Math.sqrt((floats.data[0].embedding as number[]).reduce((s2, v) => s2 + v * v, 0));
    expect(norm).toBeCloseTo(1, 5);
    const b64 = (await (await post(s, '/v1/embeddings', { model: 'sim-test', input: 'x', encoding_format: 'base64' })).json()) as Record<string, any>;
    const raw = Buffer.from(b64.data[0].embedding as string, 'base64');
    const decoded = Array.from(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4));
    expect(decoded).toEqual(floats.data[0].embedding);

    const response = (await (await post(s, '/v1/responses', { model: 'sim-test', input: 'hi' })).json()) as Record<string, any>;
    expect(response).toMatchObject({ object: 'response', status: 'completed', output: [{ type: 'message', content: [{ type: 'output_text' }] }] });
    expect(response.usage).toMatchObject({ input_tokens: expect.any(Number), output_tokens: expect.any(Number), total_tokens: expect.any(Number) });
  });

  it('refuses like vLLM: unknown model 404, too long 400, missing fields 400, in its error shape', async () => {
    const s = await sim({ maxModelLen: 100 });
    const unknown = await post(s, '/v1/chat/completions', { ...chat('x'), model: 'gpt-4' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: { message: 'The model `gpt-4` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } });
    const tooLong = await post(s, '/v1/chat/completions', chat('x', { max_tokens: 500 }));
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as { error: { message: string } }).error.message).toMatch(/maximum context length is 100 tokens/);
    expect((await post(s, '/v1/chat/completions', { model: 'sim-test' })).status).toBe(400);
    const badJson = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: '{nope' });
    expect(badJson.status).toBe(400);
  });

  it('lists models, reports health and a version, and exposes vLLM metrics', async () => {
    const s = await sim({ models: ['a', 'b'] });
    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string; owned_by: string; max_model_len: number }[] };
    expect(models.data.map((m) => m.id)).toEqual(['a', 'b']);
    expect(models.data[0]).toMatchObject({ owned_by: 'vllm', max_model_len: 4096 });
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    await post(s, '/v1/chat/completions', { ...chat('x'), model: 'b' });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/vllm:request_success_total\{model_name="b",finished_reason="(stop|length)"\} 1/);
    expect(metrics).toContain('vllm:num_requests_running');
    expect(metrics).toContain('vllm:generation_tokens_total');
  });

  it('streams chat completions as server-sent events ending in [DONE]', async () => {
    const s = await sim({ outputTokens: { min: 3, max: 3 } });
    const text = await (await post(s, '/v1/chat/completions', chat('x', { stream: true, stream_options: { include_usage: true } }))).text();
    const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
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
    await Promise.all(Array.from({ length: 12 }, (_, i) => post(s, '/v1/chat/completions', chat(`q${i}`)).then((r) => r.json())));
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
    expect(parseFaultSpec('429=0.1,500=0.05,retry-after=2,spike=0.01:1500,hang=0.001,drop=0.002,stall=0.003,truncate=0.004')).toEqual({
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
    await expect(Promise.race([stalled.text(), new Promise((_, reject) => setTimeout(() => { reject(new Error('still waiting')); }, 300))])).rejects.toThrow('still waiting');

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
