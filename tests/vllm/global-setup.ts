// Real vLLM for the real-vLLM tier (`npm run test:vllm`): vLLM's CPU build serving the tiny
// random-weight model, installed into the tools folder on first use (dev/vllm-local.ts caches it
// there) and started ONCE for the whole run, on a free port. Its URL reaches the tests through
// vitest's provide/inject (`inject('vllm')`). startRealVllm is exported so that other setups, and
// tests that need a second server (another flag set), start it the same way.
import getPort from 'get-port';
import type { TestProject } from 'vitest/node';

import {
  ensureTinyModel,
  ensureVllm,
  startVllm,
  TINY_MODEL_NAME,
  type LocalVllmSettings,
} from '../../dev/vllm-local.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/logger.js';

/** What the tests are told about the shared real vLLM. */
export interface RealVllm {
  /** Root URL, without /v1. */
  url: string;
  /** Its served model name. */
  model: string;
  maxModelLen: number;
  maxNumSeqs: number;
  /** The flags it runs with beyond the defaults of dev/vllm-local.ts (none for the shared one). */
  extraArgs: string[];
  /** The venv's Python and the model folder, to start another server the same way. */
  python: string;
  modelDir: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    vllm: RealVllm;
  }
}

export interface StartedVllm {
  info: RealVllm;
  stop(): Promise<void>;
}

/** The shared server's settings: those of `npm run vllm` (dev/vllm-local.ts) and of the real-vLLM reference. */
export const REAL_VLLM_DEFAULTS = { maxModelLen: 2048, maxNumSeqs: 8 } as const;

/**
 * Installs vLLM and the tiny model if they are missing (minutes, once; cached in the tools folder),
 * then starts a server on a free port and waits for its /health (about 60–120 s on two cores).
 */
export async function startRealVllm(
  settings: Partial<Omit<LocalVllmSettings, 'python' | 'modelDir'>> = {},
  log?: Logger,
): Promise<StartedVllm> {
  const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
  const logger = log ?? createLogger('test-vllm', config.log);
  const { version, python: basePython, startTimeoutMs } = config.vllmLocal;
  const python = await ensureVllm(config.paths.toolsDir, version, logger, { python: basePython });
  const modelDir = await ensureTinyModel(config.paths.toolsDir, version, logger);
  const maxModelLen = settings.maxModelLen ?? REAL_VLLM_DEFAULTS.maxModelLen;
  const maxNumSeqs = settings.maxNumSeqs ?? REAL_VLLM_DEFAULTS.maxNumSeqs;
  const host = settings.host ?? '127.0.0.1';
  const port = settings.port ?? (await getPort({ host }));
  const started = Date.now();
  const vllm = await startVllm({ ...settings, python, modelDir, host, port, maxModelLen, maxNumSeqs }, logger, {
    timeoutMs: startTimeoutMs,
  });
  logger.info({ url: vllm.url, seconds: Math.round((Date.now() - started) / 1000) }, 'real vLLM ready for the tests');
  const extraArgs = [...(settings.apiKey === undefined ? [] : ['--api-key', '<key>']), ...(settings.extraArgs ?? [])];
  return {
    info: {
      url: vllm.url,
      model: settings.servedModelName ?? TINY_MODEL_NAME,
      maxModelLen,
      maxNumSeqs,
      extraArgs,
      python,
      modelDir,
    },
    stop: () => vllm.stop(),
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const vllm = await startRealVllm();
  project.provide('vllm', vllm.info);
  return () => vllm.stop();
}
