// A real Label Studio (Community edition, from PyPI) for a newcomer's `npm start --with-label-studio`
// and for the tests: installed once into a virtualenv in the tools folder, started on loopback.
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { loadConfig } from '../lib/config.js';
import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { httpOk, startHttpService, waitUntil } from './service-process.js';

const run = promisify(execFile);

export interface LocalLabelStudioSettings {
  binary: string;
  dataDir: string;
  port: number;
  user: string;
  password: string;
  token: string;
}

/** The venv's `label-studio`, installing it first (about a minute, once per version). */
export async function ensureLabelStudio(toolsDir: string, version: string, log: Logger): Promise<string> {
  const venv = path.join(toolsDir, `label-studio-${version}`);
  const binary = path.join(venv, 'bin', 'label-studio');
  const marker = path.join(venv, '.installed');
  if (existsSync(marker)) return binary;
  log.info({ version, venv }, 'installing Label Studio from PyPI into a virtualenv (about a minute, once)');
  await rm(venv, { recursive: true, force: true });
  try {
    await run('python3', ['-m', 'venv', venv]);
  } catch (err) {
    throw new Error(
      `could not create a Python virtualenv (Label Studio needs Python 3.10 or newer with venv): ${(err as Error).message}`,
      { cause: err },
    );
  }
  await run(
    path.join(venv, 'bin', 'pip'),
    ['install', '--quiet', '--disable-pip-version-check', `label-studio==${version}`],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  await writeFile(marker, `${version}\n`);
  return binary;
}

/** The environment that keeps it quiet and local: no phoning home, local webhooks allowed. */
function labelStudioEnv(dataDir: string, token: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LABEL_STUDIO_BASE_DATA_DIR: dataDir,
    LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN: 'true',
    LABEL_STUDIO_USER_TOKEN: token,
    LATEST_VERSION_CHECK: 'false',
    SENTRY_DSN: '',
    FRONTEND_SENTRY_DSN: '',
    COLLECT_ANALYTICS: 'false',
    // The webhook receiver of the local stack is on loopback, which Label Studio blocks by default.
    SSRF_PROTECTION_ENABLED: 'false',
  };
}

export function labelStudioCommand(s: LocalLabelStudioSettings): {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
} {
  return {
    command: s.binary,
    args: [
      'start',
      '--no-browser',
      '--internal-host',
      '127.0.0.1',
      '--port',
      String(s.port),
      '--username',
      s.user,
      '--password',
      s.password,
      '--user-token',
      s.token,
    ],
    env: labelStudioEnv(s.dataDir, s.token),
  };
}

/** Label Studio moves to the next port when its own is taken, silently; refuse instead. */
export async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', () => {
      reject(new Error(`port ${port} is in use; set LABEL_STUDIO_PORT to a free one`));
    });
    server.listen(port, '127.0.0.1', () =>
      server.close(() => {
        resolve();
      }),
    );
  });
}

export function waitForLabelStudio(url: string, timeoutMs: number): Promise<void> {
  return waitUntil(`Label Studio at ${url}`, timeoutMs, () => httpOk(`${url}/health`));
}

export interface RunningLabelStudio {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startLabelStudio(
  s: LocalLabelStudioSettings,
  log: Logger,
  timeoutMs = 180_000,
): Promise<RunningLabelStudio> {
  await assertPortFree(s.port);
  await mkdir(s.dataDir, { recursive: true });
  const url = `http://127.0.0.1:${s.port}`;
  const service = await startHttpService({
    name: `Label Studio at ${url}`,
    ...labelStudioCommand(s),
    healthUrl: `${url}/health`,
    timeoutMs,
    stopGraceMs: 10_000,
  });
  log.info({ url }, 'Label Studio ready');
  return { url, ...service };
}

/**
 * A data folder already migrated, with the given user and token, for copying: a first start takes
 * half a minute of migrations, a copy starts in a few seconds.
 */
export async function ensureTemplate(
  template: string,
  s: Omit<LocalLabelStudioSettings, 'dataDir'>,
  log: Logger,
): Promise<void> {
  if (existsSync(path.join(template, '.ready'))) return;
  await rm(template, { recursive: true, force: true });
  const ls = await startLabelStudio({ ...s, dataDir: template }, log);
  await ls.stop();
  await writeFile(path.join(template, '.ready'), '');
}

export async function copyTemplate(template: string, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  await cp(template, dest, { recursive: true });
}

// `npm run label-studio:install`: install ahead of time (CI does, so tests do not wait for pip).
if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const config = loadConfig();
    const log = createLogger('label-studio', config.log);
    const binary = await ensureLabelStudio(config.paths.toolsDir, config.labelStudio.local.version, log);
    log.info({ binary }, 'Label Studio installed');
  });
}
