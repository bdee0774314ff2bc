import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

import {
  devServerAddress,
  devServerUiUrl,
  parseTemporalDevConfig,
  startDevArgs,
} from '../../dev/temporal-dev-config.js';
import { ALL_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes.js';

const repoYaml = path.resolve('temporal-dev.yaml');

describe('temporal-dev.yaml', () => {
  const config = parseTemporalDevConfig(readFileSync(repoYaml, 'utf8'), path.dirname(repoYaml));

  it('registers every search attribute the workflows set, with the same type', () => {
    const declared = Object.entries(config.searchAttributes)
      .map(([name, type]) => `${name}:${type.toUpperCase()}`)
      .sort();
    const used = ALL_SEARCH_ATTRIBUTES.map((k) => `${k.name}:${k.type}`).sort();
    expect(declared).toEqual(used);
  });

  it('keeps its SQLite file in the ignored data folder', () => {
    expect(config.dbFile).toBe(path.resolve('.data/temporal/dev.db'));
    expect(readFileSync('.gitignore', 'utf8')).toMatch(/^\.data\/$/m);
  });

  it('binds to loopback', () => {
    expect(config.ip).toBe('127.0.0.1');
    expect(devServerAddress(config)).toBe('127.0.0.1:7233');
    expect(devServerUiUrl(config)).toBe('http://127.0.0.1:8233');
  });
});

describe('start-dev flags', () => {
  it('turns every setting into its flag', () => {
    const config = parseTemporalDevConfig(
      [
        'ip: 0.0.0.0',
        'port: 7000',
        'uiPort: 7001',
        'httpPort: 7002',
        'metricsPort: 7003',
        'namespaces: [default, batches]',
        'dbFile: state/dev.db',
        'logLevel: error',
        'searchAttributes: { BatchStatus: Keyword, BatchRequestCount: Int }',
        'dynamicConfig: { limit.blobSize.warn: 1000, frontend.enableUpdateWorkflowExecution: true, some.string: "x" }',
      ].join('\n'),
      '/srv',
    );
    expect(startDevArgs(config)).toEqual([
      'server',
      'start-dev',
      '--ip',
      '0.0.0.0',
      '--port',
      '7000',
      '--log-level',
      'error',
      '--ui-port',
      '7001',
      '--http-port',
      '7002',
      '--metrics-port',
      '7003',
      '--db-filename',
      '/srv/state/dev.db',
      '--namespace',
      'batches',
      '--search-attribute',
      'BatchStatus=Keyword',
      '--search-attribute',
      'BatchRequestCount=Int',
      '--dynamic-config-value',
      'limit.blobSize.warn=1000',
      '--dynamic-config-value',
      'frontend.enableUpdateWorkflowExecution=true',
      '--dynamic-config-value',
      'some.string="x"',
    ]);
    // A wildcard bind is reached on loopback.
    expect(devServerAddress(config)).toBe('127.0.0.1:7000');
    expect(devServerUiUrl(config)).toBe('http://127.0.0.1:7001');
  });

  it('runs in memory and headless when told to', () => {
    const args = startDevArgs(parseTemporalDevConfig('headless: true', '/'));
    expect(args).toContain('--headless');
    expect(args).not.toContain('--db-filename');
  });

  it('refuses unknown keys and bad types with the file named', () => {
    expect(() => parseTemporalDevConfig('prot: 7233', '/', 'my.yaml')).toThrow(/my\.yaml is invalid/);
    expect(() => parseTemporalDevConfig('searchAttributes: { X: Float }', '/')).toThrow(/searchAttributes/);
  });
});
