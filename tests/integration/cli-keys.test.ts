// API keys from the command line: created per project, usable at once, listed without the key,
// and refused from the moment they are revoked.
import getPort from 'get-port';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runCli, type CliResult } from '../support/cli.js';
import { startTestStack, type TestStack } from '../support/stack.js';

describe('gpu-batch keys', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack.stop();
  });

  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli(args, { ...stack.processEnv(), ...env });

  it('creates a key that works at once, lists it without the key, and revokes it', async () => {
    const created = await cli(['keys', 'create', '--project', 'team-a', '--name', 'ci', '--json']);
    expect(created.code).toBe(0);
    const { id, key, project } = JSON.parse(created.stdout) as { id: string; key: string; project: string };
    expect(project).toBe('team-a');
    expect(key).toMatch(/^sk-batch-/);

    const client = new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: key, maxRetries: 0 });
    expect((await client.files.list()).data).toEqual([]);

    const listed = await cli(['keys', 'list', '--project', 'team-a', '--json']);
    const rows = JSON.parse(listed.stdout) as { id: string; name: string; prefix: string; revokedAt: number | null }[];
    expect(rows).toEqual([expect.objectContaining({ id, name: 'ci', revokedAt: null })]);
    expect(listed.stdout).not.toContain(key);

    const revoked = await cli(['keys', 'revoke', id]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`Revoked ${id}`);
    await expect(client.files.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(
      (JSON.parse((await cli(['keys', 'list', '--json'])).stdout) as { id: string; revokedAt: number | null }[]).find(
        (k) => k.id === id,
      )?.revokedAt,
    ).not.toBeNull();
  });

  it('shows a new key once, plainly, for people', async () => {
    const created = await cli(['keys', 'create', '--project', 'team-b']);
    expect(created.stdout).toMatch(
      /Created key key_\w+ for project "team-b":\n\n {2}sk-batch-\S+\n\nStore it now: it is not shown again\./,
    );
  });

  it('fails with a clear message and a non-zero exit', async () => {
    const unknown = await cli(['keys', 'revoke', 'key_nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no active key with id key_nope');

    const noDb = await cli(['keys', 'list'], {
      DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${await getPort()}/x`,
    });
    expect(noDb.code).toBe(1);
    expect(noDb.stderr).toContain('cannot reach the database');

    const usage = await cli(['keys', 'create']);
    expect(usage.code).not.toBe(0);
    expect(usage.stderr).toContain("required option '--project <name>'");
  });
});
