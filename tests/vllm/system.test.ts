// Batches through the whole system against real vLLM (its CPU build, the tiny random-weight model):
// every endpoint it serves, its context-length rules, its own 4xx bodies in the error file, prefix
// caching reaching usage, a batch planned by prompt prefix, an endpoint it does not serve refused at validation; a GPU worker that runs
// its own vLLM (VLLM_COMMAND) and restarts it after kill -9 mid-batch; and a wrong engine key.
import { execFileSync } from 'node:child_process';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { Engine } from '../../activities/engine-client.js';
import { TINY_MODEL_NAME, vllmCommand } from '../../dev/vllm-local.js';
import { progressQuery } from '../../workflows/messages.js';
import { expectEveryLineDone, outputsByCustomId, runBatch, runDisruptedBatch } from '../support/batches.js';
import { spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const line = (id: string, url: string, body: Record<string, unknown>): string =>
  JSON.stringify({ custom_id: id, method: 'POST', url, body: { model: TINY_MODEL_NAME, ...body } });
const lines = (...ls: string[]): string => `${ls.join('\n')}\n`;
/** About `tokens` tokens of Llama 3's tokenizer: one short common word each. */
const words = (tokens: number, word = 'hello'): string => Array.from({ length: tokens }, () => word).join(' ');

describe('batches against real vLLM', () => {
  let stack: TestStack;
  const vllm = inject('vllm');

  beforeAll(async () => {
    stack = await startTestStack({
      engines: [vllm.url],
      env: { GPU_MAX_INFLIGHT: String(vllm.maxNumSeqs), API_RATE_LIMIT_PER_MINUTE: '0' },
    });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('runs chat, completions and responses batches, keeping vLLM answers as they are', async () => {
    const cases = [
      [
        '/v1/chat/completions',
        { messages: [{ role: 'user', content: 'Say something.' }], max_tokens: 6, ignore_eos: true },
        'chat.completion',
      ],
      ['/v1/completions', { prompt: 'Once upon a time', max_tokens: 6, ignore_eos: true }, 'text_completion'],
      ['/v1/responses', { input: 'Say something.', max_output_tokens: 6 }, 'response'],
    ] as const;
    for (const [endpoint, body, object] of cases) {
      const batch = await runBatch(stack, lines(...[0, 1, 2, 3].map((i) => line(`r${i}`, endpoint, body))), 180_000, {
        endpoint,
      });
      expect(batch.status, endpoint).toBe('completed');
      expect(batch.request_counts).toEqual({ total: 4, completed: 4, failed: 0 });
      const { ok } = await outputsByCustomId(stack.openai, batch);
      for (const out of ok) {
        expect(out.response?.status_code).toBe(200);
        expect(out.response?.body.object).toBe(object);
        expect(out.response?.body.model).toBe(TINY_MODEL_NAME);
        // The request id the GPU worker sent, which vLLM took as its own.
        expect(out.response?.request_id).toMatch(/^batch_req_/);
      }
      expect(batch.usage?.input_tokens).toBeGreaterThan(0);
      expect(batch.usage?.output_tokens).toBeGreaterThanOrEqual(4 * 6);
    }
  });

  it("reads the adaptive limit's signals from vLLM's own /metrics", async () => {
    const engine = new Engine({
      baseUrl: vllm.url,
      apiKey: undefined,
      requestTimeoutMs: 30_000,
      connections: 1,
      keepAliveMs: 1000,
      maxResponseBytes: 1 << 20,
    });
    try {
      const answer = await fetch(`${vllm.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: TINY_MODEL_NAME, prompt: 'hello', max_tokens: 2, ignore_eos: true }),
      });
      expect(answer.status).toBe(200);
      // Every figure is exported, and the histogram has counted that request's first token.
      const load = await engine.load(10_000);
      expect(load.waiting).toBe(0);
      expect(load.kvUsage).toBeGreaterThanOrEqual(0);
      expect(load.kvUsage).toBeLessThanOrEqual(1);
      expect(load.preemptions).toBeGreaterThanOrEqual(0);
      expect(load.ttftSeconds?.count).toBeGreaterThan(0);
      expect(load.ttftSeconds?.sum).toBeGreaterThan(0);
      // Two tokens: one gap between them, under vLLM's own name for it.
      expect(load.itlSeconds?.count).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });

  it("follows vLLM's context-length rules, with its own 4xx bodies in the error file", async () => {
    const chat = (id: string, body: Record<string, unknown>): string => line(id, '/v1/chat/completions', body);
    const content = [
      // Prompt + max_tokens over max_model_len: vLLM answers 200 and cuts the output.
      chat('cut', {
        messages: [{ role: 'user', content: words(vllm.maxModelLen - 200) }],
        max_tokens: 500,
        ignore_eos: true,
      }),
      // max_tokens alone over it: 400, param max_tokens.
      chat('too-many-tokens', { messages: [{ role: 'user', content: 'hi' }], max_tokens: vllm.maxModelLen + 1000 }),
      // The prompt alone over it: 400.
      chat('too-long-prompt', { messages: [{ role: 'user', content: words(vllm.maxModelLen + 200) }], max_tokens: 4 }),
      // A sampling parameter out of range: 400.
      chat('bad-temperature', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 9 }),
      chat('fine', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ignore_eos: true }),
    ];
    const batch = await runBatch(stack, lines(...content), 180_000);
    expect(batch.status).toBe('completed');
    const { ok, failed } = await outputsByCustomId(stack.openai, batch);
    const byId = new Map([...ok, ...failed].map((l) => [l.custom_id, l]));
    const cut = byId.get('cut')?.response;
    expect(cut?.status_code).toBe(200);
    expect((cut?.body.choices as { finish_reason: string }[])[0]?.finish_reason).toBe('length');
    expect((cut?.body.usage as { completion_tokens: number }).completion_tokens).toBeLessThan(500);
    for (const [id, param] of [
      ['too-many-tokens', 'max_tokens'],
      ['too-long-prompt', undefined],
      ['bad-temperature', undefined],
    ] as const) {
      const error = byId.get(id)?.response;
      expect(error?.status_code, id).toBe(400);
      // vLLM's own error body, whole: an object with its message, type and param.
      const body = error?.body.error as { message: string; type: string; param: string | null };
      expect(typeof body.message).toBe('string');
      expect(typeof body.type).toBe('string');
      if (param !== undefined) expect(body.param).toBe(param);
    }
    expect(byId.get('fine')?.response?.status_code).toBe(200);
    // The 4xx lines, and only they, are dead letters, each tried once.
    const letters = await stack.db
      .selectFrom('dead_letters')
      .select(['custom_id', 'attempts'])
      .where('batch_id', '=', batch.id)
      .execute();
    expect(letters.map((l) => l.custom_id).sort()).toEqual(['bad-temperature', 'too-long-prompt', 'too-many-tokens']);
    expect(letters.every((l) => l.attempts === 1)).toBe(true);
  });

  it('reports cached prompt tokens in the batch usage when lines share a long prefix', async () => {
    // vLLM on the CPU caches whole blocks of 128 tokens: a shared prefix of some 700 tokens holds several.
    const prefix = words(700, 'context');
    const body = (q: string): Record<string, unknown> => ({
      messages: [
        { role: 'system', content: prefix },
        { role: 'user', content: q },
      ],
      max_tokens: 4,
      ignore_eos: true,
    });
    // The first batch fills the cache; the second, with the same prefix, reads from it.
    await runBatch(stack, lines(line('warm', '/v1/chat/completions', body('first question'))), 180_000);
    const batch = await runBatch(
      stack,
      lines(
        line('a', '/v1/chat/completions', body('second question')),
        line('b', '/v1/chat/completions', body('third question')),
      ),
      180_000,
    );
    expect(batch.status).toBe('completed');
    const cached = batch.usage?.input_tokens_details.cached_tokens ?? 0;
    expect(cached).toBeGreaterThanOrEqual(2 * 128);
    expect(cached % 128).toBe(0);
    const { ok } = await outputsByCustomId(stack.openai, batch);
    for (const out of ok)
      expect(
        (out.response?.body.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details
          .cached_tokens,
      ).toBeGreaterThan(0);
  });

  it('plans lines that share a system prompt into the same chunks, and vLLM serves their prefix from its cache', async () => {
    // Three prompts of some 300 tokens (two of vLLM's 128-token blocks each on the CPU), 16 lines each
    // (the smallest group planned apart), taking turns in the file.
    const prompts = ['alpha', 'beta', 'gamma'].map((w) => words(300, w));
    const count = 48;
    const content = lines(
      ...Array.from({ length: count }, (_, i) =>
        line(`req-${i}`, '/v1/chat/completions', {
          messages: [
            { role: 'system', content: prompts[i % prompts.length] },
            { role: 'user', content: `question ${i}` },
          ],
          max_tokens: 2,
          ignore_eos: true,
        }),
      ),
    );
    const batch = await runBatch(stack, content, 300_000);
    const { ok } = await expectEveryLineDone(stack.openai, batch, count);
    const progress = await stack.temporal.workflow.getHandle(batch.id).query(progressQuery);
    expect(progress.prefixGroups).toEqual([16, 16, 16]);
    // Each prompt is computed about once (more only where its first requests ran in one step).
    const cached = ok.map(
      (out) =>
        (out.response?.body.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details
          .cached_tokens,
    );
    expect(cached.filter((n) => n >= 256).length).toBeGreaterThanOrEqual(count - 3 * vllm.maxNumSeqs);
    expect(batch.usage?.input_tokens_details.cached_tokens).toBe(cached.reduce((a, b) => a + b, 0));
  });

  it('refuses at validation an endpoint the model is not served on', async () => {
    const embedding = lines(line('e', '/v1/embeddings', { input: 'embed me' }));
    const batch = await runBatch(stack, embedding, 60_000, { endpoint: '/v1/embeddings' });
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data?.[0]).toMatchObject({ code: 'unsupported_endpoint', param: 'endpoint', line: 1 });
    expect(batch.errors?.data?.[0]?.message).toContain('/v1/embeddings');
  });
});

describe('a GPU worker that runs its own real vLLM', () => {
  let stack: TestStack;
  let worker: ChildUnderTest | undefined;
  const vllm = inject('vllm');
  const model = 'tiny-own';

  /** The worker's environment for a VLLM_COMMAND that starts real vLLM on `port`. */
  const ownEngine = (port: number, apiKey: string | undefined): Record<string, string> => {
    const { command, args, env } = vllmCommand({
      python: vllm.python,
      modelDir: vllm.modelDir,
      host: '127.0.0.1',
      port,
      servedModelName: model,
      maxModelLen: vllm.maxModelLen,
      maxNumSeqs: vllm.maxNumSeqs,
      ...(apiKey === undefined ? {} : { apiKey }),
    });
    const vllmEnv = Object.fromEntries(
      Object.entries(env).filter(([k, v]) => /^(VLLM_|OMP_|HF_|TRANSFORMERS_)/.test(k) && v !== undefined),
    ) as Record<string, string>;
    return {
      ...vllmEnv,
      VLLM_COMMAND: `exec ${[command, ...args].join(' ')}`,
      VLLM_BASE_URL: `http://127.0.0.1:${port}`,
      ENGINE_HEALTH_TIMEOUT_MS: '600000',
      GPU_MAX_INFLIGHT: String(vllm.maxNumSeqs),
    };
  };

  beforeAll(async () => {
    stack = await startTestStack({ engines: [], env: { CHUNK_MAX_ATTEMPTS: '3', API_RATE_LIMIT_PER_MINUTE: '0' } });
  });
  afterAll(async () => {
    await worker?.stop();
    await stack.stop();
  });

  it('fails the chunks, saying why, when the engine refuses its key', async () => {
    const port = await getPort();
    // Its vLLM takes one key; the worker holds another. It names its model, so it starts (not ready).
    worker = await spawnGpuWorker(stack, `http://127.0.0.1:${port}`, {
      ...ownEngine(port, 'the-right-key'),
      VLLM_API_KEY: 'a-wrong-key',
      GPU_MODELS: model,
    });
    const content = lines(
      ...[0, 1, 2].map((i) =>
        line(`k${i}`, '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
      ),
    );
    const batch = await runBatch(stack, content, 240_000);
    expect(batch.status).toBe('completed');
    const { failed } = await outputsByCustomId(stack.openai, batch);
    expect(failed).toHaveLength(3);
    for (const out of failed) {
      expect(out.error?.code).toBe('chunk_failed');
      expect(out.error?.message).toContain("refused this GPU worker's credentials (VLLM_API_KEY)");
    }
    await worker.stop();
    worker = undefined;
  });

  it('restarts its vLLM after kill -9 mid-batch, and every custom_id comes out once', async () => {
    const port = await getPort();
    // Held in a constant too, as the disruption below runs in a closure (and afterAll stops `worker`).
    const own = await spawnGpuWorker(stack, `http://127.0.0.1:${port}`, ownEngine(port, undefined));
    worker = own;
    const count = 160;
    const content = lines(
      ...Array.from({ length: count }, (_, i) =>
        line(`req-${i}`, '/v1/chat/completions', {
          model,
          messages: [{ role: 'user', content: `question ${i}` }],
          max_tokens: 16,
          ignore_eos: true,
        }),
      ),
    );
    const batch = await runDisruptedBatch(
      stack,
      content,
      { after: 30, afterTimeoutMs: 240_000, timeoutMs: 600_000 },
      async () => {
        const server = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
          .split('\n')
          .find((l) => l.includes('vllm.entrypoints.openai.api_server') && l.includes(`--port ${port}`));
        const pid = Number(/^\s*(\d+)/.exec(server ?? '')?.[1]);
        expect(pid).toBeGreaterThan(0);
        const mark = own.output().length;
        process.kill(pid, 'SIGKILL');
        await own.waitFor('restarted', 30_000, mark);
        // Its engine core (a process of its own) went with it: nothing of its group holds memory or the port.
        // A zombie holds neither (it waits only for init to reap it); a process still running would.
        const running = (): string[] =>
          execFileSync('ps', ['-eo', 'pgid=,stat=,args='], { encoding: 'utf8' })
            .split('\n')
            .map((l) => /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(l))
            .filter((m): m is RegExpExecArray => m !== null && Number(m[1]) === pid && !(m[2] ?? '').startsWith('Z'))
            .map((m) => m[0]);
        const deadline = Date.now() + 10_000;
        while (running().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
        expect(running()).toEqual([]);
      },
    );
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(stack.openai, batch, count);
  }, 900_000);
});
