// A command in a real terminal, as a person runs it: a tmux session of its own (its own server
// socket), whose screen the test reads with capture-pane and types into with send-keys.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Terminal {
  /** What the screen shows now, a line per row. */
  screen(): Promise<string>;
  /** tmux key names, e.g. 'C-c'. */
  keys(...keys: string[]): Promise<void>;
  /** Whether the command is still running (its pane is open). */
  alive(): Promise<boolean>;
  close(): Promise<void>;
}

export async function openTerminal(
  command: string[],
  env: Record<string, string>,
  size = { columns: 200, rows: 30 },
): Promise<Terminal> {
  const socket = `gpu-batch-test-${randomBytes(4).toString('hex')}`;
  const tmux = (...args: string[]) => run('tmux', ['-L', socket, ...args], { timeout: 10_000 });
  const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // The pane stays when the command ends (remain-on-exit), so its last screen can still be read.
  await tmux(
    'start-server',
    ';',
    'set-option',
    '-g',
    'remain-on-exit',
    'on',
    ';',
    'new-session',
    '-d',
    '-x',
    String(size.columns),
    '-y',
    String(size.rows),
    ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    quoted,
  );
  return {
    screen: async () => (await tmux('capture-pane', '-p')).stdout,
    keys: async (...keys) => {
      await tmux('send-keys', ...keys);
    },
    alive: async () => (await tmux('display-message', '-p', '#{pane_dead}')).stdout.trim() === '0',
    close: async () => {
      await tmux('kill-server').catch(() => undefined);
    },
  };
}
