// docs/first-ten-minutes.md, run as written: its Python files and commands are taken out of the doc
// and run in a folder of their own against a stack with Label Studio, and what each prints is held
// against what the doc says it prints, so the walkthrough cannot drift from the system.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { devServerUiUrl, readTemporalDevConfig } from '../../dev/temporal-dev-config.js';
import { loadConfig } from '../../lib/config.js';
import { runCli, type CliResult } from '../support/cli.js';
import { waitForCuration } from '../support/curation.js';
import { annotateTask, startTestLabelStudio, tasksIn, type TestLabelStudio } from '../support/label-studio.js';
import { pythonWithOpenAI } from '../support/python.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const DOC = path.join(process.cwd(), 'docs', 'first-ten-minutes.md');
const run = promisify(execFile);

interface DocBlock {
  /** `run` (commands), `prints` (their output), `file` (a file to save) or `line of` (a line a file holds). */
  kind: string;
  name: string;
  body: string;
}

/** The doc's marked blocks: an HTML comment naming the block right above its fence. */
function markedBlocks(markdown: string): Map<string, DocBlock> {
  const blocks = new Map<string, DocBlock>();
  for (const m of markdown.matchAll(/^<!-- (run|prints|file|line of): (\S+) -->\n```\w*\n([\s\S]*?)^```$/gm)) {
    const [, kind = '', name = '', body = ''] = m;
    const key = `${kind}: ${name}`;
    if (blocks.has(key)) throw new Error(`docs/first-ten-minutes.md marks two blocks "${key}"`);
    blocks.set(key, { kind, name, body: body.replace(/\n$/, '') });
  }
  return blocks;
}

/**
 * Output as the doc can promise it: ids, ports, sizes, rates and times differ between runs; with
 * `loose`, every number does (progress caught mid-batch), and column padding too.
 */
function normalize(text: string, loose = false): string[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      let l = line
        .replace(/batch_[A-Za-z0-9]+/g, 'batch_…')
        .replace(/file-[A-Za-z0-9]+/g, 'file-…')
        .replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:…')
        .replace(/\/projects\/\d+\//g, '/projects/…/')
        .replace(/\(\d+(\.\d+)? (B|KB|MB|GB)\)/g, '(… size)')
        .replace(/\|[#-]+\|/g, '|…|');
      if (loose)
        l = l
          // A rate or ETA not known yet (one poll so far) is shown as "--".
          .replace(/-- req\/s/g, '0 req/s')
          .replace(/ETA --/g, 'ETA 0')
          .replace(/\d+(\.\d+)?(s|m|h)?/g, '#')
          .replace(/#(#)+/g, '#')
          .replace(/\s+/g, ' ');
      return l.trimEnd();
    });
}

describe('docs/first-ten-minutes.md, run as written', () => {
  const config = loadConfig({});
  const docApiUrl = `http://127.0.0.1:${config.api.port}/v1`;
  const docApiKey = config.dev.apiKey;
  const [docModel = ''] = config.simulator.models;

  let blocks: Map<string, DocBlock>;
  let ls: TestLabelStudio;
  let stack: TestStack;
  let python: string;
  let work: string;
  let batchId = '';
  const stops: (() => Promise<void>)[] = [];

  const block = (kind: string, name: string): string => {
    const found = blocks.get(`${kind}: ${name}`);
    if (found === undefined) throw new Error(`docs/first-ten-minutes.md has no block marked "${kind}: ${name}"`);
    return found.body;
  };

  /** Saves a `file:` block where the commands run, pointed at this stack instead of the default one. */
  async function saveFile(name: string): Promise<void> {
    const body = block('file', name);
    // The doc's code names the stack as `npm start` prints it; the test's stack is elsewhere.
    expect(body, `${name} should use the API address npm start prints`).toContain(`"${docApiUrl}"`);
    expect(body, `${name} should use the key npm start prints`).toContain(`"${docApiKey}"`);
    await writeFile(
      path.join(work, name),
      body.replaceAll(`"${docApiUrl}"`, `"${stack.apiUrl}/v1"`).replaceAll(`"${docApiKey}"`, `"${stack.apiKey}"`),
    );
  }

  /** Runs a `run:` block's one command in the walkthrough's folder, as a shell would, with $BATCH set. */
  async function runStep(name: string): Promise<CliResult> {
    const commands = block('run', name)
      .split('\n')
      .filter((l) => l.trim() !== '');
    // One command a block, so what the doc says it prints belongs to that command.
    expect(commands, `the "${name}" block runs one command`).toHaveLength(1);
    const words = (commands[0] ?? '').trim().split(/\s+/);
    const args = words.map((w) => (w === '$BATCH' ? batchId : w));
    const unsupported = args.find((w) => /['"`|<>;&\\$()*]/.test(w));
    if (unsupported !== undefined)
      throw new Error(`the "${name}" block uses shell syntax this test cannot run: ${unsupported}`);
    if (args[0] === 'npx' && args[1] === 'gpu-batch')
      return await runCli(args.slice(2), { OPENAI_BASE_URL: `${stack.apiUrl}/v1`, OPENAI_API_KEY: stack.apiKey }, work);
    if (args[0] === 'python3') {
      try {
        const { stdout, stderr } = await run(python, args.slice(1), { cwd: work, timeout: 60_000 });
        return { stdout, stderr, code: 0 };
      } catch (err) {
        const e = err as { stdout: string; stderr: string; code: number };
        return { stdout: e.stdout, stderr: e.stderr, code: e.code };
      }
    }
    throw new Error(`the "${name}" block runs "${args[0] ?? ''}", which this test does not know how to run`);
  }

  /** The step's output against the doc's `prints:` block; the real output is in the message when they differ. */
  function expectPrints(name: string, actual: string, loose = false): void {
    expect(
      normalize(actual, loose),
      `docs/first-ten-minutes.md "prints: ${name}"; this run printed:\n${actual}`,
    ).toEqual(normalize(block('prints', name), loose));
  }

  beforeAll(async () => {
    blocks = markedBlocks(await readFile(DOC, 'utf8'));
    work = await mkdtemp(path.join(tmpdir(), 'first-ten-minutes-'));
    stops.push(() => rm(work, { recursive: true, force: true }));
    python = await pythonWithOpenAI();
    ls = await startTestLabelStudio();
    stops.push(() => ls.destroy());
    // The model npm start serves, on an engine slow enough (about twenty seconds for the doc's batch)
    // that the batch is still running when `top` looks at it, as it is for someone following along.
    const simulator = await startTestSimulator({ models: [docModel], maxNumSeqs: 4, tokenLatencyMs: 50 });
    stops.push(() => simulator.close());
    const apiPort = await getPort();
    stack = await startTestStack({
      apiPort,
      engines: [simulator.url],
      env: {
        ...ls.env,
        // As npm start -- --with-label-studio wires it: reviews are counted as curators submit them.
        CURATION_WEBHOOK_URL: `http://127.0.0.1:${apiPort}/hooks/label-studio`,
        CURATION_WEBHOOK_SECRET: 'first-ten-minutes',
      },
    });
    stops.push(() => stack.stop());
  });

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  it('1. shows the addresses, key and login that npm start -- --with-label-studio prints', () => {
    const banner = block('prints', 'start').split('\n');
    const { port, user, password } = config.labelStudio.local;
    expect(banner).toContain(`  API           ${docApiUrl}   (Authorization: Bearer ${docApiKey})`);
    expect(banner).toContain(`  Models        ${config.simulator.models.join(', ')}`);
    expect(banner).toContain(
      `  Temporal UI   ${devServerUiUrl(readTemporalDevConfig(config.temporal.devConfigPath)) ?? ''}`,
    );
    expect(banner).toContain(`  Label Studio  http://127.0.0.1:${port}   (curators log in as ${user} / ${password})`);
  });

  it('2. submits a batch from Python with the openai package', async () => {
    await saveFile('submit.py');
    const submitted = await runStep('submit');
    expect(submitted.code, submitted.stderr).toBe(0);
    batchId = /created (batch_\S+)/.exec(submitted.stdout)?.[1] ?? '';
    expectPrints('submit', submitted.stdout);
    const batch = await stack.openai.batches.retrieve(batchId);
    expect(batch).toMatchObject({ endpoint: '/v1/chat/completions', completion_window: '24h' });
    const input = await readFile(path.join(work, 'requests.jsonl'), 'utf8');
    expect(input.trim().split('\n')).toHaveLength(100);
  });

  it('3. shows it running in gpu-batch top, and to its end in gpu-batch watch', async () => {
    // Someone following along runs top a few seconds after submitting: by then it has left validation.
    for (const deadline = Date.now() + 30_000; ;) {
      const { status } = await stack.openai.batches.retrieve(batchId);
      if (status !== 'validating') break;
      if (Date.now() > deadline) throw new Error(`${batchId} still validating after 30 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const top = await runStep('top');
    expect(top.code, top.stderr).toBe(0);
    const row = top.stdout.split('\n').find((l) => l.startsWith(batchId));
    expect(row, `top --once printed:\n${top.stdout}`).toMatch(
      new RegExp(`${docModel}\\s+running\\s+\\|[#-]+\\|\\s+\\d+/100 done`),
    );
    expectPrints('top', top.stdout, true);

    const watched = await runStep('watch');
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stdout).toContain(`${batchId} completed: 100 requests, 100 completed, 0 failed`);
    const lastBar = watched.stderr.trim().split('\n').at(-1) ?? '';
    expectPrints('watch', `${lastBar}\n${watched.stdout}`, true);
  });

  it("3. gives the batch's workflow the summary the Temporal UI shows", async () => {
    const described = await stack.temporal.workflow.getHandle(batchId).describe();
    expect(await described.staticSummary()).toBe(block('prints', 'temporal-summary'));
  });

  it('4. downloads the answers from Python and with gpu-batch download', async () => {
    await saveFile('download.py');
    const fromPython = await runStep('download-python');
    expect(fromPython.code, fromPython.stderr).toBe(0);
    expectPrints('download-python', fromPython.stdout);
    const answers = async (): Promise<string[]> =>
      (await readFile(path.join(work, 'answers.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
    const expected = Array.from({ length: 100 }, (_, i) => `fact-${i}`);
    expect(await answers()).toEqual(expected);

    await rm(path.join(work, 'answers.jsonl'));
    const fromCli = await runStep('download-cli');
    expect(fromCli.code, fromCli.stderr).toBe(0);
    expectPrints('download-cli', fromCli.stdout);
    expect(await answers()).toEqual(expected);
  });

  it('5. imports the answers into Label Studio and counts the reviews curators submit', async () => {
    // The import starts as the batch ends; someone reading step 4 gives it the time it needs.
    const curation = await waitForCuration(stack, batchId, undefined, 60_000);
    expect(curation).toMatchObject({ status: 'completed', tasks_imported: 100 });
    const status = await runStep('curation-status');
    expect(status.code, status.stderr).toBe(0);
    expectPrints('curation-status', status.stdout);
    expect(status.stdout).toContain(`review at ${curation.label_studio_url ?? ''}`);

    // The curator's clicks, as Label Studio records them (curation-ui.test.ts clicks them in a browser).
    const tasks = new Map(
      (await tasksIn(ls, curation.label_studio_project_id ?? 0, batchId)).map((t) => [t.data.custom_id, t]),
    );
    const review = async (customId: string, verdict: string, correction?: string): Promise<void> => {
      const task = tasks.get(customId);
      if (task === undefined) throw new Error(`no task for ${customId} in Label Studio`);
      // Submit sends the correction box too, untouched (the model's answer) unless it was edited.
      const text = correction ?? String(task.data.response);
      const status = await annotateTask(ls, task.id, [
        { from_name: 'verdict', to_name: 'response', type: 'choices', value: { choices: [verdict] } },
        { from_name: 'correction', to_name: 'response', type: 'textarea', value: { text: [text] } },
      ]);
      expect(status).toBe(201);
    };
    await review('fact-0', 'Accept');
    await review('fact-1', 'Reject', 'One is neither prime nor composite.');
    await review('fact-2', 'Reject');
    await waitForCuration(stack, batchId, (c) => c.reviewed === 3, 20_000);
    const reviewed = await runStep('curation-reviewed');
    expect(reviewed.code, reviewed.stderr).toBe(0);
    expectPrints('curation-reviewed', reviewed.stdout);
  });

  it('6. exports the accepted and corrected answers as fine-tuning data', async () => {
    const exported = await runStep('export');
    expect(exported.code, exported.stderr).toBe(0);
    expectPrints('export', exported.stdout);
    const lines = (await readFile(path.join(work, 'data.jsonl'), 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines).toContain(block('line of', 'data.jsonl'));
    const accepted = lines
      .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] })
      .find((e) => e.messages[0]?.content === 'Tell me one fact about the number 0.');
    const answer = (
      JSON.parse((await readFile(path.join(work, 'answers.jsonl'), 'utf8')).split('\n')[0] ?? '') as {
        response: { body: { choices: { message: { content: string } }[] } };
      }
    ).response.body.choices[0]?.message.content;
    expect(accepted?.messages.at(-1)).toEqual({ role: 'assistant', content: answer });
  });
});
