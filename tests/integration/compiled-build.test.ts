// The processes as a deployment runs them: `npm run build` compiles them to dist/ and writes the
// workflow bundle, and the systemd units start that JavaScript with plain node (no TypeScript compiler
// in the process). The rest of the tests run the source under tsx; this file runs a batch through what
// the units run, so a build that compiles but does not work (a path that only resolves from the source
// tree, a unit naming a file the build does not write) fails here.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import getPort from 'get-port';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, runBatch } from '../support/batches.js';
import { compiledPath, spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const UNITS = 'deploy/systemd';

/** `npm run build` into a folder of this test's own (inside the repository, where node_modules is found). */
async function buildInto(folder: string): Promise<void> {
  try {
    await promisify(execFile)('npm', ['run', 'build', '--', folder], { timeout: 300_000, maxBuffer: 16 * 2 ** 20 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`npm run build failed:\n${stdout}\n${stderr}`, { cause: err });
  }
}

/** Each unit's ExecStart, by unit file. */
function execStarts(): Map<string, string> {
  const units = readdirSync(UNITS).filter((f) => f.endsWith('.service'));
  return new Map(
    units.map((unit) => {
      const line = readFileSync(path.join(UNITS, unit), 'utf8')
        .split('\n')
        .find((l) => l.startsWith('ExecStart='));
      return [unit, line?.slice('ExecStart='.length) ?? ''];
    }),
  );
}

describe('the compiled build (npm run build), as the systemd units run it', () => {
  const model = 'compiled-model';
  // Not dist/ itself: a benchmark may be running from it.
  const root = path.join('.data', `compiled-build-${randomBytes(4).toString('hex')}`);
  const build = path.join(root, 'dist');
  let stack: TestStack | undefined;
  let engine: RunningSimulator | undefined;
  let view: TestStack;
  const processes: ChildUnderTest[] = [];
  const start = (script: string, env: Record<string, string>): ChildUnderTest => {
    const child = spawnEntry(script, env, { build });
    processes.push(child);
    return child;
  };

  beforeAll(async () => {
    await buildInto(build);
    engine = await startTestSimulator({ models: [model] });
    stack = await startTestStack({ engines: [], noApi: true, noOrchestrator: true, noImportWorker: true });
    const env = { ...stack.processEnv(), WORKFLOW_BUNDLE_PATH: path.resolve(build, 'workflow-bundle.js') };
    const apiPort = await getPort();
    const ready = [
      start('api/server.ts', { ...env, API_PORT: String(apiPort), API_KEYS: stack.apiKey }).waitFor('API ready'),
      start('workers/orchestrator.ts', env).waitFor('orchestrator worker ready'),
      start('workers/import.ts', { ...env, IMPORT_METRICS_PORT: String(await getPort()) }).waitFor(
        'import worker ready',
      ),
      start('workers/gpu.ts', {
        ...env,
        VLLM_BASE_URL: engine.url,
        GPU_METRICS_PORT: String(await getPort()),
      }).waitFor('GPU worker ready'),
    ];
    await Promise.all(ready);
    view = {
      ...stack,
      openai: new OpenAI({ baseURL: `http://127.0.0.1:${apiPort}/v1`, apiKey: stack.apiKey, maxRetries: 0 }),
    };
  }, 420_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await stack?.stop();
    await engine?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('starts every unit the way the build expects: plain node on a file the build writes', () => {
    const starts = execStarts();
    expect([...starts.keys()].sort()).toEqual([
      'gpu-batch-api@.service',
      'gpu-batch-gpu@.service',
      'gpu-batch-import.service',
      'gpu-batch-orchestrator.service',
    ]);
    for (const [unit, command] of starts) {
      const match = /^\/usr\/bin\/node --enable-source-maps dist\/(\S+)\.js$/.exec(command);
      expect(match, `${unit}: ${command}`).not.toBeNull();
      const source = `${match?.[1] ?? ''}.ts`;
      // The compiled form of a source entry point, which the other tests run under tsx.
      expect(existsSync(source), `${unit} runs the build of ${source}, which does not exist`).toBe(true);
      expect(existsSync(compiledPath(source, build)), `${unit}: npm run build did not write it`).toBe(true);
    }
    expect(readFileSync('deploy/systemd/gpu-batch.env', 'utf8')).toContain(
      'WORKFLOW_BUNDLE_PATH=/opt/gpu-batch/dist/workflow-bundle.js',
    );
    expect(existsSync(path.join(build, 'workflow-bundle.js'))).toBe(true);
  });

  it('runs a batch from upload to output file with every process compiled', async () => {
    expect(processes).toHaveLength(4);
    for (const p of processes) {
      const cmdline = readFileSync(`/proc/${p.child.pid ?? 0}/cmdline`, 'utf8').split('\0');
      expect(cmdline).not.toContain('tsx');
      expect(cmdline.some((a) => a.startsWith(build) && a.endsWith('.js'))).toBe(true);
    }
    const count = 120;
    const batch = await runBatch(view, batchLines({ model, count }));
    expect(batch.status).toBe('completed');
    await expectEveryLineDone(view.openai, batch, count);
  });
});
