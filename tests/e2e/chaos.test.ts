// Chaos, against `npm start` as a user runs it: during one batch, processes of every kind are killed
// with SIGKILL — GPU worker, orchestrator, API, engine, the Temporal dev server, and Postgres (twice)
// — in a random order, one at a time (against a cluster, all but Temporal). After each kill the
// batch must move again within a bound (no stall), and in the end every custom_id is in the output
// exactly once and every process is ready.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { batchLines, expectEveryLineDone, uploadBatchFile } from '../support/batches.js';
import { onTheRunsCluster, startDevStack, type DevStack } from '../support/dev-stack.js';

/** What is killed, and how to find its process among the stack's. */
const VICTIMS: { kind: string; match: (args: string) => boolean }[] = [
  { kind: 'gpu-worker', match: (a) => a.includes('workers/gpu.ts') },
  { kind: 'orchestrator', match: (a) => a.includes('workers/orchestrator.ts') },
  { kind: 'api', match: (a) => a.includes('api/server.ts') },
  { kind: 'engine', match: (a) => a.includes('simulator/main.ts') },
  { kind: 'temporal', match: (a) => a.includes('temporal server start-dev') },
  // The database server itself (the postmaster), not the process that supervises it.
  { kind: 'postgres', match: (a) => /\/postgres\s+-D\s/.test(a) },
];

/** Progress must resume within this after a kill. */
const STALL_BOUND_MS = 150_000;

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('chaos during one batch', () => {
  let dev: DevStack;
  let openai: OpenAI;
  const count = 6000;

  beforeAll(async () => {
    // About 600 ms a request and 32 in flight: some two minutes of work, long enough for every kill.
    dev = await startDevStack({
      ...onTheRunsCluster(),
      SIM_TOKEN_LATENCY_MS: '25',
      SIM_OUTPUT_TOKENS: '16-20',
      GPU_MAX_INFLIGHT: '32',
      CHUNK_MAX_ATTEMPTS: '50',
      BATCH_CHUNK_SIZE: '100',
      WORKER_HEARTBEAT_MS: '2000',
    });
    openai = new OpenAI({
      baseURL: `http://127.0.0.1:${dev.ports.api}/v1`,
      apiKey: 'sk-local',
      maxRetries: 0,
      timeout: 10_000,
    });
  });
  afterAll(async () => {
    await dev.destroy();
  });

  /** The batch as the API says, or undefined while the API (or what it needs) is away. */
  const look = async (id: string): Promise<OpenAI.Batches.Batch | undefined> =>
    openai.batches.retrieve(id).catch(() => undefined);
  const done = (b: OpenAI.Batches.Batch | undefined): number =>
    b === undefined ? -1 : (b.request_counts?.completed ?? 0) + (b.request_counts?.failed ?? 0);

  it(
    'ends with every custom_id exactly once, never stalling, while every kind of process is killed',
    async () => {
      const file = await uploadBatchFile(
        openai,
        batchLines({
          model: 'sim-llama-8b',
          count,
          body: (i) => ({ model: 'sim-llama-8b', messages: [{ role: 'user', content: `chaos ${i}` }], max_tokens: 20 }),
        }),
      );
      const created = await openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
      });
      // Every kind once, Postgres twice, in a random (but reproducible) order. A run against a cluster
      // (TEMPORAL_ADDRESS) has no dev server to kill: tests/cluster/ kills the cluster's services.
      const postgres = VICTIMS.find((v) => v.kind === 'postgres') as (typeof VICTIMS)[number];
      const kinds = inject('services').temporalExternal ? VICTIMS.filter((v) => v.kind !== 'temporal') : VICTIMS;
      const plan = shuffled([...kinds, postgres], Date.now() % 1000);
      const killed: string[] = [];
      let last = -1;
      for (const victim of plan) {
        // Wait for the batch to move since the previous kill: that is the no-stall bound.
        const deadline = Date.now() + STALL_BOUND_MS;
        let now = await look(created.id);
        while (done(now) <= last && now?.status !== 'completed') {
          if (Date.now() > deadline)
            throw new Error(
              `no progress within ${STALL_BOUND_MS} ms after killing ${killed.at(-1) ?? 'nothing'} (at ${last} of ${count}):\n${dev.output().slice(-6000)}`,
            );
          await new Promise((r) => setTimeout(r, 500));
          now = await look(created.id);
        }
        if (now?.status === 'completed') break;
        last = done(now);
        const target = dev.descendants().find((p) => victim.match(p.args));
        if (target === undefined)
          throw new Error(
            `no ${victim.kind} process to kill among:\n${dev
              .descendants()
              .map((p) => p.args)
              .join('\n')}`,
          );
        process.kill(target.pid, 'SIGKILL');
        killed.push(victim.kind);
        console.log(`chaos: killed ${victim.kind} (pid ${target.pid}) at ${last} of ${count} requests`);
        await new Promise((r) => setTimeout(r, 3000));
      }
      // Every kill happened while the batch ran (else the batch is too short to test anything).
      expect(killed).toEqual(plan.map((v) => v.kind));

      // The end: within the bound after the last kill.
      const deadline = Date.now() + 5 * 60_000;
      let batch = await look(created.id);
      while (batch?.status !== 'completed') {
        if (Date.now() > deadline)
          throw new Error(
            `the batch did not end (last seen ${batch?.status ?? 'unreachable'} at ${done(batch)}):\n${dev.output().slice(-6000)}`,
          );
        await new Promise((r) => setTimeout(r, 1000));
        batch = await look(created.id);
      }
      await expectEveryLineDone(openai, batch, count);

      // Everything came back and is ready.
      for (const port of [dev.ports.api, dev.ports.orchestrator, dev.ports.gpu, dev.ports.importer]) {
        const until = Date.now() + 60_000;
        let status = 0;
        while (status !== 200 && Date.now() < until) {
          status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.status,
            () => 0,
          );
          if (status !== 200) await new Promise((r) => setTimeout(r, 500));
        }
        expect(status, `readiness on port ${port}`).toBe(200);
      }
    },
    20 * 60_000,
  );
});
