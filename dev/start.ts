// `npm start`: the whole stack on one machine. Postgres (embedded unless DATABASE_URL), the Temporal
// dev server with its Web UI (unless TEMPORAL_ADDRESS), the vLLM simulator (unless VLLM_BASE_URL, or
// real vLLM on the CPU with `--with-vllm`),
// the API, an orchestrator worker and one GPU worker, each its own process, restarted if it dies.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';

import { WEBHOOK_PATH } from '../api/routes/curation.js';
import { databaseUrl, loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { Supervisor, supervisorOptions } from '../lib/supervisor.js';
import { assertPortFree, ensureLabelStudio, labelStudioCommand, waitForLabelStudio } from './label-studio-local.js';
import { httpOk, waitUntil } from './service-process.js';
import { cliOptions, resolveTemporalCli } from './temporal-cli.js';
import { devServerAddress, devServerUiUrl, readTemporalDevConfig, startDevArgs } from './temporal-dev-config.js';
import { logServerLine, prepareDevServer, waitForTemporal } from './temporal-dev-server.js';
import { ensureTinyModel, ensureVllm, TINY_MODEL_NAME } from './vllm-local.js';

const root = path.resolve(fileURLToPath(new URL('..', import.meta.url)));

async function waitForModels(url: string, apiKey: string, timeoutMs: number): Promise<string[]> {
  let models: string[] = [];
  await waitUntil('a GPU worker', timeoutMs, async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${apiKey}` }, signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { data?: { id: string }[] };
    models = (body.data ?? []).map((m) => m.id);
    return models.length > 0;
  });
  return models;
}

async function postgresUp(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000, query_timeout: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The local Label Studio's token and webhook secret, made once and kept with its data. */
async function localSecret(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const secret = randomBytes(24).toString('hex');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** `--with-label-studio`: a local Label Studio, installed on first use, wired to the stack. */
async function startLocalLabelStudio(
  config: Config,
  log: Logger,
  supervisor: Supervisor,
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const { version, port, user, password } = config.labelStudio.local;
  const binary = await ensureLabelStudio(config.paths.toolsDir, version, log);
  const dataDir = path.join(config.paths.dataDir, 'label-studio');
  const firstStart = !existsSync(path.join(dataDir, 'label_studio.sqlite3'));
  const token = await localSecret(path.join(config.paths.dataDir, 'label-studio.token'));
  await assertPortFree(port);
  const lsLog = createLogger('label-studio', config.log);
  supervisor.start({
    name: 'label-studio',
    ...labelStudioCommand({ binary, dataDir, port, user, password, token }),
    onLine: (line) => {
      lsLog.debug(line);
    },
  });
  if (firstStart) log.info('the first start of Label Studio sets up its database: about half a minute');
  const url = `http://127.0.0.1:${port}`;
  await waitForLabelStudio(url, config.dev.startTimeoutMs);
  Object.assign(env, {
    LABEL_STUDIO_URL: url,
    LABEL_STUDIO_API_KEY: token,
    CURATION_WEBHOOK_URL: `http://127.0.0.1:${config.api.port}${WEBHOOK_PATH}`,
    CURATION_WEBHOOK_SECRET: await localSecret(path.join(config.paths.dataDir, 'label-studio.webhook-secret')),
  });
  return url;
}

/**
 * `--with-vllm`: real vLLM on the CPU (installed into `.tools/` on first use, a few minutes), serving
 * a tiny random-weight model, supervised like every other part. Returns its URL.
 */
async function startLocalVllm(
  config: Config,
  log: Logger,
  start: (name: string, script: string, args: string[]) => void,
): Promise<string> {
  const { version, python, port, startTimeoutMs } = config.vllmLocal;
  await ensureVllm(config.paths.toolsDir, version, log, { python });
  await ensureTinyModel(config.paths.toolsDir, version, log);
  start('vllm', 'dev/vllm-local.ts', ['serve']);
  const url = `http://127.0.0.1:${port}`;
  log.info({ url }, 'starting real vLLM on the CPU (about a minute)');
  await waitUntil('vLLM', startTimeoutMs, () => httpOk(`${url}/health`));
  return url;
}

export async function startStack(
  config: Config,
  log: Logger,
  supervisor: Supervisor,
  options: { withLabelStudio?: boolean; withVllm?: boolean } = {},
): Promise<void> {
  const apiKeys = config.api.seedKeys.length > 0 ? config.api.seedKeys : [config.dev.apiKey];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_FORMAT: config.log.format,
    API_KEYS: apiKeys.join(','),
    // Everything here is on this machine, receivers of webhooks too; a deployment keeps the default.
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: process.env.WEBHOOK_ALLOW_PRIVATE_NETWORKS ?? 'true',
    // The simulator stands for vLLM as this project runs it (with --enable-prompt-tokens-details).
    SIM_ENABLE_PROMPT_TOKENS_DETAILS: process.env.SIM_ENABLE_PROMPT_TOKENS_DETAILS ?? 'true',
  };
  const node = (name: string, script: string, args: string[] = []): void => {
    supervisor.start({
      name,
      command: process.execPath,
      args: ['--import', 'tsx', path.join(root, script), ...args],
      env,
      // The IPC channel lets a child notice when `npm start` itself is gone.
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  };
  const timeout = config.dev.startTimeoutMs;

  try {
    if (config.database.url === undefined) {
      node('postgres', 'dev/embedded-postgres.ts');
      await waitUntil('Postgres', timeout, () => postgresUp(databaseUrl(config)));
    }
    env.DATABASE_URL = databaseUrl(config);

    let temporalUi: string | undefined;
    if (config.temporal.address === undefined) {
      const cli = await resolveTemporalCli(cliOptions(config, log));
      const devConfig = readTemporalDevConfig(config.temporal.devConfigPath);
      const temporalLog = createLogger('temporal', config.log);
      await prepareDevServer(devConfig);
      supervisor.start({
        name: 'temporal',
        command: cli.path,
        args: startDevArgs(devConfig),
        env: process.env,
        onLine: (line) => {
          logServerLine(temporalLog, line);
        },
      });
      env.TEMPORAL_ADDRESS = devServerAddress(devConfig);
      await waitForTemporal(env.TEMPORAL_ADDRESS, timeout);
      temporalUi = devServerUiUrl(devConfig);
    }

    let labelStudio = config.labelStudio.url;
    if (options.withLabelStudio === true && labelStudio === undefined)
      labelStudio = await startLocalLabelStudio(config, log, supervisor, env);

    let engine = config.engine.baseUrl;
    if (engine === undefined && options.withVllm === true) {
      engine = await startLocalVllm(config, log, node);
      env.VLLM_BASE_URL = engine;
      // It runs 8 sequences at once (dev/vllm-local.ts): twice that in flight keeps it full without
      // a long queue of requests waiting inside it toward their timeout.
      env.GPU_MAX_INFLIGHT = process.env.GPU_MAX_INFLIGHT ?? '16';
    }
    if (engine === undefined) {
      node('vllm-sim', 'simulator/main.ts');
      engine = `http://127.0.0.1:${config.simulator.port}`;
      await waitUntil('the vLLM simulator', timeout, () => httpOk(`${engine}/health`));
      env.VLLM_BASE_URL = engine;
    }

    node('orchestrator', 'workers/orchestrator.ts');
    node(`gpu-worker-${config.gpu.index}`, 'workers/gpu.ts');
    node('import-worker', 'workers/import.ts');
    node('api', 'api/server.ts');
    const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
    const apiUrl = `http://${host.includes(':') ? `[${host}]` : host}:${config.api.port}`;
    await waitUntil('the API', timeout, () => httpOk(`${apiUrl}/openapi.json`));
    // Up means usable: a batch sent now must find its model served.
    const models = await waitForModels(`${apiUrl}/v1/models`, apiKeys[0] ?? '', timeout).catch(() => []);
    if (models.length === 0)
      log.warn('no GPU worker has registered a model yet; batches will fail validation until one does');

    const lines = [
      '',
      'The stack is up.',
      `  API           ${apiUrl}/v1   (Authorization: Bearer ${apiKeys[0] ?? ''})`,
      `  OpenAPI       ${apiUrl}/openapi.json`,
      `  Models        ${models.join(', ') || '(none yet)'}`,
      `  Metrics       ${apiUrl}/metrics (API); workers on ports ${config.metrics.orchestratorPort} (orchestrator), ${config.metrics.gpuPort} (GPU worker), ${config.metrics.importPort} (import)`,
      `  Temporal UI   ${temporalUi ?? `(external cluster at ${config.temporal.address ?? '?'}: use its own UI)`}`,
      labelStudio === undefined
        ? '  Label Studio  not used (npm start -- --with-label-studio runs one; or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)'
        : `  Label Studio  ${labelStudio}${options.withLabelStudio === true && config.labelStudio.url === undefined ? `   (curators log in as ${config.labelStudio.local.user} / ${config.labelStudio.local.password})` : ''}`,
      config.engine.baseUrl !== undefined
        ? `  Engine        vLLM at ${engine}`
        : options.withVllm === true
          ? `  Engine        REAL vLLM ${config.vllmLocal.version} on the CPU at ${engine}, serving the tiny random-weight model "${TINY_MODEL_NAME}" (real vLLM behaviour; its words are noise)`
          : `  Engine        SIMULATED vLLM at ${engine}: outputs are simulated, not from a model (npm start -- --with-vllm runs real vLLM; or set VLLM_BASE_URL)`,
      '  Press Ctrl-C to stop everything.',
      '',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (err) {
    await supervisor.stopAll();
    throw err;
  }
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig({ LOG_FORMAT: 'pretty', ...process.env });
    const log = createLogger('stack', config.log);
    const supervisor = new Supervisor(supervisorOptions(config, log));
    onShutdown(() => supervisor.stopAll(), log);
    const { values } = parseArgs({
      options: {
        'with-label-studio': { type: 'boolean', default: false },
        'with-vllm': { type: 'boolean', default: false },
      },
    });
    await startStack(config, log, supervisor, {
      withLabelStudio: values['with-label-studio'],
      withVllm: values['with-vllm'],
    });
  });
}
