// Prefix-aware planning through the whole stack: a file whose lines take turns between a few system
// prompts reaches the engine a prompt at a time, and comes back in input order with the cached tokens
// in its usage.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { progressQuery } from '../../workflows/messages.js';
import { batchLines, expectEachLineOnce, runBatch } from '../support/batches.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/**
 * Stands in front of an engine and notes the system prompt of each request as it arrives, in order:
 * what the engine's prefix cache sees. Requests with the `refused` prompt are answered 401, as an
 * engine that does not take this worker's key would.
 */
async function recordingProxy(
  target: string,
): Promise<{ url: string; arrivals: string[]; refused: { prompt?: string }; close: () => Promise<void> }> {
  const arrivals: string[] = [];
  const refused: { prompt?: string } = {};
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const body = Buffer.concat(parts);
      if (req.method === 'POST' && req.url?.startsWith('/v1/') === true) {
        const parsed = JSON.parse(body.toString('utf8')) as { messages?: { content?: string }[] };
        const prompt = parsed.messages?.[0]?.content ?? '';
        arrivals.push(prompt);
        if (prompt === refused.prompt) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'Unauthorized' }));
          return;
        }
      }
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers))
        if (typeof value === 'string' && name !== 'host' && name !== 'content-length') headers.set(name, value);
      fetch(`${target}${req.url ?? '/'}`, {
        method: req.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
      })
        .then(async (answer) => {
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await answer.arrayBuffer()));
        })
        .catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    refused,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}

const PROMPTS = ['billing', 'travel', 'medicine', 'law'].map((topic) =>
  `You answer questions about ${topic}, politely and in full sentences. `.repeat(8),
);
/** A fixed shuffle of the lines between the prompts (no two neighbours need share one). */
const promptOf = (i: number): number => (i * 7 + ((i * i) % 5)) % PROMPTS.length;

function shuffledLines(model: string, count: number): string {
  return batchLines({
    model,
    count,
    body: (i) => ({
      model,
      messages: [
        { role: 'system', content: PROMPTS[promptOf(i)] },
        { role: 'user', content: `Question number ${i}` },
      ],
      max_tokens: 8,
    }),
  });
}

/** How often consecutive requests had different system prompts. */
function switches(arrivals: string[]): number {
  return arrivals.filter((p, i) => i > 0 && p !== arrivals[i - 1]).length;
}

describe('prefix-aware planning', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  const model = 'prefix-model';

  beforeAll(async () => {
    engine = await startTestSimulator({ models: [model], enablePromptTokensDetails: true, tokenLatencyMs: 1 });
    proxy = await recordingProxy(engine.url);
    stack = await startTestStack({
      engines: [proxy.url],
      env: {
        GPU_MAX_INFLIGHT: '8',
        BATCH_CHUNK_SIZE: '50',
        // Bodies as written, so the proxy reads each line's own messages.
        ENGINE_BATCH_PRIORITY: '0',
        ENGINE_RETRY_BUDGET_MS: '400',
        CHUNK_MAX_ATTEMPTS: '2',
      },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await proxy.close();
    await engine.close();
  });

  // 100 lines a prompt: two chunks of 50 each; 20 a prompt: two prompts one after the other in a chunk.
  it.each([400, 80])(
    'sends the lines of each system prompt together, and answers in input order with cached tokens in usage (%i lines)',
    async (count) => {
      // In file order, nearly every request would follow one with another prompt.
      const inFileOrder = Array.from({ length: count }, (_, i) => PROMPTS[promptOf(i)] ?? '');
      expect(switches(inFileOrder)).toBeGreaterThan(count / 2);

      proxy.arrivals.length = 0;
      const batch = await runBatch(stack, shuffledLines(model, count));
      expect(batch.status).toBe('completed');
      expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
      const outputs = await expectEachLineOnce(stack.openai, batch, count);

      // Each chunk holds one prompt's lines; two chunks share the engine at a time, so a prompt changes
      // about once per chunk of 50, not at nearly every request.
      expect(proxy.arrivals).toHaveLength(count);
      expect(switches(proxy.arrivals)).toBeLessThan(count / 10);

      // The engine's prefix cache served each prompt after its first requests, and usage says so.
      const cached = outputs.ok.map((l) => {
        const usage = l.response?.body.usage as { prompt_tokens_details?: { cached_tokens?: number } } | undefined;
        return usage?.prompt_tokens_details?.cached_tokens ?? 0;
      });
      expect(cached.filter((n) => n > 0).length).toBeGreaterThan(count * 0.9);
      expect(batch.usage?.input_tokens_details.cached_tokens).toBe(cached.reduce((a, b) => a + b, 0));
      // The plan, as the Temporal UI's Queries tab shows it: each prompt's lines planned apart.
      const progress = await stack.temporal.workflow.getHandle(batch.id).query(progressQuery);
      expect(progress.prefixGroups).toEqual(PROMPTS.map(() => count / PROMPTS.length));
    },
  );

  it('dead-letters only the grouped chunks that keep failing, and only their own lines', async () => {
    // Every request with the first prompt is refused: its chunks fail each attempt and are dead-lettered;
    // the chunks of the other prompts, whose lines lie between theirs, run.
    const count = 400;
    proxy.refused.prompt = PROMPTS[0];
    try {
      const batch = await runBatch(stack, shuffledLines(model, count), 120_000);
      expect(batch.status).toBe('completed');
      const refusedLines = Array.from({ length: count }, (_, i) => i).filter((i) => promptOf(i) === 0);
      expect(batch.request_counts).toEqual({
        total: count,
        completed: count - refusedLines.length,
        failed: refusedLines.length,
      });
      const { failed } = await expectEachLineOnce(stack.openai, batch, count);
      expect(failed.map((l) => l.custom_id).sort()).toEqual(refusedLines.map((i) => `req-${i}`).sort());
      expect(new Set(failed.map((l) => l.error?.code))).toEqual(new Set(['chunk_failed']));
      const letters = await stack.db
        .selectFrom('dead_letters')
        .select('line')
        .where('batch_id', '=', batch.id)
        .execute();
      expect(letters).toHaveLength(refusedLines.length);
      const progress = await stack.temporal.workflow.getHandle(batch.id).query(progressQuery);
      // The first prompt's 100 lines are two chunks of 50; every other chunk completed.
      expect(progress.chunks.deadLettered).toBe(2);
      expect(progress.chunks.done).toBe(progress.chunks.total);
      expect(progress).toMatchObject({ completed: count - refusedLines.length, failed: refusedLines.length });
    } finally {
      delete proxy.refused.prompt;
    }
  });
});
