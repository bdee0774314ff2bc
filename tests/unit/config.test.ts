import { describe, expect, it } from 'vitest';

import { ConfigError, databaseUrl, loadConfig } from '../../lib/config.js';

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
});
