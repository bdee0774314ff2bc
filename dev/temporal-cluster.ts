// `npm run temporal:cluster`: a production-shaped Temporal cluster on this machine, as
// deploy/temporal-cluster.yaml describes it. The server is built from source through the Go module
// proxy (go.temporal.io/server, cached in the tools folder), its SQL tool applies the Postgres schemas
// to an embedded Postgres, and frontend, history, matching and worker run as four processes, so a
// test can kill one of them; the Web UI server fronts the frontend. `... install` only builds.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { Connection, isGrpcServiceError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';

import { loadConfig, type Config } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { registerSearchAttributes } from '../lib/temporal.js';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { ensureDatabase, startEmbeddedPostgres, type RunningPostgres } from './embedded-postgres.js';
import { resolveGoTool, type GoTool } from './go-tool.js';
import { httpOk, startHttpService, waitUntil, type HttpService } from './service-process.js';
import {
  CLUSTER_SERVICES,
  clusterAddress,
  clusterUiUrl,
  dynamicConfigFile,
  metricsUrl,
  PERSISTENCE_DATABASES,
  readTemporalClusterConfig,
  serverConfigFile,
  uiConfigFile,
  type ClusterPostgres,
  type ClusterService,
  type TemporalClusterConfig,
} from './temporal-cluster-config.js';
import { stopProcess, waitForTemporal } from './temporal-dev-server.js';

const SERVER_MODULE = 'go.temporal.io/server/cmd/server';
const SQL_TOOL_MODULE = 'go.temporal.io/server/cmd/tools/sql';
const UI_MODULE = 'github.com/temporalio/ui-server/v2/cmd/server';
const GRPC_NOT_FOUND = 5;

function notFound(what: string, module: string, variable: string) {
  return (detail: string): Error =>
    new Error(
      `No ${what} could be found or built (${detail}).\n` +
        `Set ${variable}, or install Go (https://go.dev/dl) so it can be built with \`go install ${module}@<version>\` ` +
        '(the server asks for a newer Go than some machines have: TEMPORAL_SERVER_GOTOOLCHAIN=auto fetches it through the module proxy).',
    );
}

function serverTool(config: Config): GoTool {
  return {
    binary: 'server',
    cacheName: 'temporal-server',
    module: SERVER_MODULE,
    alsoBuild: [SQL_TOOL_MODULE],
    buildEnv: { GOTOOLCHAIN: config.temporalCluster.goToolchain },
    // `server` on PATH is anybody's program.
    skipPath: true,
    notFound: notFound('Temporal server build', SERVER_MODULE, 'TEMPORAL_SERVER_PATH'),
  };
}

function uiTool(config: Config): GoTool {
  return {
    binary: 'server',
    cacheName: 'temporal-ui-server',
    module: UI_MODULE,
    buildEnv: { GOTOOLCHAIN: config.temporalCluster.goToolchain },
    skipPath: true,
    notFound: notFound(
      'Temporal Web UI server',
      UI_MODULE,
      'TEMPORAL_UI_SERVER_VERSION to a version the module proxy serves',
    ),
  };
}

export interface TemporalServerBuild {
  /** The server (`server start --service=...`). */
  server: string;
  /** Its SQL schema tool, built beside it. */
  sqlTool: string;
  /** The Web UI server, when asked for. */
  ui?: string;
}

/**
 * The server and its SQL tool, and the Web UI server unless `headless`: cached builds, or built now
 * (five to six minutes once).
 */
export async function resolveTemporalServer(
  config: Config,
  log: Logger,
  options: { headless?: boolean } = {},
): Promise<TemporalServerBuild> {
  const { serverPath, serverVersion, uiVersion } = config.temporalCluster;
  const server = await resolveGoTool(serverTool(config), {
    configuredPath: serverPath === undefined ? undefined : path.join(serverPath, 'server'),
    configuredName: 'TEMPORAL_SERVER_PATH',
    toolsDir: config.paths.toolsDir,
    version: serverVersion,
    log,
  });
  const build: TemporalServerBuild = { server: server.path, sqlTool: path.join(path.dirname(server.path), 'sql') };
  if (options.headless !== true) {
    const ui = await resolveGoTool(uiTool(config), {
      configuredPath: undefined,
      configuredName: 'TEMPORAL_UI_SERVER_VERSION',
      toolsDir: config.paths.toolsDir,
      version: uiVersion,
      log,
    });
    build.ui = ui.path;
  }
  return build;
}

export interface RunningCluster {
  address: string;
  uiUrl: string | undefined;
  postgres: RunningPostgres;
  /** The service's process, while it runs. */
  process(service: ClusterService): ChildProcess | undefined;
  /** Kills one service's process (SIGKILL unless told otherwise) and waits until it has exited. */
  kill(service: ClusterService, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a service again after `kill`. */
  start(service: ClusterService): void;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  build: TemporalServerBuild;
  cluster: TemporalClusterConfig;
  log: Logger;
  startTimeoutMs: number;
  /** How long a service (or the UI) may take to stop after SIGTERM before it is killed. */
  stopGraceMs: number;
  /** Tests trade Postgres's crash safety for speed. */
  durable?: boolean;
  /** Start no Web UI server. */
  headless?: boolean;
}

/** Whether something accepts TCP connections there (a gRPC server listens only once its service has started). */
function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.once('connect', () => {
      done(true);
    });
    socket.once('error', () => {
      done(false);
    });
    socket.once('timeout', () => {
      done(false);
    });
  });
}

/** Spawns with stdout and stderr appended to the log file (the child keeps its own copy of the descriptor). */
function spawnLogged(command: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(command, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

async function run(command: string, args: string[], logFile: string, timeoutMs: number): Promise<void> {
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawnLogged(command, args, logFile);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(command)} ${args.at(-3) ?? ''} took over ${timeoutMs} ms; see ${logFile}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  if (code !== 0) throw new Error(`${path.basename(command)} ${args.at(-3) ?? ''} exited with ${code}; see ${logFile}`);
}

/** Creates the two databases if missing and brings their schemas to the build's version (idempotent). */
async function applySchemas(
  sqlTool: string,
  postgres: RunningPostgres,
  pg: ClusterPostgres,
  logFile: string,
  left: () => number,
) {
  for (const [kind, database] of Object.entries(PERSISTENCE_DATABASES)) {
    await ensureDatabase(postgres.serverUrl, database);
    const endpoint = [
      '--plugin',
      'postgres12',
      '--ep',
      pg.host,
      '-p',
      String(pg.port),
      '-u',
      pg.user,
      '--pw',
      pg.password,
    ];
    const schema = `postgresql/v12/${kind === 'default' ? 'temporal' : 'visibility'}`;
    await run(sqlTool, [...endpoint, '--db', database, 'setup-schema', '-v', '0.0'], logFile, left());
    await run(sqlTool, [...endpoint, '--db', database, 'update-schema', '--schema-name', schema], logFile, left());
  }
}

async function ensureNamespaces(address: string, cluster: TemporalClusterConfig, deadline: number, log: Logger) {
  const connection = await Connection.connect({ address, connectTimeout: 5000 });
  try {
    // Every call within the start's one deadline, so a server that hangs cannot hang the start.
    const call = <T>(fn: () => Promise<T>): Promise<T> => connection.withDeadline(deadline, fn);
    for (const namespace of cluster.namespaces) {
      try {
        await call(() => connection.workflowService.describeNamespace({ namespace }));
      } catch (err) {
        if (!isGrpcServiceError(err)) throw err;
        const code: number = err.code;
        if (code !== GRPC_NOT_FOUND) throw err;
        await call(() =>
          connection.workflowService.registerNamespace({
            namespace,
            workflowExecutionRetentionPeriod: msToTs(`${cluster.retentionDays} days`),
          }),
        );
        log.info({ namespace }, 'registered namespace');
      }
      // A new namespace is known to every service only after their caches refresh.
      await waitUntil(`the search attributes of namespace ${namespace}`, deadline - Date.now(), async () => {
        await call(() => registerSearchAttributes(connection, namespace, ALL_SEARCH_ATTRIBUTES));
        return true;
      });
    }
  } finally {
    await connection.close();
  }
}

export async function startTemporalCluster(options: ClusterOptions): Promise<RunningCluster> {
  const { cluster, build, log } = options;
  // One bound for the whole start, each step given what is left of it.
  const deadline = Date.now() + options.startTimeoutMs;
  const left = (): number => Math.max(0, deadline - Date.now());
  const configDir = path.join(cluster.dataDir, 'config');
  const logDir = path.join(cluster.dataDir, 'logs');
  await mkdir(configDir, { recursive: true });
  await mkdir(logDir, { recursive: true });
  const postgres = await startEmbeddedPostgres({
    dataDir: path.join(cluster.dataDir, 'postgres'),
    port: cluster.ports.postgres,
    database: PERSISTENCE_DATABASES.default,
    log,
    durable: options.durable ?? true,
  });
  const children = new Map<ClusterService, ChildProcess>();
  const started = new Set<ClusterService>();
  let ui: HttpService | undefined;
  const stop = async (): Promise<void> => {
    await ui?.stop();
    await Promise.all([...children.values()].map((c) => stopProcess(c, options.stopGraceMs)));
    children.clear();
    await postgres.stop();
  };
  try {
    const url = new URL(postgres.serverUrl);
    const pg: ClusterPostgres = {
      host: url.hostname,
      port: Number(url.port),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    };
    await applySchemas(build.sqlTool, postgres, pg, path.join(logDir, 'schema.log'), left);
    const dynamicConfigPath = path.join(configDir, 'dynamicconfig.yaml');
    await writeFile(dynamicConfigPath, dynamicConfigFile(cluster));
    for (const service of CLUSTER_SERVICES)
      await writeFile(
        path.join(configDir, `${service}.yaml`),
        serverConfigFile(cluster, service, pg, dynamicConfigPath),
      );

    const start = (service: ClusterService): void => {
      const logFile = path.join(logDir, `${service}.log`);
      const child = spawnLogged(
        build.server,
        ['--config-file', path.join(configDir, `${service}.yaml`), '--allow-no-auth', 'start', '--service', service],
        logFile,
      );
      child.on('error', (err) => {
        if (children.get(service) === child) children.delete(service);
        log.error({ service, err: err.message }, 'Temporal service could not start');
      });
      child.on('exit', (code, signal) => {
        if (children.get(service) === child) children.delete(service);
        log.info({ service, code, signal, log: logFile }, 'Temporal service exited');
      });
      children.set(service, child);
      started.add(service);
    };
    // Each service writes the cluster's metadata when it finds none, and on a new database the ones
    // that lose that race exit: one service first, until it serves, then the other three.
    const first: ClusterService = 'history';
    const rest = CLUSTER_SERVICES.filter((s) => s !== first);
    start(first);
    await waitUntil(
      `Temporal ${first} service`,
      left(),
      () => tcpOpen(cluster.ip, cluster.ports[first]),
      () => !children.has(first),
    );
    for (const service of rest) start(service);
    const address = clusterAddress(cluster);
    const someExited = (): boolean => children.size < CLUSTER_SERVICES.length;
    await waitForTemporal(address, left(), someExited);
    // The frontend answering says nothing of the others: each serves its metrics once it has started.
    for (const service of CLUSTER_SERVICES)
      await waitUntil(`Temporal ${service} service`, left(), () => httpOk(metricsUrl(cluster, service)), someExited);
    await ensureNamespaces(address, cluster, deadline, log);

    const uiUrl = options.headless === true ? undefined : clusterUiUrl(cluster);
    if (uiUrl !== undefined) {
      if (build.ui === undefined)
        throw new Error('the cluster has a Web UI port but no Web UI server build was resolved');
      const uiDir = path.join(cluster.dataDir, 'ui');
      await mkdir(path.join(uiDir, 'config'), { recursive: true });
      await writeFile(path.join(uiDir, 'config', 'cluster.yaml'), uiConfigFile(cluster));
      ui = await startHttpService({
        name: 'Temporal Web UI',
        command: build.ui,
        args: ['--root', uiDir, '--config', 'config', '--env', 'cluster', 'start'],
        env: process.env,
        healthUrl: `${uiUrl}/healthz`,
        timeoutMs: left(),
        stopGraceMs: options.stopGraceMs,
      });
    }
    return {
      address,
      uiUrl,
      postgres,
      process: (service) => children.get(service),
      kill: async (service, signal = 'SIGKILL') => {
        const child = children.get(service);
        if (child === undefined) return;
        if (signal === 'SIGTERM') {
          await stopProcess(child, options.stopGraceMs);
          return;
        }
        const exited = new Promise<void>((resolve) => {
          child.once('exit', () => {
            resolve();
          });
        });
        child.kill(signal);
        await exited;
      },
      start: (service) => {
        if (!children.has(service)) start(service);
      },
      stop,
    };
  } catch (err) {
    const exited = CLUSTER_SERVICES.filter((service) => started.has(service) && !children.has(service));
    await stop();
    if (exited.length === 0) throw err;
    // What the services said is why; their logs are in a folder the caller may remove.
    const said = await Promise.all(
      exited.map(async (service) => {
        const text = await readFile(path.join(logDir, `${service}.log`), 'utf8').catch(() => '');
        // The reason is in its fatal line or its last words, not in the stack traces between.
        const lines = text.split('\n').filter((l) => /"level":"fatal"|^Unable to|error/i.test(l));
        return `--- ${service}:\n${lines
          .slice(-3)
          .map((l) => l.slice(0, 1500))
          .join('\n')}`;
      }),
    );
    throw new Error(`Temporal services exited while the cluster started: ${exited.join(', ')}\n${said.join('\n')}`, {
      cause: err,
    });
  }
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('temporal-cluster', config.log);
    const build = await resolveTemporalServer(config, log);
    if (process.argv[2] === 'install') {
      log.info(build, 'Temporal server, SQL tool and Web UI server ready');
      return;
    }
    const cluster = readTemporalClusterConfig(config.temporalCluster.configPath);
    const running = await startTemporalCluster({
      build,
      cluster,
      log,
      startTimeoutMs: config.temporalCluster.startTimeoutMs,
      stopGraceMs: config.temporalCluster.stopGraceMs,
    });
    log.info(
      {
        address: running.address,
        ui: running.uiUrl,
        shards: cluster.numHistoryShards,
        logs: path.join(cluster.dataDir, 'logs'),
      },
      `Temporal cluster ready: point the stack at it with TEMPORAL_ADDRESS=${running.address}`,
    );
    onShutdown(() => running.stop(), log);
  });
}
