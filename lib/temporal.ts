// How every process reaches Temporal: an existing cluster (TEMPORAL_ADDRESS, namespace, TLS,
// API key) or, by default, the local dev server described by temporal-dev.yaml.
import { readFileSync } from 'node:fs';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import type { Config } from './config.js';
import { devServerAddress, readTemporalDevConfig } from './temporal-dev-config.js';

export function temporalAddress(config: Config): string {
  return config.temporal.address ?? devServerAddress(readTemporalDevConfig(config.temporal.devConfigPath));
}

export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig;
  apiKey?: string;
}

export function temporalConnectionOptions(config: Config): TemporalConnectionOptions {
  const options: TemporalConnectionOptions = { address: temporalAddress(config) };
  const { tls } = config.temporal;
  if (tls.enabled) {
    const tlsConfig: TLSConfig = {};
    if (tls.serverName !== undefined) tlsConfig.serverNameOverride = tls.serverName;
    if (tls.caPath !== undefined) tlsConfig.serverRootCACertificate = readFileSync(tls.caPath);
    if (tls.certPath !== undefined && tls.keyPath !== undefined) {
      tlsConfig.clientCertPair = { crt: readFileSync(tls.certPath), key: readFileSync(tls.keyPath) };
    }
    options.tls = tlsConfig;
  }
  if (config.temporal.apiKey !== undefined) options.apiKey = config.temporal.apiKey;
  return options;
}

export async function connectClient(config: Config): Promise<Client> {
  const connection = await Connection.connect(temporalConnectionOptions(config));
  return new Client({ connection, namespace: config.temporal.namespace });
}

export function inferenceTaskQueue(config: Config, model: string): string {
  return `${config.temporal.inferenceTaskQueuePrefix}${model}`;
}
