// Auto-import into a real Label Studio, read back through its own API: the right tasks, predictions
// and projects; no duplicates after faults; and reviews that come back as fine-tuning data.
import getPort from 'get-port';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createCurationActivities, type ImportPlan } from '../../activities/auto-import.js';
import { addKey } from '../../api/services/keys.js';
import { loadCurationSchemas } from '../../lib/curation-schema.js';
import { LabelStudio } from '../../lib/label-studio.js';
import { batchLines, runBatch, uploadBatchFile, waitForBatch } from '../support/batches.js';
import { runCli } from '../support/cli.js';
import { curationOf, waitForCuration } from '../support/curation.js';
import { annotateTask, startTestLabelStudio, tasksIn, type TestLabelStudio } from '../support/label-studio.js';
import { spawnEntry, type ChildUnderTest } from '../support/processes.js';
import { startTestStack, type TestStack } from '../support/stack.js';

async function lsProjects(ls: TestLabelStudio): Promise<{ id: number; title: string }[]> {
  const res = await fetch(`${ls.url}/api/projects/?page_size=100`, { headers: { authorization: `Token ${ls.token}` } });
  return ((await res.json()) as { results: { id: number; title: string }[] }).results;
}

describe('auto-import into Label Studio', () => {
  let ls: TestLabelStudio;
  let stack: TestStack;
  let apiPort: number;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    ls = await startTestLabelStudio();
    apiPort = await getPort();
    stack = await startTestStack({
      apiPort,
      env: {
        ...ls.env,
        CURATION_PAGE_SIZE: '10',
        CURATION_WEBHOOK_URL: `http://127.0.0.1:${apiPort}/hooks/label-studio`,
        CURATION_WEBHOOK_SECRET: 'hook-secret',
      },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await ls.destroy();
  });

  let projectId: string;
  beforeAll(async () => {
    projectId = (
      await stack.db.selectFrom('projects').select('id').where('name', '=', 'default').executeTakeFirstOrThrow()
    ).id;
  });

  it("puts a batch's results in the schema's project as tasks with the answer pre-filled", async () => {
    const batch = await runBatch(stack, batchLines({ model, count: 25 }));
    const curation = await waitForCuration(stack, batch.id);
    expect(curation).toMatchObject({
      status: 'completed',
      reason: null,
      schema: 'review',
      tasks_total: 25,
      tasks_imported: 25,
      pages_total: 3,
      pages_done: 3,
    });
    expect(curation.label_studio_url).toBe(`${ls.url}/projects/${curation.label_studio_project_id}/data`);

    // One Label Studio project per API project and schema, named for both.
    const projects = await lsProjects(ls);
    expect(projects.filter((p) => p.title === `gpu-batch review ${projectId}`).map((p) => p.id)).toEqual([
      curation.label_studio_project_id,
    ]);
    const tasks = await tasksIn(ls, curation.label_studio_project_id!, batch.id);
    expect(tasks.map((t) => t.data.custom_id).sort()).toEqual(Array.from({ length: 25 }, (_, i) => `req-${i}`).sort());
    const outputs = new Map(
      (await (await stack.openai.files.content(batch.output_file_id!)).text())
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as { custom_id: string; response: { body: { choices: { message: { content: string } }[] } } },
        )
        .map((l) => [l.custom_id, l.response.body.choices[0]!.message.content]),
    );
    for (const task of tasks) {
      const answer = outputs.get(task.data.custom_id as string);
      expect(task.data.response).toBe(answer);
      expect(task.data.prompt).toContain(`Question number ${String(task.data.custom_id).slice(4)}`);
      expect(task.predictions).toHaveLength(1);
      expect(task.predictions?.[0]).toMatchObject({
        model_version: model,
        result: [{ from_name: 'correction', type: 'textarea', value: { text: [answer] } }],
      });
    }

    // A second batch with the same schema goes to the same project.
    const second = await runBatch(stack, batchLines({ model, count: 5 }));
    expect((await waitForCuration(stack, second.id)).label_studio_project_id).toBe(curation.label_studio_project_id);
    expect((await lsProjects(ls)).filter((p) => p.title === `gpu-batch review ${projectId}`)).toHaveLength(1);

    // Another API project's batch goes to a Label Studio project of its own: tenants never share one.
    const otherKey = 'sk-other-tenant';
    await addKey(stack, 'other-tenant', otherKey);
    const other = new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: otherKey, maxRetries: 0 });
    const otherStack = { ...stack, openai: other };
    const otherBatch = await runBatch(otherStack, batchLines({ model, count: 3 }));
    const otherCuration = await waitForCuration(otherStack, otherBatch.id);
    expect(otherCuration).toMatchObject({ status: 'completed', tasks_imported: 3 });
    expect(otherCuration.label_studio_project_id).not.toBe(curation.label_studio_project_id);
    // Nor can it name the first tenant's project to import into it (or learn whether it exists).
    const intruder = await runBatch(otherStack, batchLines({ model, count: 3 }), undefined, {
      metadata: { curation_project: String(curation.label_studio_project_id) },
    });
    expect(await waitForCuration(otherStack, intruder.id)).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining(
        `Label Studio project ${curation.label_studio_project_id} (metadata curation_project) is not one this project may import into`,
      ) as unknown,
    });
    const stranger = await runBatch(otherStack, batchLines({ model, count: 3 }), undefined, {
      metadata: { curation_project: '99999' },
    });
    expect(await waitForCuration(otherStack, stranger.id)).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining(
        'Label Studio project 99999 (metadata curation_project) is not one this project may import into',
      ) as unknown,
    });
    expect(await tasksIn(ls, curation.label_studio_project_id!, intruder.id)).toHaveLength(0);
  });

  it('makes a project per batch for a per-batch schema, and honours a project an operator granted', async () => {
    const labelled = await runBatch(stack, batchLines({ model, count: 4 }), undefined, {
      metadata: { curation_schema: 'label' },
    });
    const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 4 }));
    const ownProject = await waitForCuration(stack, labelled.id);
    expect(ownProject).toMatchObject({ status: 'completed', schema: 'label', tasks_imported: 4 });
    const title = (await lsProjects(ls)).find((p) => p.id === ownProject.label_studio_project_id)?.title;
    expect(title).toBe(`gpu-batch labels ${labelled.id}`);

    const client = new LabelStudio({ url: ls.url, apiKey: ls.token, timeoutMs: 10_000, retries: 1 });
    const review = loadCurationSchemas('curation-schemas').get('review')!;
    const mine = await client.createProject({
      title: 'Curators own project',
      description: '',
      label_config: review.label_config,
    });
    await client.close();
    const name = async (): Promise<string> => {
      const named = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        metadata: { curation_project: String(mine.id) },
      });
      await waitForBatch(stack.openai, named.id);
      return named.id;
    };
    // Not this project's until an operator says so.
    expect(await waitForCuration(stack, await name())).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('is not one this project may import into') as unknown,
    });
    const granted = await runCli(['curation', 'grant', String(mine.id), '--project', 'default'], {
      DATABASE_URL: stack.processEnv().DATABASE_URL ?? '',
    });
    expect(granted.code).toBe(0);
    expect(granted.stdout).toContain(`may now import into Label Studio project ${mine.id}`);
    const named = await name();
    expect(await waitForCuration(stack, named)).toMatchObject({
      status: 'completed',
      label_studio_project_id: mine.id,
      tasks_imported: 4,
    });
    expect(await tasksIn(ls, mine.id)).toHaveLength(4);
  });

  it('fails the import, never the batch, on a bad schema or project choice', async () => {
    const file = await uploadBatchFile(stack.openai, batchLines({ model, count: 2 }));
    for (const [metadata, reason] of [
      [{ curation_schema: 'nope' }, 'unknown curation schema "nope" (known: label, review)'],
      [
        { curation_project: '99999' },
        'Label Studio project 99999 (metadata curation_project) is not one this project may import into; an operator can allow it with `gpu-batch curation grant`',
      ],
    ] as const) {
      const created = await stack.openai.batches.create({
        input_file_id: file.id,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        metadata,
      });
      const batch = await waitForBatch(stack.openai, created.id);
      expect(batch.status).toBe('completed');
      expect(await waitForCuration(stack, created.id)).toMatchObject({ status: 'failed', reason });
    }
    const off = await stack.openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      metadata: { curation: 'off' },
    });
    await waitForBatch(stack.openai, off.id);
    expect(await waitForCuration(stack, off.id)).toMatchObject({
      status: 'skipped',
      reason: 'turned off for this batch (metadata curation=off)',
    });
  });

  it('re-runs a page whose outcome was lost without duplicating a task', async () => {
    const batch = await runBatch(stack, batchLines({ model, count: 12 }));
    const curation = await waitForCuration(stack, batch.id);
    const projectId = curation.label_studio_project_id!;
    const before = await tasksIn(ls, projectId, batch.id);
    expect(before).toHaveLength(12);

    // As if the worker died after Label Studio took page 0 but before it was recorded as done.
    await stack.db
      .updateTable('curation_pages')
      .set({ status: 'posting' })
      .where('batch_id', '=', batch.id)
      .where('page', '=', 0)
      .execute();
    const client = new LabelStudio({ url: ls.url, apiKey: ls.token, timeoutMs: 10_000, retries: 1 });
    const activities = createCurationActivities({
      db: stack.db,
      store: stack.store,
      config: stack.config,
      log: stack.log,
      registry: loadCurationSchemas('curation-schemas'),
      labelStudio: client,
    });
    const plan = (await activities.planImport(batch.id)) as Extract<ImportPlan, { schema: string }>;
    expect(await activities.importPage({ batchId: batch.id, projectId, plan, page: plan.pages[0]! })).toBe(0);
    // A page already done is not even looked at.
    expect(await activities.importPage({ batchId: batch.id, projectId, plan, page: plan.pages[1]! })).toBe(0);
    await client.close();
    const after = await tasksIn(ls, projectId, batch.id);
    expect(after.map((t) => t.id).sort()).toEqual(before.map((t) => t.id).sort());
  });

  it('turns reviews made in Label Studio into fine-tuning lines, and counts them from its webhooks', async () => {
    const batch = await runBatch(stack, batchLines({ model, count: 6 }));
    const curation = await waitForCuration(stack, batch.id);
    const tasks = await tasksIn(ls, curation.label_studio_project_id!, batch.id);
    const byId = new Map(tasks.map((t) => [t.data.custom_id as string, t]));
    const annotate = async (customId: string, result: unknown[]): Promise<void> => {
      expect(await annotateTask(ls, byId.get(customId)!.id, result)).toBe(201);
    };
    const verdict = (choice: string) => ({
      from_name: 'verdict',
      to_name: 'response',
      type: 'choices',
      value: { choices: [choice] },
    });
    await annotate('req-0', [verdict('Accept')]);
    await annotate('req-1', [
      verdict('Reject'),
      { from_name: 'correction', to_name: 'response', type: 'textarea', value: { text: ['A better answer.'] } },
    ]);
    await annotate('req-2', [verdict('Reject')]);

    const res = await fetch(`${stack.apiUrl}/v1/batches/${batch.id}/curation/export`, {
      headers: { authorization: `Bearer ${stack.apiKey}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jsonl');
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
    expect(lines).toHaveLength(2);
    const byQuestion = new Map(lines.map((l) => [l.messages[0]?.content, l.messages]));
    expect(byQuestion.get('Question number 0')).toEqual([
      { role: 'user', content: 'Question number 0' },
      { role: 'assistant', content: byId.get('req-0')!.data.response },
    ]);
    expect(byQuestion.get('Question number 1')?.at(-1)).toEqual({ role: 'assistant', content: 'A better answer.' });

    // The same through the command line, into a file.
    const out = `${stack.config.paths.fileStoreDir}/export.jsonl`;
    const cli = await runCli(['curation', 'export', batch.id, '--output', out], {
      OPENAI_BASE_URL: `${stack.apiUrl}/v1`,
      OPENAI_API_KEY: stack.apiKey,
    });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('2 fine-tuning examples written to');
    const { readFile } = await import('node:fs/promises');
    expect((await readFile(out, 'utf8')).trim().split('\n')).toHaveLength(2);

    // Label Studio told the webhook receiver about each review.
    expect((await waitForCuration(stack, batch.id, (c) => c.reviewed === 3, 10_000)).reviewed).toBe(3);
  });

  it('works with a personal access token as well as a legacy token', async () => {
    const created = await fetch(`${ls.url}/api/token/`, {
      method: 'POST',
      headers: { authorization: `Token ${ls.token}` },
    });
    const pat = ((await created.json()) as { token: string }).token;
    const client = new LabelStudio({ url: ls.url, apiKey: pat, timeoutMs: 10_000, retries: 1 });
    expect((await client.whoami()).id).toBeGreaterThan(0);
    const project = await client.createProject({
      title: 'Made with a PAT',
      description: '',
      label_config: loadCurationSchemas('curation-schemas').get('review')!.label_config,
    });
    expect((await client.importTasks(project.id, [{ data: { prompt: 'p', response: 'r' } }])).count).toBe(1);
    await client.close();
  });

  it('refuses webhooks without the shared secret', async () => {
    const wrong = await fetch(`${stack.apiUrl}/hooks/label-studio`, {
      method: 'POST',
      headers: { 'x-curation-secret': 'guess' },
      body: '{}',
    });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('invalid_webhook_secret');
  });
});

describe('import faults', () => {
  let ls: TestLabelStudio;
  let stack: TestStack;
  let importer: ChildUnderTest;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    ls = await startTestLabelStudio();
    // The import worker is a process of its own here, so it can be killed.
    stack = await startTestStack({
      noImportWorker: true,
      env: { ...ls.env, CURATION_PAGE_SIZE: '5' },
    });
    importer = spawnEntry('workers/import.ts', stack.processEnv());
    await importer.waitFor('import worker ready');
  });
  afterAll(async () => {
    await importer.kill9();
    await stack.stop();
    await ls.destroy();
  });

  it('survives its import worker being killed mid-import, without a duplicate task', async () => {
    const count = 150;
    const batch = await runBatch(stack, batchLines({ model, count }));
    await waitForCuration(stack, batch.id, (c) => c.pages_done >= 5);
    await importer.kill9();
    // Killed with pages still to go, or this would test nothing.
    const atKill = await curationOf(stack, batch.id);
    expect(atKill.status).toBe('running');
    expect(atKill.pages_done).toBeLessThan(30);
    importer = spawnEntry('workers/import.ts', stack.processEnv());
    await importer.waitFor('import worker ready');
    const curation = await waitForCuration(stack, batch.id);
    expect(curation).toMatchObject({ status: 'completed', tasks_imported: count, pages_done: 30 });
    const tasks = await tasksIn(ls, curation.label_studio_project_id!, batch.id);
    expect(tasks).toHaveLength(count);
    expect(new Set(tasks.map((t) => t.data.curation_key)).size).toBe(count);
  });

  it('rides out Label Studio being down and restarted mid-import', async () => {
    const count = 150;
    const batch = await runBatch(stack, batchLines({ model, count }));
    await waitForCuration(stack, batch.id, (c) => c.pages_done >= 3);
    await ls.stop();
    await new Promise((r) => setTimeout(r, 4000));
    expect((await curationOf(stack, batch.id)).status).toBe('running');
    expect((await stack.openai.batches.retrieve(batch.id)).status).toBe('completed');
    await ls.start();
    const curation = await waitForCuration(stack, batch.id);
    expect(curation).toMatchObject({ status: 'completed', tasks_imported: count });
    const tasks = await tasksIn(ls, curation.label_studio_project_id!, batch.id);
    expect(tasks).toHaveLength(count);
    expect(new Set(tasks.map((t) => t.data.curation_key)).size).toBe(count);
  });
});

describe('curation without a usable Label Studio', () => {
  it('records that it was skipped when Label Studio is not configured', async () => {
    const stack = await startTestStack();
    try {
      const batch = await runBatch(stack, batchLines({ model: inject('services').simulatorModel, count: 2 }));
      expect(await waitForCuration(stack, batch.id)).toMatchObject({
        status: 'skipped',
        reason: expect.stringContaining('LABEL_STUDIO_URL') as unknown,
      });
    } finally {
      await stack.stop();
    }
  });

  it('ends the import with a clear reason on bad credentials, leaving the batch completed', async () => {
    const ls = await startTestLabelStudio();
    const stack = await startTestStack({ env: { LABEL_STUDIO_URL: ls.url, LABEL_STUDIO_API_KEY: 'not-the-token' } });
    try {
      const batch = await runBatch(stack, batchLines({ model: inject('services').simulatorModel, count: 2 }));
      expect(batch.status).toBe('completed');
      const curation = await waitForCuration(stack, batch.id);
      expect(curation.status).toBe('failed');
      expect(curation.reason).toContain('Label Studio refused the API key');
    } finally {
      await stack.stop();
      await ls.destroy();
    }
  });
});
