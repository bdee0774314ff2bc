// Stack parts as real processes, for tests that kill them the hard way.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { TestStack } from './stack.js';

export interface ChildUnderTest {
  child: ChildProcess;
  output(): string;
  /** Resolves when the text appears in the output (after `from`, an output length). */
  waitFor(text: string, timeoutMs?: number, from?: number): Promise<void>;
  /** SIGKILL, and wait until it is gone. */
  kill9(): Promise<void>;
  /** SIGTERM, and wait for the exit code. */
  stop(): Promise<number | null>;
}

export interface SpawnOptions {
  /** Arguments for node itself (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
  /** A command that execs node in the same process (`ip netns exec <host>`). */
  prefix?: string[];
  /**
   * Run the compiled JavaScript in this build folder (what `npm run build` writes: dist/), as the
   * systemd units do, instead of the source under tsx.
   */
  build?: string;
}

/** The file a build (`npm run build`: dist/) compiles a source entry point to. */
export function compiledPath(script: string, build = 'dist'): string {
  return path.join(build, script.replace(/\.ts$/, '.js'));
}

/** Runs an entry point: its source under tsx, or its compiled JavaScript. */
export function spawnEntry(script: string, env: Record<string, string>, options: SpawnOptions = {}): ChildUnderTest {
  const { nodeArgs = [], prefix = [], build } = options;
  const compiled = build === undefined ? undefined : compiledPath(script, build);
  if (compiled !== undefined && !existsSync(compiled))
    throw new Error(`${compiled} is missing: run \`npm run build\` first`);
  const command = prefix[0] ?? process.execPath;
  const before = prefix.length > 0 ? [...prefix.slice(1), process.execPath] : [];
  const entry = compiled === undefined ? ['--import', 'tsx', script] : ['--enable-source-maps', compiled];
  const child = spawn(command, [...before, ...nodeArgs, ...entry], {
    env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    // The IPC channel closes if this process dies, and the child then stops instead of lingering.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      resolve(code);
    }),
  );
  return {
    child,
    output: () => out,
    // Two minutes by default: a process compiled by tsx on a loaded 2-core machine (the start of a CI
    // run, every test file starting at once) can take most of one before it logs anything.
    waitFor: async (text, timeoutMs = 120_000, from = 0) => {
      const deadline = Date.now() + timeoutMs;
      while (!out.slice(from).includes(text)) {
        if (child.exitCode !== null)
          throw new Error(`${script} exited (${child.exitCode}) before "${text}":\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`"${text}" did not appear from ${script}:\n${out.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    kill9: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** A GPU worker process on this stack, feeding the given engine (a worker starting its own vLLM takes minutes). */
export async function spawnGpuWorker(
  stack: TestStack,
  engineUrl: string,
  env: Record<string, string> = {},
  readyTimeoutMs = env.VLLM_COMMAND === undefined ? 120_000 : 600_000,
): Promise<ChildUnderTest> {
  const worker = spawnEntry('workers/gpu.ts', { ...stack.processEnv(), VLLM_BASE_URL: engineUrl, ...env });
  await worker.waitFor('GPU worker ready', readyTimeoutMs);
  return worker;
}
