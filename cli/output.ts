// What the shell sees of a command: text for people or JSON for scripts, dates and sizes as the
// commands print them, and the exit codes.
import { Option, type Command } from 'commander';

/** Exit codes: 0 done and every request succeeded; 2 done but some failed; 1 failed; 130 stopped watching. */
export const EXIT = { ok: 0, failed: 1, partial: 2, interrupted: 130 } as const;

/** The --json flag (the description says what the JSON is, where it is more than the command's result). */
export function jsonOption(description = 'machine-readable output'): Option {
  return new Option('--json', description);
}

/** The data as JSON with --json, else the human text. */
export function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(data, null, 2) : human()}\n`);
}

/** A Unix time in seconds as ISO 8601 to the second; "-" for none. */
export const date = (s: number | null | undefined): string =>
  s === null || s === undefined ? '-' : new Date(s * 1000).toISOString().replace('.000Z', 'Z');

/**
 * A command on one id (`name <id>`) that prints what `run` gives: the JSON with --json, `human` of it
 * otherwise.
 */
export function idCommand<T>(
  parent: Command,
  spec: string,
  description: string,
  json: Option,
  run: (id: string) => Promise<T>,
  human: (result: T, id: string) => string,
): Command {
  return parent
    .command(spec)
    .description(description)
    .addOption(json)
    .action(async (id: string, opts: { json?: boolean }) => {
      const result = await run(id);
      print(opts.json === true, result, () => human(result, id));
    });
}
