// Keeps the processes of the local stack running: a process that dies is restarted (with a log
// line and a growing delay), and stopAll() shuts everything down in reverse start order.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { sleep } from './abortable.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Where the child's output goes; 'inherit' for processes that log for themselves. */
  stdio?: StdioOptions;
  /** Called with each piped output line (when stdio pipes). */
  onLine?: (line: string) => void;
}

interface Managed {
  spec: ProcessSpec;
  child: ChildProcess | undefined;
  restarts: number;
  startedAt: number;
}

export interface SupervisorOptions {
  log: Logger;
  stopGraceMs: number;
  restartDelayMs: number;
  maxRestartDelayMs: number;
}

export function supervisorOptions(config: Config, log: Logger): SupervisorOptions {
  return { log, ...config.supervisor };
}

export class Supervisor {
  private readonly managed: Managed[] = [];
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {}

  start(spec: ProcessSpec): ChildProcess {
    const entry: Managed = { spec, child: undefined, restarts: 0, startedAt: 0 };
    this.managed.push(entry);
    return this.launch(entry);
  }

  /** The live child of a named process (tests and the banner use it). */
  pid(name: string): number | undefined {
    return this.managed.find((m) => m.spec.name === name)?.child?.pid;
  }

  private launch(entry: Managed): ChildProcess {
    const { spec } = entry;
    const child = spawn(spec.command, spec.args, { env: spec.env, stdio: spec.stdio ?? ['ignore', 'pipe', 'pipe'] });
    entry.child = child;
    entry.startedAt = Date.now();
    const forward = (chunk: Buffer): void => {
      // Once stopping, a child's farewell chatter is noise.
      if (this.stopping) return;
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') spec.onLine?.(line);
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    child.on('error', (err) => { this.options.log.error({ process: spec.name, err: err.message }, 'could not start process'); });
    child.on('exit', (code, signal) => { void this.onExit(entry, child, code, signal); });
    return child;
  }

  private async onExit(entry: Managed, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (this.stopping || entry.child !== child) return;
    const { log, restartDelayMs, maxRestartDelayMs } = this.options;
    // A process that ran a while before dying starts over from the shortest delay.
    if (Date.now() - entry.startedAt > 60_000) entry.restarts = 0;
    const delay = Math.min(maxRestartDelayMs, restartDelayMs * 2 ** entry.restarts);
    entry.restarts++;
    log.warn(
      { process: entry.spec.name, code, signal, restartInMs: delay },
      `${entry.spec.name} exited (${signal ?? `code ${code}`}); restarting in ${Math.round(delay / 100) / 10}s`,
    );
    await sleep(delay);
    if (this.isStopping()) return;
    const next = this.launch(entry);
    log.info({ process: entry.spec.name, pid: next.pid }, `${entry.spec.name} restarted`);
  }

  /** A method, not the field, so a check after an await is not narrowed away. */
  private isStopping(): boolean {
    return this.stopping;
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const entry of [...this.managed].reverse()) {
      const child = entry.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve(); }));
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        this.options.log.warn({ process: entry.spec.name }, 'did not stop in time; killing');
        child.kill('SIGKILL');
      }, this.options.stopGraceMs);
      await exited;
      clearTimeout(timer);
    }
  }
}
