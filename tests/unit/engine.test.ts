// The engine client against a (simulated) vLLM, with our retry budget.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';

import { Engine, engineRoot, type EngineOptions, type RetryPolicy } from '../../activities/engine-client.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { setFaults, startTestSimulator } from '../support/simulator.js';

const sims: RunningSimulator[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});
async function sim(): Promise<RunningSimulator> {
  const s = await startTestSimulator();
  sims.push(s);
  return s;
}

const policy: RetryPolicy = { budgetMs: 5000, initialMs: 20, maxMs: 100 };
/** A budget spent before a second attempt could start: what one timed-out request reports. */
const oneQuickTry: RetryPolicy = { budgetMs: 100, initialMs: 10, maxMs: 10 };
const body = { model: 'sim-test', messages: [{ role: 'user', content: 'hello' }] };

/** A simulator of the test's own and an engine client on it (at `basePath` below its root). */
async function engineOnSim(
  options: Partial<EngineOptions> = {},
  basePath = '',
): Promise<{ s: RunningSimulator; engine: Engine }> {
  const s = await sim();
  const engine = new Engine({
    baseUrl: `${s.url}${basePath}`,
    apiKey: undefined,
    requestTimeoutMs: 5000,
    connections: 16,
    keepAliveMs: 4000,
    maxResponseBytes: 1024 * 1024,
    ...options,
  });
  return { s, engine };
}

describe('Engine', () => {
  it('accepts VLLM_BASE_URL with or without /v1', () => {
    expect(engineRoot('http://gpu:8000')).toBe('http://gpu:8000');
    expect(engineRoot('http://gpu:8000/v1/')).toBe('http://gpu:8000');
  });

  it('sends the body as given and returns the parsed answer and request id', async () => {
    const { engine } = await engineOnSim({}, '/v1');
    const outcome = await engine.send('/v1/chat/completions', body, policy, undefined);
    expect(outcome).toMatchObject({ kind: 'ok', status: 200, attempts: 1 });
    if (outcome.kind !== 'ok') throw new Error('unreachable');
    // Our own request id went with it (vLLM sends none back by default, and takes ours as its own).
    expect(outcome.requestId).toMatch(/^batch_req_[A-Za-z0-9]{24}$/);
    expect(outcome.body).toMatchObject({ object: 'chat.completion' });
  });

  it('reads no more of an answer than ENGINE_MAX_RESPONSE_BYTES, and does not ask again', async () => {
    const { s, engine } = await engineOnSim({ maxResponseBytes: 200 });
    for (let i = 0; i < 2; i++) {
      const outcome = await engine.send('/v1/chat/completions', body, policy, undefined);
      expect(outcome).toMatchObject({ kind: 'too_large', attempts: 1 });
      if (outcome.kind !== 'too_large') throw new Error('unreachable');
      expect(outcome.message).toContain('larger than 200 bytes (ENGINE_MAX_RESPONSE_BYTES)');
    }
    expect(((await (await fetch(`${s.url}/control/stats`)).json()) as { received: number }).received).toBe(2);
    await engine.close();
  });

  it('does not retry a 4xx and keeps the engine error body whole', async () => {
    const { engine } = await engineOnSim();
    const outcome = await engine.send('/v1/chat/completions', { ...body, model: 'nope' }, policy, undefined);
    expect(outcome).toMatchObject({ kind: 'http', status: 404, attempts: 1 });
    if (outcome.kind !== 'http') throw new Error('unreachable');
    expect(outcome.body).toMatchObject({ error: { type: 'NotFoundError', param: 'model', code: 404 } });
    expect((outcome.body as { error: { message: string } }).error.message).toContain(
      'The model `nope` does not exist.',
    );
  });

  it('retries 429 after at least Retry-After, and 5xx, until the engine recovers', async () => {
    const { s, engine } = await engineOnSim();
    await setFaults(s, { errorRates: { '429': 1 }, retryAfterSeconds: 0.3 });
    const started = Date.now();
    const pending = engine.send('/v1/chat/completions', body, policy, undefined);
    setTimeout(() => void setFaults(s, { errorRates: { '503': 1 } }), 450);
    setTimeout(() => void setFaults(s, {}), 700);
    const outcome = await pending;
    expect(outcome.kind).toBe('ok');
    expect(outcome.attempts).toBeGreaterThanOrEqual(3);
    expect(outcome.errors.map((e) => e.status)).toContain(429);
    expect(outcome.errors.map((e) => e.status)).toContain(503);
    // The first 429 asked for 300 ms, and the wait honoured it.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });

  it("does not retry vLLM's 500 and 501 (they say the same again), but does retry 502", async () => {
    const { s, engine } = await engineOnSim();
    for (const status of ['500', '501']) {
      await setFaults(s, { errorRates: { [status]: 1 } });
      expect(await engine.send('/v1/chat/completions', body, policy, undefined)).toMatchObject({
        kind: 'http',
        status: Number(status),
        attempts: 1,
      });
    }
    await setFaults(s, { errorRates: { '502': 1 } });
    setTimeout(() => void setFaults(s, {}), 200);
    const outcome = await engine.send('/v1/chat/completions', body, policy, undefined);
    expect(outcome.kind).toBe('ok');
    expect(outcome.errors.map((e) => e.status)).toContain(502);
  });

  it('gives up on dropped connections when the budget runs out, reporting every attempt', async () => {
    const { s, engine } = await engineOnSim();
    await setFaults(s, { dropRate: 1 });
    const outcome = await engine.send(
      '/v1/chat/completions',
      body,
      { budgetMs: 300, initialMs: 20, maxMs: 50 },
      undefined,
    );
    expect(outcome).toMatchObject({ kind: 'network', timeout: false });
    expect(outcome.attempts).toBeGreaterThan(1);
    expect(outcome.errors).toHaveLength(outcome.attempts);
  });

  it('counts the body in the request timeout: a stalled answer times out', async () => {
    const { s, engine } = await engineOnSim({ requestTimeoutMs: 300 });
    await setFaults(s, { stallRate: 1 });
    const started = Date.now();
    const outcome = await engine.send('/v1/chat/completions', body, oneQuickTry, undefined);
    expect(outcome).toMatchObject({ kind: 'network', timeout: true, attempts: 1 });
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('retries an answer cut off half-way', async () => {
    const { s, engine } = await engineOnSim();
    await setFaults(s, { truncateRate: 1 });
    setTimeout(() => void setFaults(s, {}), 300);
    const outcome = await engine.send('/v1/chat/completions', body, policy, undefined);
    expect(outcome.kind).toBe('ok');
    expect(outcome.attempts).toBeGreaterThan(1);
    expect(outcome.errors[0]?.status).toBeNull();
  });

  it('times out a hung request', async () => {
    const { s, engine } = await engineOnSim({ requestTimeoutMs: 150 });
    await setFaults(s, { hangRate: 1 });
    const outcome = await engine.send('/v1/chat/completions', body, oneQuickTry, undefined);
    expect(outcome).toMatchObject({ kind: 'network', timeout: true, attempts: 1 });
  });

  it('retries what a proxy answers instead of the engine: an HTML 502, then a 200 that is not JSON', async () => {
    // What a load balancer in front of vLLM sends when the engine restarts: not vLLM's JSON.
    const answers = [
      { status: 502, type: 'text/html', body: '<html><body>502 Bad Gateway</body></html>' },
      { status: 200, type: 'text/html', body: '<html>maintenance</html>' },
      { status: 200, type: 'application/json', body: '{"object":"chat.completion","usage":{"prompt_tokens":3}}' },
    ];
    const server: Server = createServer((req, res) => {
      req.resume();
      const next = answers.shift() ?? { status: 500, type: 'text/plain', body: 'no more' };
      res.writeHead(next.status, { 'content-type': next.type }).end(next.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const engine = new Engine({
        baseUrl: `http://127.0.0.1:${port}/v1`,
        apiKey: undefined,
        requestTimeoutMs: 5000,
        connections: 2,
        keepAliveMs: 1000,
        maxResponseBytes: 1024 * 1024,
      });
      const outcome = await engine.send('/v1/chat/completions', body, policy, undefined);
      await engine.close();
      expect(outcome).toMatchObject({ kind: 'ok', status: 200, attempts: 3 });
      expect(outcome.errors.map((e) => e.status)).toEqual([502, null]);
      // The proxy's page is the 502's message, and the unreadable 200 says what was wrong with it.
      expect(outcome.errors[0]?.message).toContain('502 Bad Gateway');
      expect(outcome.errors[1]?.message).toContain('unreadable answer from the engine');
    } finally {
      server.close();
    }
  });

  it('stops at once when aborted', async () => {
    const { s, engine } = await engineOnSim();
    await setFaults(s, { hangRate: 1 });
    const controller = new AbortController();
    setTimeout(() => {
      controller.abort();
    }, 100);
    await expect(engine.send('/v1/chat/completions', body, policy, controller.signal)).rejects.toThrow();
  });
});
