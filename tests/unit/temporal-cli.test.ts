import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { cachedCliPath, resolveTemporalCli, TemporalCliNotFound } from '../../dev/temporal-cli.js';
import { createLogger } from '../../lib/logger.js';

const log = createLogger('test', { level: 'silent', format: 'json' });

async function executable(file: string, body = '#!/bin/sh\nexit 0\n'): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body);
  await chmod(file, 0o755);
  return file;
}

describe('finding the Temporal CLI', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const options = (over: { cliPath?: string; searchPath: string }) => ({
    configuredPath: over.cliPath,
    configuredName: 'TEMPORAL_CLI_PATH',
    toolsDir: path.join(dir, 'tools'),
    version: 'v1.5.1',
    searchPath: over.searchPath,
    log,
  });

  it('prefers `temporal` on PATH', async () => {
    const onPath = await executable(path.join(dir, 'bin', 'temporal'));
    const configured = await executable(path.join(dir, 'other', 'temporal'));
    await executable(cachedCliPath(path.join(dir, 'tools'), 'v1.5.1'));
    expect(await resolveTemporalCli(options({ cliPath: configured, searchPath: path.join(dir, 'bin') }))).toEqual({
      path: onPath,
      source: 'PATH',
    });
  });

  it('then the configured path, then the cached build', async () => {
    const configured = await executable(path.join(dir, 'other', 'temporal'));
    const cached = await executable(cachedCliPath(path.join(dir, 'tools'), 'v1.5.1'));
    const empty = path.join(dir, 'empty');
    await mkdir(empty);
    expect(await resolveTemporalCli(options({ cliPath: configured, searchPath: empty }))).toEqual({
      path: configured,
      source: 'configured',
    });
    expect(await resolveTemporalCli(options({ searchPath: empty }))).toEqual({ path: cached, source: 'cache' });
    // A configured path that is not executable is passed over, not trusted.
    expect(await resolveTemporalCli(options({ cliPath: path.join(dir, 'missing'), searchPath: empty }))).toEqual({
      path: cached,
      source: 'cache',
    });
  });

  it('builds with go install into the cache when nothing else is there', async () => {
    // A stand-in `go` that "builds" by writing the binary into GOBIN, as go install would.
    const bin = path.join(dir, 'bin');
    await executable(
      path.join(bin, 'go'),
      '#!/bin/sh\necho "$@" > "$GOBIN/args"\nprintf "#!/bin/sh\\n" > "$GOBIN/temporal"\nchmod +x "$GOBIN/temporal"\n',
    );
    const result = await resolveTemporalCli(options({ searchPath: bin }));
    expect(result).toEqual({ path: cachedCliPath(path.join(dir, 'tools'), 'v1.5.1'), source: 'go install' });
    // The next call finds the cached build without building again.
    expect(await resolveTemporalCli(options({ searchPath: path.join(dir, 'empty-path') }))).toMatchObject({
      source: 'cache',
    });
  });

  it('says exactly what to install when there is no way to get one', async () => {
    const empty = path.join(dir, 'empty');
    await mkdir(empty);
    const attempt = resolveTemporalCli(options({ searchPath: empty }));
    await expect(attempt).rejects.toBeInstanceOf(TemporalCliNotFound);
    await expect(attempt).rejects.toThrow(/brew install temporal.*TEMPORAL_CLI_PATH.*go install.*TEMPORAL_ADDRESS/s);
  });

  it('reports a failed go build', async () => {
    const bin = path.join(dir, 'bin');
    await executable(path.join(bin, 'go'), '#!/bin/sh\nexit 3\n');
    await expect(resolveTemporalCli(options({ searchPath: bin }))).rejects.toThrow(/exited with 3/);
  });
});
