// deploy/temporal-cluster.yaml is the declarative description of the production-shaped cluster that
// `npm run temporal:cluster` runs; this module turns it into the server's own config files (one per
// service process, alike but for the metrics port) and its dynamic config.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';

export const CLUSTER_SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;
export type ClusterService = (typeof CLUSTER_SERVICES)[number];

const port = z.number().int().min(0).max(65535);

function perService([frontend, history, matching, worker]: [number, number, number, number], max = 65_535) {
  const p = port.max(max);
  return z
    .object({
      frontend: p.default(frontend),
      history: p.default(history),
      matching: p.default(matching),
      worker: p.default(worker),
    })
    .strict()
    .prefault({});
}

const clusterConfigSchema = z
  .object({
    ip: z.string().default('127.0.0.1'),
    numHistoryShards: z.number().int().min(1).max(16_384).default(4),
    /** Relative to the YAML file: the Postgres cluster, the generated config, the services' logs. */
    dataDir: z.string().default('../.data/temporal-cluster'),
    ports: z
      .object({
        frontend: port.default(7233),
        frontendHttp: port.default(7243),
        history: port.default(7234),
        matching: port.default(7235),
        worker: port.default(7239),
        /** Each service's ringpop membership port: below 32,768, as the server stores it in a smallint column. */
        membership: perService([6933, 6934, 6935, 6939], 32_767),
        /** Each service's Prometheus metrics port. */
        metrics: perService([7940, 7941, 7942, 7943]),
        postgres: port.default(5434),
        /** 0: no Web UI. */
        ui: port.default(8233),
      })
      .strict()
      .prefault({}),
    namespaces: z.array(z.string().min(1)).default(['default']),
    retentionDays: z.number().int().min(1).default(1),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('warn'),
    dynamicConfig: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export type TemporalClusterConfig = z.infer<typeof clusterConfigSchema>;

export function parseTemporalClusterConfig(
  text: string,
  baseDir: string,
  source = 'temporal-cluster.yaml',
): TemporalClusterConfig {
  const result = clusterConfigSchema.safeParse(parse(text) ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new Error(`${source} is invalid:\n${problems}`);
  }
  return { ...result.data, dataDir: path.resolve(baseDir, result.data.dataDir) };
}

export function readTemporalClusterConfig(file: string): TemporalClusterConfig {
  return parseTemporalClusterConfig(readFileSync(file, 'utf8'), path.dirname(file), file);
}

export function clusterAddress(config: TemporalClusterConfig): string {
  return `${config.ip}:${config.ports.frontend}`;
}

export function clusterUiUrl(config: TemporalClusterConfig): string | undefined {
  return config.ports.ui === 0 ? undefined : `http://${config.ip}:${config.ports.ui}`;
}

export interface ClusterPostgres {
  host: string;
  port: number;
  user: string;
  password: string;
}

export const PERSISTENCE_DATABASES = { default: 'temporal', visibility: 'temporal_visibility' } as const;

/** Where a service serves its Prometheus metrics. */
export function metricsUrl(config: TemporalClusterConfig, service: ClusterService): string {
  return `http://${config.ip}:${config.ports.metrics[service]}/metrics`;
}

/** The server's config for one service's process (`server --config-file`). */
export function serverConfigFile(
  config: TemporalClusterConfig,
  service: ClusterService,
  postgres: ClusterPostgres,
  dynamicConfigFile: string,
): string {
  const datastore = (databaseName: string, maxConns: number): unknown => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `${postgres.host}:${postgres.port}`,
      connectProtocol: 'tcp',
      user: postgres.user,
      password: postgres.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const services = Object.fromEntries(
    CLUSTER_SERVICES.map((s) => [
      s,
      {
        rpc: {
          grpcPort: config.ports[s],
          membershipPort: config.ports.membership[s],
          bindOnIP: config.ip,
          ...(s === 'frontend' ? { httpPort: config.ports.frontendHttp } : {}),
        },
      },
    ]),
  );
  const file = {
    log: { stdout: true, level: config.logLevel },
    persistence: {
      defaultStore: 'default',
      visibilityStore: 'visibility',
      numHistoryShards: config.numHistoryShards,
      datastores: {
        default: datastore(PERSISTENCE_DATABASES.default, 20),
        visibility: datastore(PERSISTENCE_DATABASES.visibility, 10),
      },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: config.ip },
      metrics: {
        prometheus: {
          framework: 'tally',
          timerType: 'histogram',
          listenAddress: `${config.ip}:${config.ports.metrics[service]}`,
        },
      },
    },
    services,
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: {
        active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: clusterAddress(config) },
      },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: dynamicConfigFile, pollInterval: '10s' },
  };
  return stringify(file);
}

/** The dynamic config file: each key one value for the whole cluster, in the server's list form. */
export function dynamicConfigFile(config: TemporalClusterConfig): string {
  return stringify(
    Object.fromEntries(Object.entries(config.dynamicConfig).map(([key, value]) => [key, [{ value, constraints: {} }]])),
  );
}

/** The Web UI server's config (`ui-server --config <dir> --env <name> start`). */
export function uiConfigFile(config: TemporalClusterConfig): string {
  return stringify({
    temporalGrpcAddress: clusterAddress(config),
    host: config.ip,
    port: config.ports.ui,
    enableUi: true,
    defaultNamespace: config.namespaces[0] ?? 'default',
    cors: { cookieInsecure: true, allowOrigins: [`http://${config.ip}:${config.ports.ui}`] },
    notifyOnNewVersion: false,
    refreshInterval: '1m',
  });
}
