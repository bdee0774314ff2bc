// Postgres going away under load. The driver regression (postgres.js crashed the process when a
// backend was terminated under a pooled or a reserved connection, then hung): backends terminated,
// the server frozen and restarted, while every process keeps running, says 503 on /readyz while it
// must, recovers by itself, and the batch ends with every custom_id exactly once.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { sql } from 'kysely';
import OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/embedded-postgres.js';
import { createLogger } from '../../lib/logger.js';
import { createDb, type Db } from '../../schema/db.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, runDisruptedBatch } from '../support/batches.js';
import { spawnEntry, spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const log = createLogger('outage-pg', { level: 'warn', format: 'json' });

/** Ends every session of the database but the caller's: idle pooled ones and ones mid-transaction alike. */
async function terminateBackends(admin: pg.Client, database: string): Promise<number> {
  const { rows } = await admin.query<{ n: string }>(
    'select count(pg_terminate_backend(pid)) as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
    [database],
  );
  return Number(rows[0]?.n ?? 0);
}

describe('the database driver when backends die or hang', () => {
  let dir: string;
  let postgres: RunningPostgres;
  let admin: pg.Client;
  let db: Db;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'driver-'));
    await chmod(dir, 0o755);
    postgres = await startEmbeddedPostgres({
      dataDir: path.join(dir, 'pg'),
      port: await getPort(),
      database: 'driver',
      log,
      durable: false,
    });
    admin = new pg.Client({ connectionString: postgres.url });
    await admin.connect();
    db = createDb(postgres.url, { poolSize: 4, queryTimeoutMs: 500, connectTimeoutMs: 2000 });
  });
  afterAll(async () => {
    await db.destroy();
    await admin.end();
    await postgres.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('turns a terminated backend, pooled or reserved, into an error of that call and goes on', async () => {
    for (let round = 0; round < 30; round++) {
      // Some connections idle in the pool, some reserved by a transaction, some mid-query.
      const work = Array.from({ length: 8 }, (_, i) =>
        i % 2 === 0
          ? db.transaction().execute(async (trx) => {
              await sql`select pg_sleep(0.05)`.execute(trx);
              await sql`select 1`.execute(trx);
            })
          : sql`select pg_sleep(0.02)`.execute(db),
      );
      // Settled from the start: the calls cut off fail while this test is still waiting.
      const settled = Promise.allSettled(work);
      await new Promise((r) => setTimeout(r, 10 + (round % 5) * 7));
      await terminateBackends(admin, 'driver');
      await settled;
      // The process is still here (an uncaught error would fail this file) and the next call works.
      expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows[0]?.one).toBe(1);
    }
  });

  it('bounds every call: a runaway statement, and a server that stops answering', async () => {
    const started = Date.now();
    await expect(sql`select pg_sleep(10)`.execute(db)).rejects.toThrow(/statement timeout/);
    expect(Date.now() - started).toBeLessThan(3000);

    // Frozen, not gone: every process of the server stopped, connections open, nothing answers.
    const postmaster = Number(readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const server = [
      postmaster,
      ...execFileSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map(Number),
    ];
    for (const pid of server) process.kill(pid, 'SIGSTOP');
    const frozen = Date.now();
    try {
      await expect(sql`select 1`.execute(db)).rejects.toThrow();
      expect(Date.now() - frozen).toBeLessThan(10_000);
    } finally {
      for (const pid of server) process.kill(pid, 'SIGCONT');
    }
    expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows[0]?.one).toBe(1);
  });
});

describe('every process through Postgres outages during a batch', () => {
  let dir: string;
  let pgPort: number;
  let postgres: RunningPostgres;
  let admin: pg.Client;
  let stack: TestStack;
  /** The stack, with its SDK pointed at the API process. */
  let view: TestStack;
  let engine: RunningSimulator;
  let api: ChildUnderTest;
  let orchestrator: ChildUnderTest;
  let gpu: ChildUnderTest;
  let apiUrl: string;
  let gpuUrl: string;
  const model = 'outage-model';

  const startPostgres = (): Promise<RunningPostgres> =>
    startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: pgPort, database: 'postgres', log, durable: false });
  const readiness = async (url: string): Promise<number> => {
    try {
      return (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) })).status;
    } catch {
      return 0;
    }
  };
  const allAlive = (): void => {
    for (const p of [api, orchestrator, gpu]) expect(p.child.exitCode, p.output().slice(-2000)).toBeNull();
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'outage-'));
    await chmod(dir, 0o755);
    pgPort = await getPort();
    postgres = await startPostgres();
    // About 100 ms a request, 16 in flight: a 600-line batch runs for a few seconds, long enough to hit.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 10, outputTokens: { min: 10, max: 10 } });
    stack = await startTestStack({
      engines: [],
      noApi: true,
      noOrchestrator: true,
      noImportWorker: true,
      postgresServerUrl: postgres.serverUrl,
      env: { CHUNK_MAX_ATTEMPTS: '30', READY_TIMEOUT_MS: '1000' },
    });
    const env = {
      ...stack.processEnv(),
      READY_TIMEOUT_MS: '1000',
      DATABASE_QUERY_TIMEOUT_MS: '5000',
      DATABASE_CONNECT_TIMEOUT_MS: '2000',
      CHUNK_MAX_ATTEMPTS: '30',
    };
    const apiPort = await getPort();
    const gpuPort = await getPort();
    api = spawnEntry('api/server.ts', { ...env, API_PORT: String(apiPort), API_KEYS: stack.apiKey });
    orchestrator = spawnEntry('workers/orchestrator.ts', env);
    gpu = await spawnGpuWorker(stack, engine.url, {
      ...env,
      GPU_METRICS_PORT: String(gpuPort),
      GPU_MAX_INFLIGHT: '16',
    });
    await Promise.all([api.waitFor('API ready'), orchestrator.waitFor('orchestrator worker ready')]);
    apiUrl = `http://127.0.0.1:${apiPort}`;
    gpuUrl = `http://127.0.0.1:${gpuPort}`;
    view = { ...stack, openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 }) };
    admin = new pg.Client({ connectionString: `${postgres.serverUrl}/postgres` });
    admin.on('error', () => undefined);
    await admin.connect();
  });
  afterAll(async () => {
    await Promise.all([api.kill9(), orchestrator.kill9(), gpu.kill9()]);
    await admin.end().catch(() => undefined);
    await stack.stop();
    await engine.close();
    await postgres.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps running while backends are terminated again and again mid-batch, and loses nothing', async () => {
    const count = 600;
    const batch = await runDisruptedBatch(view, batchLines({ model, count }), { after: 50 }, async (created) => {
      let terminated = 0;
      while ((await view.openai.batches.retrieve(created.id).catch(() => undefined))?.status !== 'completed') {
        terminated += await terminateBackends(admin, stack.name);
        allAlive();
        await new Promise((r) => setTimeout(r, 400));
      }
      expect(terminated).toBeGreaterThan(10);
    });
    await expectEveryLineDone(view.openai, batch, count);
    allAlive();
  });

  it('says 503 while Postgres is down, keeps every process up, and finishes the batch once it is back', async () => {
    const count = 600;
    const batch = await runDisruptedBatch(
      view,
      batchLines({ model, count }),
      { after: 100, timeoutMs: 120_000 },
      async (created) => {
        await admin.end().catch(() => undefined);
        await postgres.stop();
        await new Promise((r) => setTimeout(r, 2000));
        expect(await readiness(apiUrl)).toBe(503);
        expect(await readiness(gpuUrl)).toBe(503);
        // The API answers, in OpenAI's shape, that it cannot serve this now.
        const down = await fetch(`${apiUrl}/v1/batches/${created.id}`, {
          headers: { authorization: `Bearer ${stack.apiKey}` },
        });
        expect(down.status).toBe(503);
        expect(((await down.json()) as { error: { code: string } }).error.code).toBe('service_unavailable');
        await new Promise((r) => setTimeout(r, 6000));
        allAlive();

        postgres = await startPostgres();
        admin = new pg.Client({ connectionString: `${postgres.serverUrl}/postgres` });
        admin.on('error', () => undefined);
        await admin.connect();
      },
    );
    await expectEveryLineDone(view.openai, batch, count);
    for (const url of [apiUrl, gpuUrl]) {
      const deadline = Date.now() + 30_000;
      while ((await readiness(url)) !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      expect(await readiness(url), url).toBe(200);
    }
    allAlive();
  });
});
