import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { CONFIGURATION_DOC, renderConfigurationDoc } from '../../dev/config-docs.js';
import { CONFIG_VARIABLES, ConfigError, databaseUrl, loadConfig } from '../../lib/config.js';

describe('config', () => {
  it('has defaults that run everything on loopback', () => {
    const config = loadConfig({});
    expect(config.host).toBe('127.0.0.1');
    expect(config.api.port).toBe(4080);
    expect(config.temporal.address).toBeUndefined();
    expect(config.temporal.namespace).toBe('default');
    expect(databaseUrl(config)).toBe('postgres://postgres:postgres@127.0.0.1:5433/batch');
    expect(config.gpu.maxInFlight).toBe(256);
    expect(config.batch.maxRequests).toBe(50_000);
    expect(config.files.maxUploadBytes).toBe(200 * 1024 * 1024);
  });

  it('reads lists, numbers and flags from the environment', () => {
    const config = loadConfig({
      API_KEYS: ' sk-a, sk-b ,,',
      API_PORT: '9000',
      DATABASE_URL: 'postgres://db.example/batch',
      TEMPORAL_ADDRESS: 'temporal.example:7233',
      TEMPORAL_API_KEY: 'secret',
      GPU_MODELS: 'llama,qwen',
    });
    expect(config.api.seedKeys).toEqual(['sk-a', 'sk-b']);
    expect(config.api.port).toBe(9000);
    expect(databaseUrl(config)).toBe('postgres://db.example/batch');
    expect(config.temporal.address).toBe('temporal.example:7233');
    // An API key (Temporal Cloud) implies TLS.
    expect(config.temporal.tls.enabled).toBe(true);
    expect(config.gpu.models).toEqual(['llama', 'qwen']);
  });

  it('reads project weights, and names a bad pair', () => {
    const weights = loadConfig({ PROJECT_WEIGHTS: 'prod=4, research = 0.5,a=b=2' }).scheduling.projectWeights;
    expect([...weights]).toEqual([
      ['prod', 4],
      ['research', 0.5],
      ['a=b', 2],
    ]);
    expect(loadConfig({}).scheduling.projectWeights.get('constructor')).toBeUndefined();
    for (const bad of ['prod', '=2', 'prod=0', 'prod=1001', 'prod=lots'])
      expect(() => loadConfig({ PROJECT_WEIGHTS: bad }), bad).toThrow(/PROJECT_WEIGHTS.*name=weight/);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', TEMPORAL_ADDRESS: ' ' }).temporal.address).toBeUndefined();
  });

  it('names every invalid setting in one error', () => {
    expect(() => loadConfig({ API_PORT: 'eighty', GPU_MAX_INFLIGHT: '0', LOG_LEVEL: 'loud' })).toThrow(ConfigError);
    try {
      loadConfig({ API_PORT: 'eighty', GPU_MAX_INFLIGHT: '0' });
    } catch (err) {
      expect((err as Error).message).toContain('API_PORT');
      expect((err as Error).message).toContain('GPU_MAX_INFLIGHT');
    }
  });

  it('reads every variable once', () => {
    expect(CONFIG_VARIABLES.filter((name, i) => CONFIG_VARIABLES.indexOf(name) !== i)).toEqual([]);
  });

  it('resolves the old simulator knobs when the new ones are unset', () => {
    expect(loadConfig({}).simulator).toMatchObject({ stepBaseMs: 6, stepTokenMs: 0.05 });
    const old = loadConfig({ SIM_TOKEN_LATENCY_MS: '9', SIM_PREFILL_TOKENS_PER_SEC: '2000' }).simulator;
    expect(old).toMatchObject({ stepBaseMs: 9, stepTokenMs: 0.5 });
    expect(old).not.toHaveProperty('tokenLatencyMs');
    expect(loadConfig({ SIM_STEP_TOKEN_MS: '0.1', SIM_PREFILL_TOKENS_PER_SEC: '0' }).simulator.stepTokenMs).toBe(0.1);
    expect(loadConfig({ SIM_PREFILL_TOKENS_PER_SEC: '0' }).simulator.stepTokenMs).toBe(0);
  });

  it('takes unset values from other settings', () => {
    const config = loadConfig({ HOST: '0.0.0.0', GPU_INDEX: '3', API_PORT: '9000', DEV_API_KEY: 'sk-dev' });
    expect(config.metrics.host).toBe('0.0.0.0');
    expect(config.metrics.gpuPort).toBe(9473);
    expect(config.cli).toEqual({ apiUrl: 'http://127.0.0.1:9000/v1', apiKey: 'sk-dev' });
    expect(config.temporal.tls).toEqual({ enabled: false });
  });
});

describe(CONFIGURATION_DOC, () => {
  const doc = readFileSync(CONFIGURATION_DOC, 'utf8');

  it('is what `npm run docs:config` writes from lib/config.ts', () => {
    expect(doc, 'docs/configuration.md is stale: run npm run docs:config').toBe(renderConfigurationDoc());
  });

  it('documents every configuration variable', () => {
    expect(CONFIG_VARIABLES.filter((name) => !doc.includes(`| \`${name}\` |`))).toEqual([]);
  });
});
