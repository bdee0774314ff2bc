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

/** Runs a process's main function; a failure is printed plainly and exits non-zero. */
export function runEntryPoint(main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  });
}

/** Runs `stop` once on SIGINT or SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(stop: () => Promise<void>, log: { info(msg: string): void; error(obj: unknown, msg: string): void }): void {
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
  if (process.send !== undefined) process.on('disconnect', () => { handler('SIGTERM'); });
}
