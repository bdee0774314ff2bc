// Keeps the processes of the local stack running: a process that dies is restarted (with a log
// line and a growing delay), and stopAll() shuts everything down in reverse start order.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

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
  /**
   * Runs it in a process group of its own, ended whole when it exits: for a server whose children
   * would outlive it (vLLM's engine core, holding the GPU's memory) and keep a restart from starting.
   */
  group?: boolean;
  /**
   * With `group`: where the group's id is kept, so that a group left running by a supervisor that was
   * itself killed is ended before this one starts (it would hold the port and the GPU).
   */
  pidFile?: string;
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

/**
 * Ends the process group named in a pid file, if it still runs what was started (its command line
 * shares a long word with `command`: a pid since reused by something else is left alone).
 */
function endStaleGroup(pidFile: string, command: string, log: Logger): void {
  let pid: number;
  let cmdline: string;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return;
  }
  const words = command.split(/\s+/).filter((w) => w.length >= 8);
  if (!Number.isInteger(pid) || pid <= 1 || !words.some((w) => cmdline.includes(w))) return;
  try {
    process.kill(-pid, 'SIGKILL');
    log.warn({ pid, pidFile }, 'ended a process group left running by an earlier start');
  } catch {
    // not running
  }
}

/** Ends what is left of a process group whose leader has exited. */
function endGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // nothing left
  }
}

export class Supervisor {
  private readonly managed: Managed[] = [];
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {}

  start(spec: ProcessSpec): ChildProcess {
    if (spec.group === true && spec.pidFile !== undefined)
      endStaleGroup(spec.pidFile, [spec.command, ...spec.args].join(' '), this.options.log);
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
    const child = spawn(spec.command, spec.args, {
      env: spec.env,
      stdio: spec.stdio ?? ['ignore', 'pipe', 'pipe'],
      detached: spec.group === true,
    });
    entry.child = child;
    entry.startedAt = Date.now();
    if (spec.pidFile !== undefined && child.pid !== undefined) writeFileSync(spec.pidFile, `${child.pid}\n`);
    const forward = (chunk: Buffer): void => {
      // Once stopping, a child's farewell chatter is noise.
      if (this.stopping) return;
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') spec.onLine?.(line);
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    child.on('error', (err) => {
      this.options.log.error({ process: spec.name, err: err.message }, 'could not start process');
      // A process that never started sends no 'exit': try again after the same backoff as a crash.
      if (child.pid === undefined) void this.onExit(entry, child, null, null);
    });
    child.on('exit', (code, signal) => {
      void this.onExit(entry, child, code, signal);
    });
    return child;
  }

  private async onExit(
    entry: Managed,
    child: ChildProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): Promise<void> {
    if (entry.spec.group === true) endGroup(child);
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
      const exited = new Promise<void>((resolve) =>
        child.once('exit', () => {
          resolve();
        }),
      );
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
