// Bundles the workflow code into one file: `npm run build:workflows [-- out.js]` for deployments
// (then set WORKFLOW_BUNDLE_PATH), and run as a short-lived child by an orchestrator that has no
// bundle, so webpack's memory goes away with the child instead of staying in the worker.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';

import { isEntryPoint, runEntryPoint } from '../lib/entry.js';
import { workflowsPath } from '../workers/worker-process.js';

export async function writeWorkflowBundle(out: string): Promise<void> {
  const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };
  const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), logger: silent });
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, code);
}

/** Builds the bundle in a child process of the same runtime and resolves with its path. */
export async function bundleInChild(out: string): Promise<string> {
  const script = fileURLToPath(import.meta.url);
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script, out], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', resolve);
  });
  if (code !== 0) throw new Error(`bundling the workflows failed (exit ${code})`);
  return out;
}

if (isEntryPoint(import.meta.url)) {
  runEntryPoint(async () => {
    const out = path.resolve(process.argv[2] ?? 'dist/workflow-bundle.js');
    await writeWorkflowBundle(out);
    process.stdout.write(`${out}\n`);
  });
}
