// Finds a tool that ships as a Go program (the Temporal CLI, MinIO), building it if it must.
// Order: the binary on PATH → a configured path → the cached build in the tools folder →
// `go install` into that cache → the tool's own error saying what to install.
import { spawn } from 'node:child_process';
import { access, constants, mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import which from 'which';

import type { Logger } from '../lib/logger.js';

export interface GoTool {
  /** The binary's name, on PATH and in the cache. */
  binary: string;
  /** The cache folder's name, before the version (default: the binary's name). */
  cacheName?: string;
  /** The Go package `go install` builds, without the version. */
  module: string;
  /** Further packages of the same module, built with it into the same folder (a server's tools). */
  alsoBuild?: string[];
  /** Never take a binary of this name from PATH: its name is too common to be this tool. */
  skipPath?: boolean;
  /** Environment for the build: GOTOOLCHAIN for a module whose go.mod asks for a newer Go than the machine's. */
  buildEnv?: Record<string, string>;
  /** Raised when there is no way to get the tool; says what to install. */
  notFound: (detail: string) => Error;
}

export interface GoToolOptions {
  configuredPath: string | undefined;
  /** The variable configuredPath came from, for messages. */
  configuredName: string;
  toolsDir: string;
  version: string;
  /** PATH to search; defaults to the process's. */
  searchPath?: string;
  log: Logger;
}

export interface ResolvedTool {
  path: string;
  source: 'PATH' | 'configured' | 'cache' | 'go install';
}

export function cachedToolPath(tool: Pick<GoTool, 'binary' | 'cacheName'>, toolsDir: string, version: string): string {
  return path.join(toolsDir, `${tool.cacheName ?? tool.binary}-${version}`, tool.binary);
}

/** Whether the file is there and may be run. */
export async function isExecutable(file: string): Promise<boolean> {
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

async function goInstall(goBinary: string, tool: GoTool, options: GoToolOptions): Promise<string> {
  const target = cachedToolPath(tool, options.toolsDir, options.version);
  const staging = `${path.dirname(target)}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  const specs = [tool.module, ...(tool.alsoBuild ?? [])].map((m) => `${m}@${options.version}`);
  options.log.info(
    { module: specs.join(' ') },
    `building ${tool.binary} with go install; this takes a few minutes once, then the build is cached`,
  );
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(goBinary, ['install', ...specs], {
      env: { ...process.env, GOBIN: staging, CGO_ENABLED: process.env.CGO_ENABLED ?? '0', ...tool.buildEnv },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', resolve);
  });
  if (code !== 0) {
    await rm(staging, { recursive: true, force: true });
    throw tool.notFound(`go install ${specs.join(' ')} exited with ${code}`);
  }
  // Publish the finished build in one step so a concurrent reader never sees half a binary.
  await rm(path.dirname(target), { recursive: true, force: true });
  await rename(staging, path.dirname(target));
  return target;
}

export async function resolveGoTool(tool: GoTool, options: GoToolOptions): Promise<ResolvedTool> {
  const fromPath = tool.skipPath === true ? undefined : await onPath(tool.binary, options.searchPath);
  if (fromPath !== undefined) return { path: fromPath, source: 'PATH' };

  if (options.configuredPath !== undefined) {
    if (await isExecutable(options.configuredPath)) return { path: options.configuredPath, source: 'configured' };
    options.log.warn(
      { path: options.configuredPath },
      `${options.configuredName} is not an executable file; looking further`,
    );
  }

  const cached = cachedToolPath(tool, options.toolsDir, options.version);
  if (await isExecutable(cached)) return { path: cached, source: 'cache' };

  const go = await onPath('go', options.searchPath);
  if (go === undefined)
    throw tool.notFound(`not on PATH, ${options.configuredName} unset or unusable, no cached build, no Go toolchain`);
  return { path: await goInstall(go, tool, options), source: 'go install' };
}
