import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { parseTemporalDevConfig, type TemporalDevConfig } from '../../dev/temporal-dev-config.js';
import { startTemporalDevServer, waitForTemporal, type DevServer } from '../../dev/temporal-dev-server.js';
import { createLogger } from '../../lib/logger.js';

// A dev server's ports are chosen before they are bound, and a process starting beside it can take
// one in between: the test run's own start lost that race once in CI.
describe('starting the Temporal dev server when a port it wants is taken', () => {
  const log = createLogger('temporal-dev-server', { level: 'silent', format: 'json' });
  const cli = inject('services').temporalCliPath;
  let squatter: Server;
  let taken: number;
  let base: TemporalDevConfig;
  const started: DevServer[] = [];

  beforeAll(async () => {
    // It only holds the port: whoever connects (the start's readiness probe) is let go at once.
    squatter = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const address = squatter.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    taken = address.port;
    base = {
      ...parseTemporalDevConfig(await readFile('temporal-dev.yaml', 'utf8'), process.cwd()),
      port: taken,
      httpPort: await getPort(),
      metricsPort: await getPort(),
      headless: true,
      dbFile: undefined,
    };
  });
  afterAll(async () => {
    for (const server of started) await server.stop();
    await new Promise((resolve) => squatter.close(resolve));
  });

  it('starts again on fresh ports and answers there', async () => {
    let reassigned = 0;
    // More than two: the server's own internal ports (matching, history) are picked free and bound
    // later, and another process of the run can take one in between, as CI saw once.
    const server = await startTemporalDevServer(cli, base, log, {
      attempts: 4,
      reassignPorts: async (config) => {
        reassigned++;
        return { ...config, port: await getPort() };
      },
    });
    started.push(server);
    expect(reassigned).toBeGreaterThanOrEqual(1);
    expect(server.address).not.toBe(`127.0.0.1:${taken}`);
    await waitForTemporal(server.address, 5000);
  }, 120_000);

  it('gives up after its attempts with the reason the server gave', async () => {
    await expect(startTemporalDevServer(cli, base, log, { attempts: 2 })).rejects.toThrow(/address already in use/);
  }, 120_000);
});
