// The GPU worker as an operator runs it: its own vLLM (VLLM_COMMAND) pinned to its GPU and
// supervised, announcing its model while it lives, and a graceful stop on SIGTERM.
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, runBatch, runDisruptedBatch } from '../support/batches.js';
import { spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

function childPids(pid: number, pattern: string): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(pattern))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
  } catch {
    return [];
  }
}

async function modelIds(stack: TestStack): Promise<string[]> {
  return (await stack.openai.models.list()).data.map((m) => m.id);
}

describe('a GPU worker running its own engine', () => {
  let stack: TestStack;
  let dir: string;
  let worker: ChildUnderTest;
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'gpu-worker-'));
    await chmod(dir, 0o755);
    port = await getPort();
    stack = await startTestStack({ engines: [] });
    const simulator = `${process.execPath} --import tsx simulator/main.ts --port ${port} --served-model-name own-model --token-latency-ms 0.2 --output-tokens 4-8`;
    worker = await spawnGpuWorker(stack, `http://127.0.0.1:${port}`, {
      GPU_INDEX: '3',
      VLLM_COMMAND: `echo "$CUDA_VISIBLE_DEVICES" > ${dir}/cuda && exec ${simulator}`,
    });
  });
  afterAll(async () => {
    await worker.kill9();
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts it pinned to its GPU, waits for its health, and announces the model it serves', async () => {
    expect((await readFile(path.join(dir, 'cuda'), 'utf8')).trim()).toBe('3');
    expect(await modelIds(stack)).toEqual(['own-model']);
    const batch = await runBatch(stack, batchLines({ model: 'own-model', count: 30 }));
    expect(batch.request_counts).toEqual({ total: 30, completed: 30, failed: 0 });
  });

  it('restarts its engine when it dies', async () => {
    const [engine] = childPids(worker.child.pid!, 'simulator/main.ts');
    expect(engine).toBeDefined();
    const mark = worker.output().length;
    process.kill(engine!, 'SIGKILL');
    await worker.waitFor('restarted', 30_000, mark);
    const batch = await runBatch(stack, batchLines({ model: 'own-model', count: 30 }));
    expect(batch.status).toBe('completed');
    expect(batch.request_counts?.failed).toBe(0);
  });

  it('on SIGTERM withdraws its model, stops its engine and exits cleanly', async () => {
    const engines = childPids(worker.child.pid!, 'simulator/main.ts');
    expect(await worker.stop()).toBe(0);
    expect(await modelIds(stack)).toEqual([]);
    for (const pid of engines) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('a GPU worker stopped gracefully mid-batch', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  const workers: ChildUnderTest[] = [];
  const model = 'graceful-model';

  beforeAll(async () => {
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 12.5, outputTokens: { min: 40, max: 40 } });
    stack = await startTestStack({ engines: [] });
    for (const gpu of ['0', '1'])
      workers.push(await spawnGpuWorker(stack, engine.url, { GPU_INDEX: gpu, GPU_MAX_INFLIGHT: '8' }));
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.kill9()));
    await stack.stop();
    await engine.close();
  });

  it('hands its chunks over and the batch finishes with every line once', async () => {
    const count = 300;
    const batch = await runDisruptedBatch(
      stack,
      batchLines({ model, count }),
      { after: 50, timeoutMs: 120_000 },
      async () => {
        expect(await workers[0]!.stop()).toBe(0);
      },
    );
    await expectEveryLineDone(stack.openai, batch, count);
  });
});
