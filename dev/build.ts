// `npm run build [-- FOLDER]`: the processes compiled to JavaScript (tsconfig.build.json) with the
// workflow bundle, in dist/ unless told otherwise: what the systemd units run. It is built beside the
// folder and swapped in only once complete, so a build that fails (a type error, TypeScript pruned
// away) leaves the running build as it was, and a unit restarting mid-build finds one or the other.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { isEntryPoint, runEntryPoint } from '../lib/entry.js';

const run = promisify(execFile);

/** Runs a build step; a failure says what it printed (tsc writes its errors to stdout). */
async function step(what: string, file: string, args: string[]): Promise<void> {
  try {
    await run(file, args, { maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`${what} failed:\n${`${stdout}\n${stderr}`.trim()}`, { cause: err });
  }
}

export async function build(out: string): Promise<void> {
  // Beside the folder, at the same depth: the source maps' relative paths hold after the swap.
  const next = `${out}.next-${process.pid}`;
  const old = `${out}.old-${process.pid}`;
  await rm(next, { recursive: true, force: true });
  try {
    const tsc = path.resolve('node_modules', 'typescript', 'bin', 'tsc');
    if (!existsSync(tsc)) throw new Error('TypeScript is not installed: run `npm ci` (with dev dependencies) first');
    await step('compiling', process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', next]);
    await step('bundling the workflows', process.execPath, [
      path.join(next, 'dev', 'bundle-workflows.js'),
      path.join(next, 'workflow-bundle.js'),
    ]);
    if (existsSync(out)) await rename(out, old);
    await rename(next, out);
  } finally {
    await rm(next, { recursive: true, force: true });
    await rm(old, { recursive: true, force: true });
  }
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const out = path.resolve(process.argv[2] ?? 'dist');
    await build(out);
    process.stdout.write(`${out}\n`);
  });
}
