// The cluster tier (`npm run test:cluster`): one production-shaped Temporal cluster for the run,
// which the main global setup (run after this one) then uses through TEMPORAL_ADDRESS. With
// TEMPORAL_ADDRESS already set, the tier runs against that cluster instead.
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { startTestCluster } from '../support/cluster.js';

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.TEMPORAL_ADDRESS !== undefined && process.env.TEMPORAL_ADDRESS.trim() !== '') return undefined;
  const started = Date.now();
  const log = createLogger(
    'test-cluster',
    loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' }).log,
  );
  const cluster = await startTestCluster(log);
  process.env.TEMPORAL_ADDRESS = cluster.address;
  log.info({ address: cluster.address, ms: Date.now() - started }, 'test Temporal cluster ready');
  return async () => {
    delete process.env.TEMPORAL_ADDRESS;
    await cluster.stop();
  };
}
