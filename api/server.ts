// The API process: `npm run api`.
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { databaseUrl, loadConfig } from '../lib/config.js';
import { openDatabase } from '../lib/db.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore } from '../lib/file-store.js';
import { nowSeconds } from '../lib/ids.js';
import { loadCurationSchemas } from '../lib/curation.js';
import { labelStudioClient } from '../lib/label-studio.js';
import { createLogger } from '../lib/logger.js';
import { connectClient } from '../lib/temporal.js';
import { createApp, type ApiDeps } from './app.js';
import { sweepExpiredFiles } from './files.js';
import { seedKeys } from './keys.js';

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/** Expired files and idempotency keys are removed in the background, by every API process. */
function startSweeper(deps: ApiDeps): () => void {
  const sweep = async (): Promise<void> => {
    const files = await sweepExpiredFiles(deps);
    const keys = await deps.db.deleteFrom('idempotency_keys').where('created_at', '<', nowSeconds() - deps.config.api.idempotencyTtlSeconds).executeTakeFirst();
    if (files > 0 || keys.numDeletedRows > 0n) deps.log.info({ files, idempotencyKeys: Number(keys.numDeletedRows) }, 'swept expired data');
  };
  const run = (): void => {
    sweep().catch((err: unknown) => { deps.log.warn({ err }, 'sweep failed; will try again'); });
  };
  run();
  const timer = setInterval(run, deps.config.api.sweepIntervalMs);
  return () => { clearInterval(timer); };
}

export async function startApiServer(deps: ApiDeps, listen: { host: string; port: number }): Promise<RunningApi> {
  await seedKeys(deps.db, deps.config.api.seedKeys);
  const app = createApp(deps);
  const stopSweeper = startSweeper(deps);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: listen.host, port: listen.port }, () => { resolve(s); });
    s.once('error', reject);
  });
  // A 200 MB upload or download takes a while; Node's default request timeout would cut it off.
  if ('requestTimeout' in server) server.requestTimeout = 0;
  const { port } = server.address() as AddressInfo;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        stopSweeper();
        if ('closeIdleConnections' in server) server.closeIdleConnections();
        server.close(() => { resolve(); });
      }),
  };
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('api', config.log);
    const db = await openDatabase(databaseUrl(config), config.database.poolSize);
    const temporal = await connectClient(config);
    const store = createFileStore(config.paths.fileStoreDir);
    const registry = loadCurationSchemas(config.curation.schemasDir);
    const labelStudio = labelStudioClient(config);
    const api = await startApiServer({ config, db, store, temporal, log, registry, labelStudio }, { host: config.host, port: config.api.port });
    log.info({ url: `${api.url}/v1` }, 'API ready');
    onShutdown(async () => {
      await api.close();
      await labelStudio?.close();
      await temporal.connection.close();
      await db.destroy();
    }, log);
  });
}
