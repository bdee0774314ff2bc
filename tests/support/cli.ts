// Runs the `gpu-batch` command line as a user would: its own process, its real exit code, and
// output off a terminal (so progress comes as one line per update).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}

export async function runCli(args: string[], env: Record<string, string>, cwd?: string): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [`${process.cwd()}/cli/gpu-batch.mjs`, ...args], {
      env: { ...process.env, ...env },
      ...(cwd !== undefined ? { cwd } : {}),
      maxBuffer: 64 * 1024 * 1024,
    });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}
