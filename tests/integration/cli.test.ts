// The command line as an operator uses it against the running stack: submit a file and watch it
// with a progress bar, get the results, and every everyday command, with exit codes a script can
// rely on.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines } from '../support/batches.js';
import { runCli, type CliResult } from '../support/cli.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';
import { openTerminal } from '../support/tmux.js';
import { startWebhookReceiver, verified, type WebhookReceiver } from '../support/webhook-receiver.js';

interface ProgressLine {
  done: number;
  total: number;
  failed: number;
}

/** The progress lines the bar printed (off a terminal, one per update). */
function progressLines(stderr: string): ProgressLine[] {
  return [...stderr.matchAll(/\|[#-]+\| (\d+)\/(\d+) done, (\d+) failed \| (?:[\d.]+|--) req\/s \| ETA \S+/g)].map(
    (m) => ({
      done: Number(m[1]),
      total: Number(m[2]),
      failed: Number(m[3]),
    }),
  );
}

describe('the gpu-batch command line', () => {
  let stack: TestStack;
  let engine: RunningSimulator;
  let dir: string;
  const model = 'cli-model';
  let cli: (args: string[]) => Promise<CliResult>;

  beforeAll(async () => {
    // 40 ms a request and 16 in flight: 400 requests take about a second, so the bar has something to show.
    engine = await startTestSimulator({
      models: [model],
      tokenLatencyMs: 5,
      outputTokens: { min: 8, max: 8 },
      maxModelLen: 2048,
    });
    stack = await startTestStack({ engines: [engine.url], env: { GPU_MAX_INFLIGHT: '16' } });
    dir = await mkdtemp(path.join(tmpdir(), 'cli-'));
    cli = (args) =>
      runCli(args, { OPENAI_BASE_URL: `${stack.apiUrl}/v1`, OPENAI_API_KEY: stack.apiKey, LOG_LEVEL: 'warn' }, dir);
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('submits a file and watches it to the end with a progress bar, then writes the output', async () => {
    await writeFile(path.join(dir, 'questions.jsonl'), batchLines({ model, count: 400 }));
    const result = await cli([
      'submit',
      '--metadata',
      'team=search',
      '--metadata',
      'run=7',
      'questions.jsonl',
      '--interval',
      '0.2',
      '--output',
      'answers.jsonl',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/Uploading questions\.jsonl \(\d+\.\d KB\)/);
    expect(result.stderr).toMatch(/Uploaded as file-\S+ in \d+\.\ds/);
    expect(result.stderr).toMatch(/Created batch_\S+ \(\/v1\/chat\/completions\)/);

    // The bar counted up to the total, never backwards, with throughput and an ETA on the way.
    const lines = progressLines(result.stderr);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.at(-1)).toEqual({ done: 400, total: 400, failed: 0 });
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.done).toBeGreaterThanOrEqual(lines[i - 1]!.done);
    expect(lines.some((l) => l.done > 0 && l.done < 400)).toBe(true);
    expect(result.stderr).toMatch(/[1-9][\d.]* req\/s \| ETA \d/);

    const id = /^(batch_\S+) completed: 400 requests, 400 completed, 0 failed$/m.exec(result.stdout)?.[1];
    expect(id, result.stdout).toBeDefined();
    expect(result.stdout).toContain('wrote output to answers.jsonl');
    const answers = (await readFile(path.join(dir, 'answers.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { custom_id: string });
    expect(answers).toHaveLength(400);

    const status = await cli(['status', id!]);
    expect(status.stdout).toContain(`${id!}  completed`);
    expect(status.stdout).toMatch(/requests +400 total, 400 completed, 0 failed/);
    // Stored as jsonb, which keeps its own key order.
    expect(status.stdout).toMatch(/metadata +(team=search run=7|run=7 team=search)\n/);
  });

  it('exits 2 when some requests failed, and writes the error file', async () => {
    // Lines asking for more tokens than the engine's context get vLLM's 400: error lines, not a failed batch.
    const body = (i: number): Record<string, unknown> => ({
      model,
      messages: [{ role: 'user', content: `q${i}` }],
      max_tokens: i % 10 === 0 ? 100_000 : 8,
    });
    await writeFile(path.join(dir, 'mixed.jsonl'), batchLines({ model, count: 50, body }));
    const result = await cli(['submit', 'mixed.jsonl', '--interval', '0.2', '--errors', 'mixed.errors.jsonl']);
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/completed: 50 requests, 45 completed, 5 failed/);
    expect((await readFile(path.join(dir, 'mixed.errors.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(5);
    expect(progressLines(result.stderr).at(-1)).toEqual({ done: 50, total: 50, failed: 5 });
  });

  it('exits 1 with the line-numbered errors when the file fails validation', async () => {
    await writeFile(path.join(dir, 'broken.jsonl'), `${batchLines({ model, count: 2 })}{"custom_id": "x", nope\n`);
    const result = await cli(['submit', 'broken.jsonl', '--interval', '0.2']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/batch_\S+ failed: /);
    expect(result.stdout).toMatch(/line 3: /);
  });

  it('gives scripts JSON on standard output and nothing else', async () => {
    await writeFile(path.join(dir, 'small.jsonl'), batchLines({ model, count: 5 }));
    const result = await cli(['submit', 'small.jsonl', '--json', '--interval', '0.2']);
    expect(result.code).toBe(0);
    const batch = JSON.parse(result.stdout) as { id: string; object: string; status: string; request_counts: object };
    expect(batch).toMatchObject({
      object: 'batch',
      status: 'completed',
      request_counts: { total: 5, completed: 5, failed: 0 },
    });
    expect(result.stderr).toBe('');

    const list = JSON.parse((await cli(['list', '--json', '--limit', '2'])).stdout) as {
      data: { id: string }[];
      has_more: boolean;
    };
    expect(list.data[0]?.id).toBe(batch.id);
    expect(list.has_more).toBe(true);
  });

  it('lists, cancels, retries, watches and downloads', async () => {
    await writeFile(path.join(dir, 'long.jsonl'), batchLines({ model, count: 3000 }));
    const created = await cli(['submit', 'long.jsonl', '--no-wait', '--json']);
    expect(created.code).toBe(0);
    const id = (JSON.parse(created.stdout) as { id: string }).id;

    expect((await cli(['list'])).stdout).toMatch(new RegExp(`^${id} +(validating|in_progress)`, 'm'));
    const cancelled = await cli(['cancel', id]);
    expect(cancelled.stdout).toMatch(new RegExp(`^${id} (cancelling|cancelled)$`, 'm'));
    const watched = await cli(['watch', id, '--interval', '0.2']);
    expect(watched.code).toBe(1);
    expect(watched.stdout).toMatch(new RegExp(`^${id} cancelled: 3000 requests`, 'm'));

    const retried = await cli(['retry', id, '--interval', '0.2', '--output', 'retried.jsonl']);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stderr).toContain(`to retry the failed requests of ${id}`);
    const retryOutput = (await readFile(path.join(dir, 'retried.jsonl'), 'utf8')).trim().split('\n');
    const cancelledCount = Number(/(\d+) failed$/m.exec(watched.stdout)?.[1]);
    expect(retryOutput).toHaveLength(cancelledCount);

    const downloaded = await cli(['download', id]);
    expect(downloaded.code).toBe(0);
    expect(downloaded.stdout).toContain(`wrote errors to ${id}.errors.jsonl`);
    expect((await readFile(path.join(dir, `${id}.errors.jsonl`), 'utf8')).trim().split('\n')).toHaveLength(
      cancelledCount,
    );
  });

  it('top: every unfinished batch with its progress, rate and ETA, redrawn in place in a terminal', async () => {
    await writeFile(path.join(dir, 'watched.jsonl'), batchLines({ model, count: 3000 }));
    const id = (JSON.parse((await cli(['submit', 'watched.jsonl', '--no-wait', '--json'])).stdout) as { id: string })
      .id;
    const terminal = await openTerminal(
      [process.execPath, `${process.cwd()}/cli/gpu-batch.mjs`, 'top', '--interval', '0.3'],
      {
        OPENAI_BASE_URL: `${stack.apiUrl}/v1`,
        OPENAI_API_KEY: stack.apiKey,
        LOG_LEVEL: 'warn',
      },
    );
    try {
      // The batch's row, once it runs: its progress, a rate and an ETA.
      const row = new RegExp(
        `^${id} +${model} +running +\\|[#-]{12}\\| +(\\d+)/3000 done, 0 failed +([\\d.]+) +(\\d+m?\\d*s) +23h59m`,
        'm',
      );
      let screen = '';
      const done: number[] = [];
      for (const started = Date.now(); done.length < 3 && Date.now() - started < 30_000;) {
        screen = await terminal.screen();
        const match = row.exec(screen);
        if (match !== null && Number(match[1]) > 0 && Number(match[1]) !== done.at(-1)) done.push(Number(match[1]));
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(done.length, screen).toBe(3);
      expect([...done].sort((a, b) => a - b)).toEqual(done);
      // Redrawn in place: one header and one row of the batch on the screen, however many refreshes.
      expect(screen.match(/^BATCH +MODEL +PHASE/gm)).toHaveLength(1);
      expect(screen.match(new RegExp(`^${id} `, 'gm'))).toHaveLength(1);
      expect(screen).toMatch(/unfinished · \d+ requests left · [\d.]+ req\/s together/);

      // Off a terminal, --once prints the table once.
      const once = await cli(['top', '--once']);
      expect(once.code).toBe(0);
      expect(once.stdout).toMatch(new RegExp(`^${id} +${model} +(running|finalizing) `, 'm'));
      expect(once.stdout.match(/^BATCH /gm)).toHaveLength(1);

      // When it has ended (cancelled, unless it completed first), it leaves the table; Ctrl-C ends top itself.
      await cli(['cancel', id]);
      for (const started = Date.now(); Date.now() - started < 30_000;) {
        screen = await terminal.screen();
        if (!screen.includes(id)) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(screen).not.toContain(id);
      await terminal.keys('C-c');
      for (const started = Date.now(); (await terminal.alive()) && Date.now() - started < 10_000;)
        await new Promise((r) => setTimeout(r, 100));
      expect(await terminal.alive()).toBe(false);
    } finally {
      await terminal.close();
    }
  });

  it('registers a webhook whose signed event arrives when a batch submitted from the CLI ends', async () => {
    const receiver: WebhookReceiver = await startWebhookReceiver();
    try {
      const added = await cli(['webhooks', 'add', '--events', 'batch.completed', receiver.url, '--json']);
      expect(added.code).toBe(0);
      const endpoint = JSON.parse(added.stdout) as { id: string; secret: string };
      expect((await cli(['webhooks', 'list'])).stdout).toContain(`${endpoint.id}  ${receiver.url}  batch.completed`);

      await writeFile(path.join(dir, 'hooked.jsonl'), batchLines({ model, count: 5 }));
      const id = (JSON.parse((await cli(['submit', 'hooked.jsonl', '--json'])).stdout) as { id: string }).id;
      await receiver.waitFor(() => receiver.about(id).length > 0);
      expect(verified(endpoint.secret, receiver.about(id)[0]!)).toMatchObject({
        type: 'batch.completed',
        data: { id },
      });
      expect((await cli(['webhooks', 'deliveries', endpoint.id])).stdout).toMatch(
        new RegExp(`batch.completed +${id} +delivered +1 attempts, last 200`),
      );
      expect((await cli(['webhooks', 'remove', endpoint.id])).code).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it('says what went wrong, with exit code 1, when the API refuses', async () => {
    const missing = await cli(['status', 'batch_doesnotexist']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: 404 .*batch_doesnotexist/m);
    const noFile = await cli(['submit', 'no-such-file.jsonl']);
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toMatch(/^error: .*no-such-file\.jsonl/m);
    const badKey = await runCli(['list'], { OPENAI_BASE_URL: `${stack.apiUrl}/v1`, OPENAI_API_KEY: 'sk-wrong' });
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/^error: 401 Incorrect API key/m);
    const down = await runCli(['list'], { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_API_KEY: 'sk-any' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^error: cannot reach the API at http:\/\/127\.0\.0\.1:9\/v1 .*npm start/m);
  });
});
