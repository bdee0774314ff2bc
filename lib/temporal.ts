// How every process reaches Temporal: an existing cluster (TEMPORAL_ADDRESS, namespace, TLS,
// API key) or, by default, the local dev server described by temporal-dev.yaml.
import { readFileSync } from 'node:fs';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import {
  encodeSearchAttributeIndexedValueType,
  type SearchAttributeType,
} from '@temporalio/common/lib/search-attributes.js';

import { devServerAddress, readTemporalDevConfig } from '../dev/temporal-dev-config.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

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

/**
 * A client whose connection is made on first use and remade by gRPC whenever the server comes back,
 * so a process can start, and keep running, while Temporal is away (its calls fail meanwhile).
 */
export function lazyClient(config: Config): Client {
  return new Client({
    connection: Connection.lazy(temporalConnectionOptions(config)),
    namespace: config.temporal.namespace,
  });
}

/** A call to Temporal that gives up after TEMPORAL_CALL_TIMEOUT_MS, so a server that hangs cannot hang a request. */
export function withTemporalDeadline<T>(client: Client, config: Config, call: () => Promise<T>): Promise<T> {
  return client.withDeadline(Date.now() + config.temporal.callTimeoutMs, call);
}

export function inferenceTaskQueue(config: Config, model: string): string {
  return `${config.temporal.inferenceTaskQueuePrefix}${model}`;
}

/** Where small batches' chunks of a model wait: GPU workers poll it with slots of its own. */
export function smallBatchTaskQueue(config: Config, model: string): string {
  return `${config.temporal.smallBatchTaskQueuePrefix}${model}`;
}

/** The queue a batch's chunks go to: small batches have a lane of their own, never behind a large one. */
export function chunkTaskQueue(config: Config, model: string, requests: number): string {
  return requests <= config.scheduling.smallBatchMaxRequests
    ? smallBatchTaskQueue(config, model)
    : inferenceTaskQueue(config, model);
}

/** The model a chunk task queue is for (the queue's own name if it is neither kind). */
export function modelOfTaskQueue(config: Config, taskQueue: string): string {
  for (const prefix of [config.temporal.inferenceTaskQueuePrefix, config.temporal.smallBatchTaskQueuePrefix])
    if (taskQueue.startsWith(prefix)) return taskQueue.slice(prefix.length);
  return taskQueue;
}

export interface SearchAttributeSpec {
  name: string;
  type: SearchAttributeType;
}

/** Adds those of the attributes the namespace lacks; returns their names. */
export async function registerSearchAttributes(
  connection: Connection,
  namespace: string,
  attributes: SearchAttributeSpec[],
): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = attributes.filter((a) => customAttributes[a.name] === undefined);
  if (missing.length === 0) return [];
  const searchAttributes = Object.fromEntries(
    missing.map((a) => [a.name, encodeSearchAttributeIndexedValueType(a.type) ?? 0]),
  );
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes });
  return missing.map((a) => a.name);
}

/**
 * Registers the search attributes the workflows set, where missing: on a cluster, or a dev-server
 * database made before an attribute existed (start-dev registers them only for a new database).
 * A cluster that refuses (Temporal Cloud takes them through its own console) gets a warning.
 */
export async function ensureSearchAttributes(
  config: Config,
  attributes: SearchAttributeSpec[],
  log: Logger,
): Promise<void> {
  const connection = await Connection.connect(temporalConnectionOptions(config));
  try {
    const namespace = config.temporal.namespace;
    const added = await registerSearchAttributes(connection, namespace, attributes);
    if (added.length > 0) log.info({ added, namespace }, 'registered missing search attributes');
  } catch (err) {
    log.warn(
      { err: (err as Error).message, attributes: attributes.map((a) => `${a.name}=${a.type}`) },
      'could not check or register search attributes; register them on the cluster',
    );
  } finally {
    await connection.close();
  }
}
