// The deployment of the README's "Deploying across many GPU hosts", on one machine: two API replicas,
// two orchestrators and two GPU hosts (each its engine and its GPU worker), every one a network
// namespace of its own, sharing nothing but Temporal (a cluster), Postgres and the S3 store (MinIO),
// which listen on the network's bridge. A GPU host is lost mid-batch (its processes killed, its link
// taken down): its chunks move to the other host and the batch completes with every custom_id once.
// Then the host comes back and takes work again.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/embedded-postgres.js';
import { ensureBucket, minioOptions, resolveMinio, startMinio, type RunningMinio } from '../../dev/minio.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { batchLines, expectEveryLineDone, waitForBatch, waitForProgress } from '../support/batches.js';
import { startTestCluster, type TestCluster } from '../support/cluster.js';
import { canMakeHosts, createTestNetwork, type TestHost, type TestNetwork } from '../support/netns.js';
import { spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { MINIO_CREDENTIALS } from '../support/services.js';
import { TEST_ENV } from '../support/stack.js';

const MODEL = 'hosts-model';
const API_PORT = 8080;
const ENGINE_PORT = 8000;
const GPU_METRICS_PORT = 9470;
const API_KEY = 'sk-hosts-test';

/** An engine's count of requests it finished, from its Prometheus metrics. */
async function engineRequests(host: TestHost): Promise<number> {
  const text = await fetch(`http://${host.address}:${ENGINE_PORT}/metrics`, { signal: AbortSignal.timeout(5000) }).then(
    (r) => r.text(),
  );
  let sum = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('vllm:request_success_total')) sum += Number(line.split(' ').at(-1));
  return sum;
}

describe('API, orchestrator and GPU hosts on a network, sharing only Temporal, Postgres and S3', () => {
  const log = createLogger('hosts', { level: 'warn', format: 'json' });
  let dir: string;
  let network: TestNetwork;
  let cluster: TestCluster;
  let postgres: RunningPostgres;
  let minio: RunningMinio;
  const hosts = new Map<string, TestHost>();
  const processes = new Map<string, ChildUnderTest[]>();
  let env: Record<string, string>;
  const apis: OpenAI[] = [];
  // What beforeAll made, undone in reverse order even when it failed halfway.
  const cleanups: (() => Promise<void>)[] = [];

  const start = (host: TestHost, script: string, extra: Record<string, string> = {}): ChildUnderTest => {
    const child = spawnEntry(script, { ...env, ...extra }, { prefix: host.exec });
    processes.set(host.name, [...(processes.get(host.name) ?? []), child]);
    return child;
  };
  const startGpuHost = async (host: TestHost): Promise<void> => {
    // About 150 ms a request (15 tokens of 10 ms), 16 in flight per GPU.
    const engine = start(host, 'simulator/main.ts', {
      SIM_PORT: String(ENGINE_PORT),
      HOST: '0.0.0.0',
      SIM_MODELS: MODEL,
      SIM_TOKEN_LATENCY_MS: '10',
      SIM_OUTPUT_TOKENS: '15-15',
    });
    await engine.waitFor('vLLM simulator ready');
    const worker = start(host, 'workers/gpu.ts', {
      VLLM_BASE_URL: `http://127.0.0.1:${ENGINE_PORT}`,
      GPU_METRICS_PORT: String(GPU_METRICS_PORT),
      METRICS_HOST: '0.0.0.0',
      GPU_MAX_INFLIGHT: '16',
    });
    await worker.waitFor('GPU worker ready');
  };

  beforeAll(async () => {
    if (!(await canMakeHosts()))
      throw new Error('this test makes network namespaces: it needs root and iproute2 (`ip netns`)');
    dir = await mkdtemp(path.join(tmpdir(), 'hosts-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await chmod(dir, 0o755);
    network = await createTestNetwork();
    cleanups.push(() => network.destroy());
    cluster = await startTestCluster(log, { ip: network.address });
    cleanups.push(() => cluster.stop());
    postgres = await startEmbeddedPostgres({
      dataDir: path.join(dir, 'postgres'),
      port: await getPort(),
      database: 'batch',
      log,
      durable: false,
      network: { listen: network.address, clients: network.cidr },
    });
    cleanups.push(() => postgres.stop());
    const minioBinary = await resolveMinio(minioOptions(loadConfig(), log));
    minio = await startMinio(
      {
        binary: minioBinary.path,
        dataDir: path.join(dir, 'minio'),
        host: network.address,
        port: await getPort(),
        ...MINIO_CREDENTIALS,
      },
      log,
    );
    cleanups.push(() => minio.stop());
    const s3 = minio.client();
    await ensureBucket(s3, 'hosts');
    s3.destroy();
    const pgUrl = new URL(postgres.url);
    pgUrl.hostname = network.address;
    env = {
      ...TEST_ENV,
      DATABASE_URL: pgUrl.toString(),
      TEMPORAL_ADDRESS: cluster.address,
      FILE_STORE: 's3',
      S3_BUCKET: 'hosts',
      S3_ENDPOINT: minio.endpoint,
      S3_ACCESS_KEY_ID: MINIO_CREDENTIALS.accessKeyId,
      S3_SECRET_ACCESS_KEY: MINIO_CREDENTIALS.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
      WORKFLOW_BUNDLE_PATH: inject('services').workflowBundlePath,
      API_KEYS: API_KEY,
      BATCH_CHUNK_SIZE: '50',
    };
    for (const name of ['api-a', 'api-b', 'orch-a', 'orch-b', 'gpu-a', 'gpu-b'])
      hosts.set(name, await network.addHost(name));
    const host = (name: string): TestHost => hosts.get(name) as TestHost;
    const ready: Promise<void>[] = [];
    for (const name of ['api-a', 'api-b']) {
      ready.push(
        start(host(name), 'api/server.ts', { HOST: '0.0.0.0', API_PORT: String(API_PORT) }).waitFor('API ready'),
      );
      apis.push(new OpenAI({ baseURL: `http://${host(name).address}:${API_PORT}/v1`, apiKey: API_KEY, maxRetries: 0 }));
    }
    for (const name of ['orch-a', 'orch-b'])
      ready.push(start(host(name), 'workers/orchestrator.ts').waitFor('orchestrator worker ready'));
    ready.push(startGpuHost(host('gpu-a')), startGpuHost(host('gpu-b')));
    await Promise.all(ready);
  }, 600_000);

  afterAll(async () => {
    for (const list of processes.values()) await Promise.all(list.map((p) => p.kill9()));
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });

  it('completes a batch exactly once when a GPU host is lost mid-batch, and the host takes work again when back', async () => {
    const gpuA = hosts.get('gpu-a') as TestHost;
    const gpuB = hosts.get('gpu-b') as TestHost;
    const [apiA, apiB] = apis as [OpenAI, OpenAI];
    const count = 1200;

    // Submitted through one API replica, watched through the other.
    const file = await apiA.files.create({
      file: new File([batchLines({ model: MODEL, count })], 'input.jsonl'),
      purpose: 'batch',
    });
    const created = await apiA.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    await waitForProgress(apiB, created.id, 200, 180_000);
    // Both hosts have been working on it.
    expect(await engineRequests(gpuA)).toBeGreaterThan(0);
    expect(await engineRequests(gpuB)).toBeGreaterThan(0);

    // Lose host B: every process killed, its link down.
    for (const p of processes.get('gpu-b') ?? []) await p.kill9();
    processes.set('gpu-b', []);
    await gpuB.linkDown();
    const lostAt = Date.now();
    const atLoss = await apiB.batches.retrieve(created.id);
    const doneAtLoss = (atLoss.request_counts?.completed ?? 0) + (atLoss.request_counts?.failed ?? 0);

    const batch = await waitForBatch(apiB, created.id, 300_000);
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(apiA, batch, count);
    const answeredByA = await engineRequests(gpuA);
    console.log(
      `hosts: host B lost at ${doneAtLoss} of ${count}; the batch completed ${Math.round((Date.now() - lostAt) / 1000)} s later, host A's engine answered ${answeredByA}`,
    );
    // Host A did what host B had not finished: at least every request after the loss.
    expect(answeredByA).toBeGreaterThanOrEqual(count - doneAtLoss);

    // Host B comes back (a fresh engine, a fresh GPU worker) and takes work from the next batch.
    await gpuB.linkUp();
    await startGpuHost(gpuB);
    const second = await apiB.batches.create({
      input_file_id: (
        await apiB.files.create({
          file: new File([batchLines({ model: MODEL, count: 600 })], 'again.jsonl'),
          purpose: 'batch',
        })
      ).id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
    });
    const again = await waitForBatch(apiA, second.id, 300_000);
    await expectEveryLineDone(apiB, again, 600);
    expect(await engineRequests(gpuB)).toBeGreaterThan(0);
  }, 900_000);
});
