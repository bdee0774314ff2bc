import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when the module at moduleUrl is the script node was started with. */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  const self = fileURLToPath(moduleUrl);
  const resolved = path.resolve(script);
  return resolved === self || resolved === self.replace(/\.ts$/, '');
}

/**
 * Runs a process's main function; a failure is printed plainly and exits non-zero. A promise rejected
 * with nobody to hear it (a bug: every await has its handler) is reported, not allowed to end a process
 * that serves others: one stray rejection must not take an API replica or a GPU worker down.
 */
export function runEntryPoint(main: () => Promise<void>): void {
  process.on('unhandledRejection', (reason: unknown) => {
    const err = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
    process.stderr.write(
      `${JSON.stringify({ level: 50, time: Date.now(), msg: 'a promise was rejected with no handler; the process keeps running', err })}\n`,
    );
  });
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  });
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(
  stop: () => Promise<void>,
  log: { info(msg: string): void; error(obj: unknown, msg: string): void },
): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info(`${signal} received, shutting down`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  // Started by `npm start` with an IPC channel: if that supervisor dies, stop rather than linger.
  if (process.send !== undefined)
    process.on('disconnect', () => {
      handler('SIGTERM');
    });
}
