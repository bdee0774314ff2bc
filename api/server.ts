// The API process: `npm run api`.
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { databaseUrl, loadConfig } from '../lib/config.js';
import { openDatabase } from '../lib/db.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore } from '../lib/file-store.js';
import { createLogger } from '../lib/logger.js';
import { connectClient } from '../lib/temporal.js';
import { createApp, type ApiDeps } from './app.js';
import { seedKeys } from './keys.js';

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

export async function startApiServer(deps: ApiDeps, listen: { host: string; port: number }): Promise<RunningApi> {
  await seedKeys(deps.db, deps.config.api.seedKeys);
  const app = createApp(deps);
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
    const api = await startApiServer({ config, db, store, temporal, log }, { host: config.host, port: config.api.port });
    log.info({ url: `${api.url}/v1` }, 'API ready');
    onShutdown(async () => {
      await api.close();
      await temporal.connection.close();
      await db.destroy();
    }, log);
  });
}
