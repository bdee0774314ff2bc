// The API process: `npm run api`.
import { databaseUrl, loadConfig } from '../lib/config.js';
import { openDatabase } from '../lib/db.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore } from '../lib/file-store.js';
import { listen, type HttpServer } from '../lib/http-server.js';
import { loadCurationSchemas } from '../lib/curation.js';
import { labelStudioClient } from '../lib/label-studio.js';
import { createLogger } from '../lib/logger.js';
import { connectClient } from '../lib/temporal.js';
import { createApp, type ApiDeps } from './app.js';
import { sweepExpiredFiles } from './files.js';
import { sweepExpiredKeys } from './idempotency.js';
import { sweepOldDeliveries } from './webhooks.js';
import { seedKeys } from './keys.js';

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/** Expired files, idempotency keys and old webhook deliveries are removed in the background, by every API process. */
function startSweeper(deps: ApiDeps): () => void {
  const sweep = async (): Promise<void> => {
    const files = await sweepExpiredFiles(deps);
    const idempotencyKeys = await sweepExpiredKeys(deps.db, deps.config.api.idempotencyTtlSeconds);
    const webhookDeliveries = await sweepOldDeliveries(deps.db, deps.config);
    if (files > 0 || idempotencyKeys > 0 || webhookDeliveries > 0) deps.log.info({ files, idempotencyKeys, webhookDeliveries }, 'swept expired data');
  };
  const run = (): void => {
    sweep().catch((err: unknown) => { deps.log.warn({ err }, 'sweep failed; will try again'); });
  };
  run();
  const timer = setInterval(run, deps.config.api.sweepIntervalMs);
  return () => { clearInterval(timer); };
}

export async function startApiServer(deps: ApiDeps, at: { host: string; port: number }): Promise<RunningApi> {
  await seedKeys(deps.db, deps.config.api.seedKeys);
  const app = createApp(deps);
  const stopSweeper = startSweeper(deps);
  let server: HttpServer;
  try {
    server = await listen(app.fetch, at);
  } catch (err) {
    stopSweeper();
    throw err;
  }
  return {
    url: server.url,
    close: async () => {
      stopSweeper();
      await server.close();
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('api', config.log);
    const db = await openDatabase(databaseUrl(config), config.database.poolSize);
    const temporal = await connectClient(config);
    const store = createFileStore(config);
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
