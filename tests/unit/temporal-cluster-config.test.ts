import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

import {
  CLUSTER_SERVICES,
  clusterAddress,
  dynamicConfigFile,
  parseTemporalClusterConfig,
  serverConfigFile,
} from '../../dev/temporal-cluster-config.js';

const repoYaml = path.resolve('deploy/temporal-cluster.yaml');
const pg = { host: '127.0.0.1', port: 5434, user: 'postgres', password: 'secret' };

interface ServerFile {
  persistence: { numHistoryShards: number; datastores: Record<string, { sql: { databaseName: string } }> };
  global: { metrics: { prometheus: { listenAddress: string } } };
  services: Record<string, { rpc: { grpcPort: number; membershipPort: number; bindOnIP: string } }>;
  dynamicConfigClient: { filepath: string };
}

describe('deploy/temporal-cluster.yaml', () => {
  const config = parseTemporalClusterConfig(readFileSync(repoYaml, 'utf8'), path.dirname(repoYaml));

  it('keeps its state in the ignored data folder and listens on loopback', () => {
    expect(config.dataDir).toBe(path.resolve('.data/temporal-cluster'));
    expect(clusterAddress(config)).toBe('127.0.0.1:7233');
  });

  it('is a cluster: several history shards, task queues left at their default partitions', () => {
    expect(config.numHistoryShards).toBeGreaterThan(1);
    expect(Object.keys(config.dynamicConfig).filter((k) => k.includes('numTaskqueue'))).toEqual([]);
  });

  it('gives every service its own ports, none shared with another service or the Postgres', () => {
    const { ports } = config;
    const all = [
      ...CLUSTER_SERVICES.flatMap((s) => [ports[s], ports.membership[s], ports.metrics[s]]),
      ports.frontendHttp,
      ports.postgres,
      ports.ui,
    ];
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('the server config of each service', () => {
  const config = parseTemporalClusterConfig('numHistoryShards: 16\nip: 10.1.2.3\n', '/srv');
  const files = CLUSTER_SERVICES.map((s) => parse(serverConfigFile(config, s, pg, '/srv/dynamic.yaml')) as ServerFile);

  it('describes the same cluster to every service, on the configured address', () => {
    for (const file of files) {
      expect(file.persistence.numHistoryShards).toBe(16);
      expect(file.persistence.datastores.default?.sql.databaseName).toBe('temporal');
      expect(file.persistence.datastores.visibility?.sql.databaseName).toBe('temporal_visibility');
      expect(file.services.history?.rpc).toEqual({ grpcPort: 7234, membershipPort: 6934, bindOnIP: '10.1.2.3' });
      expect(file.dynamicConfigClient.filepath).toBe('/srv/dynamic.yaml');
    }
  });

  it('gives each service process a metrics port of its own', () => {
    const addresses = files.map((f) => f.global.metrics.prometheus.listenAddress);
    expect(new Set(addresses).size).toBe(CLUSTER_SERVICES.length);
  });
});

describe('the cluster description', () => {
  it('refuses a membership port the server cannot store (it keeps them in a smallint)', () => {
    expect(() => parseTemporalClusterConfig('ports:\n  membership:\n    history: 40000\n', '/srv')).toThrow(
      /ports\.membership\.history/,
    );
  });

  it('refuses settings it does not know', () => {
    expect(() => parseTemporalClusterConfig('numHistoryShard: 4\n', '/srv')).toThrow(/numHistoryShard/);
  });

  it('writes dynamic config in the server list form, one value for the whole cluster', () => {
    const config = parseTemporalClusterConfig('dynamicConfig:\n  matching.enableFairness: true\n', '/srv');
    expect(parse(dynamicConfigFile(config))).toEqual({
      'matching.enableFairness': [{ value: true, constraints: {} }],
    });
  });
});
