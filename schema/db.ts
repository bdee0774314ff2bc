// The database: Kysely over node-postgres (`pg`), with every call bounded in time and a lost
// connection an ordinary error, never a crash. (postgres.js was dropped: a backend terminated under
// a pooled or reserved connection crashed the process in `nextWrite`, porsager/postgres #1154/#1208,
// and skipping that write makes the query hang instead; tests/integration/database-outage.test.ts
// terminates backends and restarts the server under load to keep it that way.)
import { Kysely, Migrator, PostgresDialect, sql, type RawBuilder } from 'kysely';
import pg from 'pg';

import { keepTrying, type KeepTryingOptions } from '../lib/abortable.js';
import { migrations } from './migrations/index.js';
import type { Database } from './tables.js';

export type Db = Kysely<Database>;

export interface DbOptions {
  poolSize: number;
  /** Longest one statement may run (server side) and one round trip may wait (client side, plus a margin). */
  queryTimeoutMs: number;
  /** Longest a connection may take to open, or a caller may wait for a free one in the pool. */
  connectTimeoutMs: number;
  /** Told of connections that failed while idle or reserved (the query that needed one fails too). */
  onConnectionError?: (err: Error) => void;
}

const INT8 = 20;
const NUMERIC = 1700;

/**
 * Counts, byte sizes and Unix times are bigint in SQL and plain numbers here (exact up to 2^53, far
 * beyond anything we store); sums of bigints come back as numeric and are numbers too.
 */
function typeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (oid === INT8 || oid === NUMERIC) return (value: string) => Number(value);
  const builtin = pg.types.getTypeParser as (oid: number, format: 'text' | 'binary') => (value: string) => unknown;
  return builtin(oid, format ?? 'text');
}

/** How long the client waits beyond the server's own statement timeout before it gives up on a reply. */
const CLIENT_MARGIN_MS = 5000;

export function createDb(url: string, options: DbOptions): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    // The server ends a runaway statement, or a transaction left idle by a client that is stuck,
    // so neither can hold locks for long; the client bounds the wait for a server that is gone.
    statement_timeout: options.queryTimeoutMs,
    idle_in_transaction_session_timeout: options.queryTimeoutMs,
    query_timeout: options.queryTimeoutMs + CLIENT_MARGIN_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    types: { getTypeParser: typeParser as typeof pg.types.getTypeParser },
  });
  const onError = options.onConnectionError ?? (() => undefined);
  // An idle pooled connection that dies is reported here; without a listener it would crash the process.
  pool.on('error', onError);
  pool.on('connect', (client) => {
    // A connection checked out (a transaction in progress) reports its death on the client itself.
    client.on('error', onError);
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    // After a client-side timeout the connection still owes a reply that may never come; end it, so
    // the pool drops it on release instead of handing a wedged connection to the next caller.
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const result = query(...args);
      if (result instanceof Promise) {
        result.catch((err: unknown) => {
          if (err instanceof Error && err.message === 'Query read timeout') void client.end().catch(() => undefined);
        });
      }
      return result;
    };
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/**
 * A value for a jsonb column. node-postgres would send a JavaScript array as a Postgres array
 * literal, which jsonb refuses, so every jsonb write goes through here, serialised once.
 */
export function jsonb<T>(value: T): RawBuilder<T> {
  return sql<T>`cast(${JSON.stringify(value)} as jsonb)`;
}

/** How long a migration may take: an index on a large table outlasts any ordinary query. */
const MIGRATION_TIMEOUT_MS = 24 * 3600 * 1000;

/**
 * Brings the schema up to date; safe to call from several processes at once (Kysely locks). It runs on
 * a connection of its own, without the ordinary query timeouts.
 */
export async function migrateToLatest(url: string, options: DbOptions): Promise<void> {
  const db = createDb(url, { ...options, poolSize: 1, queryTimeoutMs: MIGRATION_TIMEOUT_MS });
  try {
    await migrate(db);
  } finally {
    await db.destroy();
  }
}

async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: () => Promise.resolve(migrations) } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error !== undefined || failed !== undefined) {
    const reason = error instanceof Error ? error.message : `migration ${failed?.migrationName ?? 'unknown'} failed`;
    throw new Error(`database migration failed: ${reason}`, { cause: error });
  }
}

/** Postgres's SQLSTATE codes for a connection refused, lost or shut down under us, and our own timeouts. */
const UNAVAILABLE_CODES = new Set([
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08003',
  '08006',
  '08001',
  '08004',
  '53300',
  '57014',
]);
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Cannot use a pool after calling end',
  'the database system is',
];

/** True when the error says the database could not be reached or answered in time (not that the query was wrong). */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || UNAVAILABLE_ERRNO.has(code))) return true;
    if (UNAVAILABLE_MESSAGES.some((m) => e instanceof Error && e.message.includes(m))) return true;
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

/**
 * A process's database: connected and migrated before anything else uses it. A database that is
 * not there yet (restarting, or started after this process) is waited for, saying so, rather than
 * ending the process; `signal` stops the wait.
 */
export async function openDatabase(
  url: string,
  options: DbOptions & Omit<KeepTryingOptions, 'isTransient'>,
): Promise<Db> {
  await keepTrying('the database', () => migrateToLatest(url, options), {
    ...options,
    isTransient: isDatabaseUnavailable,
  });
  return createDb(url, options);
}

/** The pool settings every process takes from its config. */
export function dbOptions(config: {
  database: { poolSize: number; queryTimeoutMs: number; connectTimeoutMs: number };
}): DbOptions {
  return {
    poolSize: config.database.poolSize,
    queryTimeoutMs: config.database.queryTimeoutMs,
    connectTimeoutMs: config.database.connectTimeoutMs,
  };
}
