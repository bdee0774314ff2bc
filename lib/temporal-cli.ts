// Finds a Temporal CLI (which bundles the dev server and its Web UI), building one if it must.
// Order: `temporal` on PATH → TEMPORAL_CLI_PATH → the cached build in the tools folder →
// `go install` into that cache → a clear error saying what to install.
import { spawn } from 'node:child_process';
import { access, constants, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import which from 'which';
import { loadConfig, type Config } from './config.js';
import { isEntryPoint, runEntryPoint } from './entry.js';
import { createLogger, type Logger } from './logger.js';

export interface TemporalCliOptions {
  cliPath: string | undefined;
  toolsDir: string;
  version: string;
  /** PATH to search; defaults to the process's. */
  searchPath?: string;
  log: Logger;
}

export interface ResolvedCli {
  path: string;
  source: 'PATH' | 'TEMPORAL_CLI_PATH' | 'cache' | 'go install';
}

const MODULE = 'github.com/temporalio/cli/cmd/temporal';

export function cachedCliPath(toolsDir: string, version: string): string {
  return path.join(toolsDir, `temporal-cli-${version}`, 'temporal');
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function onPath(name: string, searchPath: string | undefined): Promise<string | undefined> {
  const found = await which(name, { nothrow: true, ...(searchPath !== undefined ? { path: searchPath } : {}) });
  return found ?? undefined;
}

export class TemporalCliNotFound extends Error {
  constructor(detail: string) {
    super(
      `No Temporal CLI could be found or built (${detail}).\n` +
        'Do one of:\n' +
        '  - install the Temporal CLI so `temporal` is on PATH (e.g. `brew install temporal`);\n' +
        '  - set TEMPORAL_CLI_PATH to a temporal binary;\n' +
        `  - install Go (https://go.dev/dl) so it can be built with \`go install ${MODULE}@<version>\`;\n` +
        '  - or set TEMPORAL_ADDRESS to use an existing Temporal server instead of a local one.',
    );
    this.name = 'TemporalCliNotFound';
  }
}

async function goInstall(goBinary: string, options: TemporalCliOptions): Promise<string> {
  const target = cachedCliPath(options.toolsDir, options.version);
  const staging = `${path.dirname(target)}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  options.log.info(
    { module: `${MODULE}@${options.version}` },
    'building the Temporal CLI with go install; this takes a few minutes once, then the build is cached',
  );
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(goBinary, ['install', `${MODULE}@${options.version}`], {
      env: { ...process.env, GOBIN: staging, CGO_ENABLED: process.env.CGO_ENABLED ?? '0' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', resolve);
  });
  if (code !== 0) {
    await rm(staging, { recursive: true, force: true });
    throw new TemporalCliNotFound(`go install ${MODULE}@${options.version} exited with ${code}`);
  }
  // Publish the finished build in one step so a concurrent reader never sees half a binary.
  await rm(path.dirname(target), { recursive: true, force: true });
  await rename(staging, path.dirname(target));
  return target;
}

export async function resolveTemporalCli(options: TemporalCliOptions): Promise<ResolvedCli> {
  const fromPath = await onPath('temporal', options.searchPath);
  if (fromPath !== undefined) return { path: fromPath, source: 'PATH' };

  if (options.cliPath !== undefined) {
    if (await isExecutable(options.cliPath)) return { path: options.cliPath, source: 'TEMPORAL_CLI_PATH' };
    options.log.warn({ path: options.cliPath }, 'TEMPORAL_CLI_PATH is not an executable file; looking further');
  }

  const cached = cachedCliPath(options.toolsDir, options.version);
  if (await isExecutable(cached)) return { path: cached, source: 'cache' };

  const go = await onPath('go', options.searchPath);
  if (go === undefined) throw new TemporalCliNotFound('not on PATH, TEMPORAL_CLI_PATH unset or unusable, no cached build, no Go toolchain');
  return { path: await goInstall(go, options), source: 'go install' };
}

export function cliOptions(config: Config, log: Logger): TemporalCliOptions {
  return { cliPath: config.temporal.cliPath, toolsDir: config.paths.toolsDir, version: config.temporal.cliVersion, log };
}

// `npm run temporal:install`: make sure a CLI is available (CI calls this before the tests).
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('temporal-cli', config.log);
    const cli = await resolveTemporalCli(cliOptions(config, log));
    log.info({ path: cli.path, source: cli.source }, 'Temporal CLI ready');
  });
}
