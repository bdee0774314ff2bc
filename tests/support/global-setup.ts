// Brings up the real services once per `npm test`: the Temporal dev server (the same CLI and
// temporal-dev.yaml as `npm start`, on free ports and in memory; or the server at TEMPORAL_ADDRESS), embedded Postgres, the vLLM
// simulator, Label Studio's template and a MinIO server for the S3 file store. It also bundles the workflows once, so each test's worker starts fast.
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

import { writeWorkflowBundle } from '../../dev/bundle-workflows.js';
import { startEmbeddedPostgres } from '../../dev/embedded-postgres.js';
import { ensureLabelStudio, ensureTemplate } from '../../dev/label-studio-local.js';
import { minioOptions, resolveMinio, startMinio } from '../../dev/minio.js';
import { cliOptions, resolveTemporalCli } from '../../dev/temporal-cli.js';
import { parseTemporalDevConfig, type TemporalDevConfig } from '../../dev/temporal-dev-config.js';
import { startTemporalDevServer, waitForTemporal } from '../../dev/temporal-dev-server.js';
import { ensureTemporalTestServer } from '../../dev/temporal-test-server.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { startSimulator } from '../../simulator/server.js';
import { LS_PASSWORD, LS_TOKEN, LS_USER } from './label-studio-credentials.js';
import { servicePort } from './ports.js';
import { MINIO_CREDENTIALS, type SharedServices } from './services.js';
import { FAST_SIM } from './simulator.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const log = createLogger('test-services', config.log);
  const tmpDir = await mkdtemp(path.join(tmpdir(), 'gpu-batch-test-'));
  // Postgres runs as its own user when the tests run as root; it must be able to reach its folder.
  await chmod(tmpDir, 0o755);
  const cleanups: (() => Promise<void>)[] = [() => rm(tmpDir, { recursive: true, force: true })];
  const teardown = async (): Promise<void> => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };

  try {
    const cli = await resolveTemporalCli(cliOptions(config, log));
    const yaml = await readFile(config.temporal.devConfigPath, 'utf8');
    const parsedDevConfig = parseTemporalDevConfig(yaml, path.dirname(config.temporal.devConfigPath));
    const withFreePorts = async (): Promise<TemporalDevConfig> => ({
      ...parsedDevConfig,
      port: await servicePort(),
      httpPort: await servicePort(),
      metricsPort: await servicePort(),
      // With its Web UI: the UI test looks at batches there as an operator would.
      uiPort: await servicePort(),
      headless: false,
      dbFile: undefined,
    });
    const devConfig = await withFreePorts();
    // Label Studio: installed once into the tools folder, and a data folder migrated once (half a
    // minute) that each test file copies instead of migrating again.
    const labelStudioBinary = await ensureLabelStudio(config.paths.toolsDir, config.labelStudio.local.version, log);
    const labelStudioTemplate = path.join(
      config.paths.toolsDir,
      `label-studio-${config.labelStudio.local.version}`,
      'test-template',
    );
    const minioBinary = await resolveMinio(minioOptions(config, log));
    // TEMPORAL_ADDRESS runs the tests against that server (a cluster: `npm run test:cluster`) instead of a dev server.
    const external = config.temporal.address;
    const starting = await Promise.allSettled([
      external === undefined
        ? startTemporalDevServer(cli.path, devConfig, log, {
            attempts: config.dev.startAttempts,
            reassignPorts: withFreePorts,
          })
        : waitForTemporal(external, 30_000).then(() => ({
            address: external,
            uiUrl: process.env.TEMPORAL_UI_URL,
            stop: () => Promise.resolve(),
          })),
      startEmbeddedPostgres({
        dataDir: path.join(tmpDir, 'postgres'),
        port: await servicePort(),
        database: 'postgres',
        log,
        durable: false,
      }),
      startSimulator(FAST_SIM, { host: '127.0.0.1', port: 0 }),
      writeWorkflowBundle(path.join(tmpDir, 'workflow-bundle.js')),
      ensureTemplate(
        labelStudioTemplate,
        { binary: labelStudioBinary, port: await servicePort(), user: LS_USER, password: LS_PASSWORD, token: LS_TOKEN },
        log,
      ),
      startMinio(
        {
          binary: minioBinary.path,
          dataDir: path.join(tmpDir, 'minio'),
          port: await servicePort(),
          ...MINIO_CREDENTIALS,
        },
        log,
      ),
      // The workflow unit tests' time-skipping server: installed here once, not by each test file at once.
      ensureTemporalTestServer(config.paths.toolsDir, log),
    ] as const);
    // Whatever did start is stopped again at teardown, even if something else failed to.
    const [temporalStart, postgresStart, simulatorStart, bundleStart, labelStudioStart, minioStart] = starting;
    if (temporalStart.status === 'fulfilled') cleanups.push(() => temporalStart.value.stop());
    if (postgresStart.status === 'fulfilled') cleanups.push(() => postgresStart.value.stop());
    if (simulatorStart.status === 'fulfilled') cleanups.push(() => simulatorStart.value.close());
    if (minioStart.status === 'fulfilled') cleanups.push(() => minioStart.value.stop());
    for (const result of starting) if (result.status === 'rejected') throw result.reason;
    if (
      temporalStart.status !== 'fulfilled' ||
      postgresStart.status !== 'fulfilled' ||
      simulatorStart.status !== 'fulfilled' ||
      bundleStart.status !== 'fulfilled' ||
      labelStudioStart.status !== 'fulfilled' ||
      minioStart.status !== 'fulfilled'
    ) {
      throw new Error('a test service did not start');
    }
    const temporal = temporalStart.value;
    const postgres = postgresStart.value;
    const simulator = simulatorStart.value;
    const workflowBundlePath = path.join(tmpDir, 'workflow-bundle.js');

    const services: SharedServices = {
      temporalAddress: temporal.address,
      temporalExternal: external !== undefined,
      temporalCliPath: cli.path,
      temporalUiUrl: temporal.uiUrl,
      postgresServerUrl: postgres.serverUrl,
      simulatorUrl: simulator.url,
      simulatorModel: FAST_SIM.models[0] ?? 'sim-test',
      workflowBundlePath,
      tmpDir,
      labelStudio: { binary: labelStudioBinary, template: labelStudioTemplate },
      s3: { endpoint: minioStart.value.endpoint, ...MINIO_CREDENTIALS },
    };
    project.provide('services', services);
    log.info({ ms: Date.now() - started, temporal: temporal.address }, 'test services ready');
  } catch (err) {
    await teardown();
    throw err;
  }
  return teardown;
}
