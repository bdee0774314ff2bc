// A Python with the official openai SDK from PyPI, for tests that drive the API as a Python user
// does. The virtualenv is made once and kept in the tools folder.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { loadConfig } from '../../lib/config.js';

const run = promisify(execFile);
// Pinned, so a new SDK release cannot change what a test means without a commit.
export const PYTHON_OPENAI_VERSION = '3.57.0';
const PYTHON_OPENAI = `openai==${PYTHON_OPENAI_VERSION}`;

/** The path of a python that can `import openai`. */
export async function pythonWithOpenAI(): Promise<string> {
  const venv = path.join(loadConfig().paths.toolsDir, 'python-openai');
  const python = path.join(venv, 'bin', 'python');
  const marker = path.join(venv, `${PYTHON_OPENAI}.installed`);
  if (!existsSync(marker)) {
    await run('python3', ['-m', 'venv', venv]);
    await run(path.join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', PYTHON_OPENAI]);
    await run('touch', [marker]);
  }
  return python;
}
