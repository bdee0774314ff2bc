// `npm start` as a user runs it: every process of the stack comes up on real services, a batch
// submitted with the official SDK completes and is visible in Temporal with its search attributes,
// a killed worker is restarted, and Ctrl-C stops everything.
import { execFileSync } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BatchStatusKey } from '../../workflows/search-attributes.js';
import { batchLines, uploadBatchFile, waitForBatch } from '../support/batches.js';
import { alive, childrenOf, startDevStack, type DevStack, type DevStackPorts } from '../support/dev-stack.js';

describe('npm start', () => {
  let dev: DevStack;
  let ports: DevStackPorts;
  let output = '';

  beforeAll(async () => {
    dev = await startDevStack();
    ports = dev.ports;
    output = dev.output();
  });

  afterAll(async () => {
    await dev.destroy();
  });

  it('prints where the API and the Temporal UI are, and that outputs are simulated', () => {
    expect(output).toContain(`API           http://127.0.0.1:${ports.api}/v1   (Authorization: Bearer sk-local)`);
    expect(output).toContain(`Temporal UI   http://127.0.0.1:${ports.ui}`);
    expect(output).toMatch(/SIMULATED vLLM/);
  });

  it('runs a batch from the openai SDK to completion, visible in Temporal with its search attributes', async () => {
    const openai = new OpenAI({ baseURL: `http://127.0.0.1:${ports.api}/v1`, apiKey: 'sk-local', maxRetries: 0 });
    expect((await openai.models.list()).data.map((m) => m.id)).toEqual(['sim-llama-8b']);
    const file = await uploadBatchFile(openai, batchLines({ model: 'sim-llama-8b', count: 40 }));
    const created = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const batch = await waitForBatch(openai, created.id);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 40, completed: 40, failed: 0 });

    const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    try {
      const handle = new Client({ connection }).workflow.getHandle(created.id);
      await handle.result();
      const description = await handle.describe();
      expect(description.type).toBe('BatchWorkflow');
      expect(description.typedSearchAttributes.get(BatchStatusKey)).toBe('completed');
    } finally {
      await connection.close();
    }
    expect((await fetch(`http://127.0.0.1:${ports.ui}/`)).status).toBe(200);
  });

  it('serves metrics, health and readiness from the API and every worker', async () => {
    for (const port of [ports.api, ports.orchestrator, ports.gpu, ports.importer]) {
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      const body = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean }> };
      expect(ready.status, JSON.stringify(body)).toBe(200);
      expect(Object.keys(body.checks)).toEqual(expect.arrayContaining(['database', 'temporal', 'file_store']));
      expect(await (await fetch(`${base}/metrics`)).text()).toContain('process_resident_memory_bytes');
    }
    // The GPU worker also checks its engine, and has counted the batch the test before ran.
    const gpuReady = (await (await fetch(`http://127.0.0.1:${ports.gpu}/readyz`)).json()) as {
      checks: Record<string, { ok: boolean }>;
    };
    expect(gpuReady.checks.engine?.ok).toBe(true);
    expect(await (await fetch(`http://127.0.0.1:${ports.gpu}/metrics`)).text()).toMatch(
      /gpu_batch_requests_total\{model="sim-llama-8b",outcome="completed"\} 40/,
    );
    expect(output).toContain(`Metrics       http://127.0.0.1:${ports.api}/metrics`);
  });

  it('restarts a GPU worker killed with SIGKILL, and keeps serving batches', async () => {
    const gpu = childrenOf(dev.process.pid!).find((c) => c.args.includes('workers/gpu.ts'));
    expect(gpu).toBeDefined();
    const mark = dev.output().length;
    process.kill(gpu!.pid, 'SIGKILL');
    await dev.waitForOutput('gpu-worker-0 restarted', 30_000, mark);
    await dev.waitForOutput('GPU worker ready', 60_000, mark);

    const openai = new OpenAI({ baseURL: `http://127.0.0.1:${ports.api}/v1`, apiKey: 'sk-local', maxRetries: 0 });
    const file = await uploadBatchFile(openai, batchLines({ model: 'sim-llama-8b', count: 20 }));
    const created = await openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    expect((await waitForBatch(openai, created.id)).status).toBe('completed');
  });

  it('stops every process on Ctrl-C', async () => {
    const children = childrenOf(dev.process.pid!);
    const commands = children.map((c) => c.args).join('\n');
    for (const part of [
      'dev/embedded-postgres.ts',
      'temporal server start-dev',
      'simulator/main.ts',
      'workers/orchestrator.ts',
      'workers/gpu.ts',
      'api/server.ts',
    ]) {
      expect(commands).toContain(part);
    }
    const exited = new Promise<number | null>((resolve) =>
      dev.process.once('exit', (code) => {
        resolve(code);
      }),
    );
    dev.process.kill('SIGINT');
    expect(await exited).toBe(0);
    // Orphans are reaped by init a moment after their parent exits.
    for (let i = 0; i < 50 && children.some((c) => alive(c.pid)); i++) await new Promise((r) => setTimeout(r, 100));
    expect(children.filter((c) => alive(c.pid)).map((c) => c.args)).toEqual([]);
    // Postgres itself is a grandchild: it must be gone too.
    const leftovers = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(dev.dir));
    expect(leftovers).toEqual([]);
  });
});
