// Starting a helper server as a child process and waiting until it answers over HTTP: Label Studio
// and MinIO for `npm start` and the tests, and the parts of `npm start` itself.
import { spawn, type ChildProcess } from 'node:child_process';

import { sleep } from '../lib/abortable.js';
import { stopProcess } from './temporal-dev-server.js';

/** Polls `probe` until it says yes; fails after the timeout, or at once if the process has exited. */
export async function waitUntil(
  what: string,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  exited?: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited?.() === true) throw new Error(`${what} exited while starting`);
    if (await probe().catch(() => false)) return;
    await sleep(250);
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms`);
}

export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await res.body?.cancel();
  return res.ok;
}

/** A child process with its last output kept (for an error message) and a failed start noticed. */
export interface WatchedChild {
  child: ChildProcess;
  /** Its last 4,000 characters of output, and why it could not start, if it could not. */
  output: () => string;
  /** It failed to start, or has exited. */
  ended: () => boolean;
}

export function spawnWatched(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; detached?: boolean; echo?: boolean },
): WatchedChild {
  const child = spawn(command, args, {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached === true,
  });
  let output = '';
  let failed = false;
  const keep = (c: Buffer): void => {
    output = (output + c.toString()).slice(-4000);
    if (options.echo === true) process.stderr.write(c);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  // A command that cannot start (not installed, say) is an 'error' event, not an exit.
  child.on('error', (err) => {
    failed = true;
    output += `\n${err.message}`;
  });
  return { child, output: () => output, ended: () => failed || child.exitCode !== null || child.signalCode !== null };
}

export interface HttpService {
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns the server and resolves once `healthUrl` answers 2xx; on failure, its last output is in the error. */
export async function startHttpService(spec: {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  healthUrl: string;
  timeoutMs: number;
  stopGraceMs: number;
}): Promise<HttpService> {
  const { child, output, ended } = spawnWatched(spec.command, spec.args, { env: spec.env });
  try {
    await waitUntil(spec.name, spec.timeoutMs, () => httpOk(spec.healthUrl), ended);
  } catch (err) {
    await stopProcess(child, 2000);
    throw new Error(`${(err as Error).message}\n${output()}`, { cause: err });
  }
  return { process: child, stop: () => stopProcess(child, spec.stopGraceMs) };
}
