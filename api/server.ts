// The API process: `npm run api`.
import { databaseUrl, loadConfig } from '../lib/config.js';
import { loadCurationSchemas } from '../lib/curation-schema.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createFileStore } from '../lib/file-store.js';
import { listen, type HttpServer } from '../lib/http-server.js';
import { labelStudioClient } from '../lib/label-studio.js';
import { createLogger } from '../lib/logger.js';
import { lazyClient } from '../lib/temporal.js';
import { dbOptions, openDatabase } from '../schema/db.js';
import { createApp } from './app.js';
import type { ApiDeps } from './deps.js';
import { sweepExpiredFiles } from './services/files.js';
import { seedKeys } from './services/keys.js';
import {
  sweepExpiredKeys,
  sweepGoneWorkers,
  sweepOldBatches,
  sweepOldDeadLetters,
  sweepPartialWrites,
} from './services/retention.js';
import { sweepOldDeliveries } from './services/webhooks.js';

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/**
 * What has outlived its retention is removed in the background, by every API process (each step is
 * idempotent, so replicas sweeping at once do no harm): expired files, old batches, dead letters,
 * idempotency keys and webhook deliveries, unfinished writes, GPU workers long gone.
 */
function startSweeper(deps: ApiDeps): () => void {
  const steps: [string, () => Promise<number>][] = [
    ['files', () => sweepExpiredFiles(deps)],
    ['batches', () => sweepOldBatches(deps)],
    ['deadLetters', () => sweepOldDeadLetters(deps)],
    ['idempotencyKeys', () => sweepExpiredKeys(deps)],
    ['webhookDeliveries', () => sweepOldDeliveries(deps)],
    ['partialWrites', () => sweepPartialWrites(deps)],
    ['goneWorkers', () => sweepGoneWorkers(deps)],
  ];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const sweep = async (): Promise<void> => {
    const swept: Record<string, number> = {};
    for (const [name, step] of steps) {
      // One step failing (the store away, say) does not keep the others from running.
      try {
        const n = await step();
        if (n > 0) swept[name] = n;
      } catch (err) {
        deps.log.warn({ err: (err as Error).message, step: name }, 'sweep step failed; will try again');
      }
    }
    if (Object.keys(swept).length > 0) deps.log.info(swept, 'swept expired data');
  };
  const run = (): void => {
    void sweep().finally(() => {
      if (!stopped) timer = setTimeout(run, deps.config.api.sweepIntervalMs);
    });
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export async function startApiServer(deps: ApiDeps, at: { host: string; port: number }): Promise<RunningApi> {
  await seedKeys(deps, deps.config.api.seedKeys);
  const app = createApp(deps);
  const stopSweeper = startSweeper(deps);
  let server: HttpServer;
  try {
    server = await listen(app.fetch, at, {
      idleTimeoutMs: deps.config.api.idleTimeoutMs,
      onError: (err) => {
        deps.log.error({ err }, 'the HTTP server failed');
      },
    });
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
    // Neither a database nor a Temporal that is away ends the process: it waits for the database it
    // cannot work without, and answers 503 for what needs Temporal until Temporal is back.
    const db = await openDatabase(databaseUrl(config), { ...dbOptions(config), log });
    const temporal = lazyClient(config);
    const store = createFileStore(config);
    const registry = loadCurationSchemas(config.curation.schemasDir);
    const labelStudio = labelStudioClient(config);
    const api = await startApiServer(
      { config, db, store, temporal, log, registry, labelStudio },
      { host: config.host, port: config.api.port },
    );
    log.info({ url: `${api.url}/v1` }, 'API ready');
    onShutdown(async () => {
      await api.close();
      await labelStudio?.close();
      await temporal.connection.close();
      await db.destroy();
    }, log);
  });
}
