// The Temporal server goes away mid-batch and comes back (same SQLite file): workers reconnect
// and the batch completes with every line exactly once.
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { parseTemporalDevConfig, type TemporalDevConfig } from '../../dev/temporal-dev-config.js';
import { startTemporalDevServer, type DevServer } from '../../dev/temporal-dev-server.js';
import { createLogger } from '../../lib/logger.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, runDisruptedBatch } from '../support/batches.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('a Temporal server restarted mid-batch', () => {
  let dir: string;
  let devConfig: TemporalDevConfig;
  let server: DevServer;
  let stack: TestStack;
  let engine: RunningSimulator;
  const log = createLogger('temporal-restart', { level: 'warn', format: 'json' });
  const cli = inject('services').temporalCliPath;
  const model = 'restart-model';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'temporal-restart-'));
    await chmod(dir, 0o755);
    devConfig = {
      ...parseTemporalDevConfig(await readFile('temporal-dev.yaml', 'utf8'), process.cwd()),
      port: await getPort(),
      httpPort: await getPort(),
      metricsPort: await getPort(),
      headless: true,
      dbFile: path.join(dir, 'temporal.db'),
    };
    server = await startTemporalDevServer(cli, devConfig, log, { attempts: 3 });
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 12.5, outputTokens: { min: 40, max: 40 } });
    stack = await startTestStack({
      temporalAddress: server.address,
      engines: [engine.url],
      env: { GPU_MAX_INFLIGHT: '8' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await server.stop();
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('completes the batch once the server is back', async () => {
    const count = 400;
    const batch = await runDisruptedBatch(
      stack,
      batchLines({ model, count }),
      { after: 80, timeoutMs: 180_000 },
      async () => {
        await server.stop();
        await new Promise((r) => setTimeout(r, 3000));
        server = await startTemporalDevServer(cli, devConfig, log, { attempts: 3 });
      },
    );
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(stack.openai, batch, count);
  }, 240_000);
});
