// A Temporal cluster of the tests' own: the server built from source (`npm run temporal:cluster`'s
// build), its four services as processes, on free ports, with a Postgres of its own in a folder
// that goes with it. The cluster tier's global setup runs one for the whole run; the cluster fault
// tests start their own, since they kill its services.
import { randomInt } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort, { portNumbers } from 'get-port';

import {
  CLUSTER_SERVICES,
  parseTemporalClusterConfig,
  type ClusterService,
} from '../../dev/temporal-cluster-config.js';
import { resolveTemporalServer, startTemporalCluster, type RunningCluster } from '../../dev/temporal-cluster.js';
import { loadConfig } from '../../lib/config.js';
import type { Logger } from '../../lib/logger.js';

export interface TestCluster extends RunningCluster {
  dataDir: string;
  /** The last lines of a service's log, for a failure message. */
  logTail(service: ClusterService): Promise<string>;
}

/** Free ports, one per service; membership ports must be below 32,768 (Temporal keeps them as a smallint). */
async function freePorts(below?: number): Promise<Record<ClusterService, number>> {
  const out: Partial<Record<ClusterService, number>> = {};
  for (const service of CLUSTER_SERVICES)
    // From a random point, so two test files picking at once do not both take the first free ones.
    out[service] = await getPort(
      below === undefined ? {} : { port: portNumbers(20_000 + randomInt(below - 21_000), below - 1) },
    );
  return out as Record<ClusterService, number>;
}

export async function startTestCluster(
  log: Logger,
  options: { numHistoryShards?: number; dynamicConfig?: Record<string, unknown>; ip?: string; ui?: boolean } = {},
): Promise<TestCluster> {
  const config = loadConfig();
  const build = await resolveTemporalServer(config, log, { headless: options.ui !== true });
  const described = parseTemporalClusterConfig(
    await readFile(config.temporalCluster.configPath, 'utf8'),
    path.dirname(config.temporalCluster.configPath),
  );
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gpu-batch-cluster-'));
  // Postgres runs as its own user when the tests run as root; it must be able to reach its folder.
  await chmod(dataDir, 0o755);
  const grpc = await freePorts();
  const cluster = {
    ...described,
    dataDir,
    ip: options.ip ?? described.ip,
    numHistoryShards: options.numHistoryShards ?? described.numHistoryShards,
    dynamicConfig: { ...described.dynamicConfig, ...options.dynamicConfig },
    ports: {
      ...grpc,
      frontendHttp: await getPort(),
      membership: await freePorts(32_768),
      metrics: await freePorts(),
      postgres: await getPort(),
      ui: options.ui === true ? await getPort() : 0,
    },
  };
  let running: RunningCluster;
  try {
    running = await startTemporalCluster({
      build,
      cluster,
      log,
      startTimeoutMs: config.temporalCluster.startTimeoutMs,
      stopGraceMs: config.temporalCluster.stopGraceMs,
      durable: false,
      headless: options.ui !== true,
    });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    ...running,
    dataDir,
    logTail: async (service) =>
      (await readFile(path.join(dataDir, 'logs', `${service}.log`), 'utf8').catch(() => '')).slice(-4000),
    stop: async () => {
      await running.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
