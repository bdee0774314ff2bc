// `npm start` as a user runs it (dev/start.ts), on ports and in a folder of the test's own, with
// none of the test run's own services leaking in: for the tests of `npm start` and the chaos test.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { inject } from 'vitest';
import { parse, stringify } from 'yaml';

export interface DevStackPorts {
  api: number;
  sim: number;
  pg: number;
  temporal: number;
  ui: number;
  orchestrator: number;
  gpu: number;
  importer: number;
}

export interface DevStack {
  dir: string;
  ports: DevStackPorts;
  process: ChildProcess;
  output(): string;
  /** Resolves when the text appears in the stack's output (after `from`, an output length). */
  waitForOutput(text: string, timeoutMs: number, from?: number): Promise<void>;
  /** Every process below the stack (children and their children), with its command line. */
  descendants(): { pid: number; ppid: number; args: string }[];
  /** Stops it at once and removes its folder. */
  destroy(): Promise<void>;
}

export function childrenOf(pid: number): { pid: number; args: string }[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const m = /^\s*(\d+)\s+(.*)$/.exec(l);
        return { pid: Number(m?.[1]), args: m?.[2] ?? '' };
      });
  } catch {
    return [];
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * For a stack that should run on the test run's Temporal when that is a cluster (TEMPORAL_ADDRESS),
 * not on a dev server of its own: its address, and task queues of the stack's own there, so stacks
 * of files running side by side never take each other's work. Empty on the run's own dev server.
 */
export function onTheRunsCluster(): Record<string, string> {
  const services = inject('services');
  if (!services.temporalExternal) return {};
  const tag = randomBytes(4).toString('hex');
  return {
    TEMPORAL_ADDRESS: services.temporalAddress,
    ORCHESTRATOR_TASK_QUEUE: `orchestrator-${tag}`,
    INFERENCE_TASK_QUEUE_PREFIX: `inference-${tag}:`,
    SMALL_BATCH_TASK_QUEUE_PREFIX: `inference-small-${tag}:`,
    CURATION_TASK_QUEUE: `curation-${tag}`,
  };
}

export async function startDevStack(env: Record<string, string> = {}, startTimeoutMs = 120_000): Promise<DevStack> {
  const dir = await mkdtemp(path.join(tmpdir(), 'npm-start-'));
  await chmod(dir, 0o755);
  const ports: DevStackPorts = {
    api: await getPort(),
    sim: await getPort(),
    pg: await getPort(),
    temporal: await getPort(),
    ui: await getPort(),
    orchestrator: await getPort(),
    gpu: await getPort(),
    importer: await getPort(),
  };
  const yaml = parse(await readFile('temporal-dev.yaml', 'utf8')) as Record<string, unknown>;
  const devConfig = {
    ...yaml,
    port: ports.temporal,
    uiPort: ports.ui,
    httpPort: await getPort(),
    metricsPort: await getPort(),
    dbFile: path.join(dir, 'temporal.db'),
  };
  await writeFile(path.join(dir, 'temporal-dev.yaml'), stringify(devConfig));

  // The stack must bring up its own services: none of the test run's may leak in.
  const {
    DATABASE_URL: _db,
    TEMPORAL_ADDRESS: _temporal,
    VLLM_BASE_URL: _engine,
    API_KEYS: _keys,
    ...inherited
  } = process.env;
  const services = inject('services');
  const childEnv: NodeJS.ProcessEnv = {
    ...inherited,
    DATA_DIR: path.join(dir, 'data'),
    API_PORT: String(ports.api),
    SIM_PORT: String(ports.sim),
    EMBEDDED_PG_PORT: String(ports.pg),
    ORCHESTRATOR_METRICS_PORT: String(ports.orchestrator),
    GPU_METRICS_PORT: String(ports.gpu),
    IMPORT_METRICS_PORT: String(ports.importer),
    TEMPORAL_DEV_CONFIG: path.join(dir, 'temporal-dev.yaml'),
    TEMPORAL_CLI_PATH: services.temporalCliPath,
    SIM_TOKEN_LATENCY_MS: '1',
    SIM_OUTPUT_TOKENS: '4-16',
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
    ...env,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'dev/start.ts'], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const waitForOutput = async (text: string, timeoutMs: number, from = 0): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!output.slice(from).includes(text)) {
      if (Date.now() > deadline)
        throw new Error(`"${text}" did not appear in the stack's output:\n${output.slice(-4000)}`);
      if (child.exitCode !== null) throw new Error(`the stack exited (${child.exitCode}):\n${output.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const descendants = (): { pid: number; ppid: number; args: string }[] => {
    const all = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
      .split('\n')
      .map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3] ?? '' }));
    const found: { pid: number; ppid: number; args: string }[] = [];
    const parents = new Set([child.pid ?? -1]);
    for (let grew = true; grew;) {
      grew = false;
      for (const p of all) {
        if (parents.has(p.ppid) && !parents.has(p.pid)) {
          parents.add(p.pid);
          found.push(p);
          grew = true;
        }
      }
    }
    return found;
  };
  const stack: DevStack = {
    dir,
    ports,
    process: child,
    output: () => output,
    waitForOutput,
    descendants,
    destroy: async () => {
      const all = descendants();
      if (child.exitCode === null) child.kill('SIGKILL');
      for (const p of all) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForOutput('The stack is up.', startTimeoutMs);
  } catch (err) {
    await stack.destroy();
    throw err;
  }
  return stack;
}
