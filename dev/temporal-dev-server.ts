// Runs `temporal server start-dev` with the flags temporal-dev.yaml describes and waits until it
// answers. Used by `npm start`, `npm run temporal:dev` and the test harness.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';

import { loadConfig } from '../lib/config.js';
import { isEntryPoint, onShutdown, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { cliOptions, resolveTemporalCli } from './temporal-cli.js';
import {
  devServerAddress,
  devServerUiUrl,
  readTemporalDevConfig,
  startDevArgs,
  type TemporalDevConfig,
} from './temporal-dev-config.js';

export interface DevServer {
  address: string;
  uiUrl: string | undefined;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function waitForTemporal(address: string, timeoutMs: number, exited?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (exited?.() === true) throw new Error('the Temporal dev server exited while starting');
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`Temporal at ${address} did not answer within ${timeoutMs} ms: ${String(lastError)}`);
}

/** Stops a child with SIGTERM, then SIGKILL if it has not exited after graceMs. */
export async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** The CLI will not create the folder of its database file. */
export async function prepareDevServer(devConfig: TemporalDevConfig): Promise<void> {
  if (devConfig.dbFile !== undefined) await mkdir(path.dirname(devConfig.dbFile), { recursive: true });
}

/** Passes a line of the dev server's own log on at its level (it prints `level=WARN` and so on). */
export function logServerLine(log: Logger, line: string): void {
  const text = line.trim();
  if (text === '') return;
  if (text.includes('level=ERROR')) log.error(text);
  else if (text.includes('level=WARN')) log.warn(text);
  else log.info(text);
}

export interface StartDevServerOptions {
  startTimeoutMs?: number;
  /** Starts in all, counting the first, when the server exits because a port it wanted was taken. */
  attempts?: number;
  /** The config for the next start after a port race; the same config when absent. */
  reassignPorts?: (devConfig: TemporalDevConfig) => Promise<TemporalDevConfig>;
}

/** The server lost a port to another process between choosing it and binding it. */
class PortTakenError extends Error {}

/**
 * Starts the dev server, again (bounded) when it loses a port race: it picks the ports of its
 * history, matching and worker services itself, by binding port 0 and letting go, and a process
 * starting beside it can take one in between (seen in CI: `bind: address already in use`).
 */
export async function startTemporalDevServer(
  cliPath: string,
  devConfig: TemporalDevConfig,
  log: Logger,
  options: StartDevServerOptions = {},
): Promise<DevServer> {
  const attempts = options.attempts ?? 1;
  let config = devConfig;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(cliPath, config, log, options.startTimeoutMs ?? 60_000);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= attempts) throw err;
      log.warn({ attempt, attempts, err: err.message }, 'the Temporal dev server lost a port race; starting it again');
      config = options.reassignPorts === undefined ? config : await options.reassignPorts(config);
    }
  }
}

async function startOnce(
  cliPath: string,
  devConfig: TemporalDevConfig,
  log: Logger,
  startTimeoutMs: number,
): Promise<DevServer> {
  await prepareDevServer(devConfig);
  const child = spawn(cliPath, startDevArgs(devConfig), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stopping = false;
  let portTaken: string | undefined;
  const forward = (chunk: Buffer): void => {
    // What the server says while it is being stopped is only noise.
    if (stopping) return;
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.includes('address already in use')) portTaken ??= line.trim();
      logServerLine(log, line);
    }
  };
  child.stdout.on('data', forward);
  child.stderr.on('data', forward);
  // Its last lines (the reason it exited) can be read after its exit is seen: 'close' is after both.
  const outputRead = new Promise<void>((resolve) => {
    child.once('close', () => {
      resolve();
    });
  });
  const address = devServerAddress(devConfig);
  try {
    await waitForTemporal(address, startTimeoutMs, () => child.exitCode !== null);
  } catch (err) {
    await stopProcess(child, 2000);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([outputRead, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    if (portTaken !== undefined) throw new PortTakenError(portTaken);
    throw err;
  }
  return {
    address,
    uiUrl: devServerUiUrl(devConfig),
    process: child,
    stop: () => {
      stopping = true;
      return stopProcess(child, 10_000);
    },
  };
}

// `npm run temporal:dev`: just the dev server, in the foreground.
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('temporal', config.log);
    const cli = await resolveTemporalCli(cliOptions(config, log));
    const server = await startTemporalDevServer(cli.path, readTemporalDevConfig(config.temporal.devConfigPath), log, {
      attempts: config.dev.startAttempts,
    });
    log.info({ address: server.address, ui: server.uiUrl }, 'Temporal dev server ready');
    onShutdown(() => server.stop(), log);
  });
}
