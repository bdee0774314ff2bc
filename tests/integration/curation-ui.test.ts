// What a curator sees and does, in a real browser: a batch's results auto-imported into a real Label
// Studio, reviewed there by clicking and typing, and the review coming back out of
// `gpu-batch curation export`. Screenshots of each screen go to a temporary folder (kept when a test
// fails); UPDATE_SCREENSHOTS=1 also refreshes the one in docs/curation.md.
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';

import { fileLines, runBatch } from '../support/batches.js';
import { launchBrowser } from '../support/browser.js';
import { runCli } from '../support/cli.js';
import { waitForCuration } from '../support/curation.js';
import { LS_PASSWORD, LS_USER } from '../support/label-studio-credentials.js';
import { startTestLabelStudio, type TestLabelStudio } from '../support/label-studio.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const DOC_SCREENSHOT = path.join(process.cwd(), 'docs', 'images', 'curation-labeling.png');
const UI_TIMEOUT_MS = 30_000;

const PROMPTS = [
  'What is the capital of France?',
  'Name a prime number larger than ten.',
  'Translate "good morning" into Italian.',
];

interface Line {
  customId: string;
  prompt: string;
  answer: string;
}

/** Waits for something a curator must see, and says what it was when it never shows. */
async function visible(locator: Locator, what: string): Promise<Locator> {
  try {
    await locator.waitFor({ state: 'visible', timeout: UI_TIMEOUT_MS });
  } catch (err) {
    throw new Error(`Label Studio never showed ${what} (${UI_TIMEOUT_MS} ms)`, { cause: err });
  }
  return locator;
}

/** The text right under one of the review config's headers ("Request", "Model answer", "Correction ..."). */
async function textUnder(view: Locator, header: string): Promise<string> {
  const heading = await visible(view.getByRole('heading', { name: header, exact: true }), `the "${header}" header`);
  const body = await visible(heading.locator('xpath=following-sibling::div[1]'), `the text under "${header}"`);
  return (await body.innerText()).trim();
}

describe('curating in Label Studio, in a browser', () => {
  let ls: TestLabelStudio;
  let stack: TestStack;
  let page: Page;
  // Undone in reverse in afterAll, so a start-up that fails half-way leaves nothing running.
  const stops: (() => Promise<void>)[] = [];
  let shots: string;
  let failed = false;
  let batchId: string;
  let projectTitle: string;
  let reviewUrl: string;
  const lines: Line[] = [];

  beforeAll(async () => {
    shots = await mkdtemp(path.join(tmpdir(), 'curation-ui-'));
    ls = await startTestLabelStudio();
    stops.push(() => ls.destroy());
    stack = await startTestStack({ env: ls.env });
    stops.push(() => stack.stop());
    const browser = await launchBrowser();
    stops.push(() => browser.close());
    page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(UI_TIMEOUT_MS);

    const model = inject('services').simulatorModel;
    const input = PROMPTS.map((prompt, i) =>
      JSON.stringify({
        custom_id: `question-${i}`,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: prompt }], max_tokens: 12 },
      }),
    ).join('\n');
    const batch = await runBatch(stack, `${input}\n`);
    expect(batch.status).toBe('completed');
    batchId = batch.id;
    const outputs = await fileLines(stack.openai, batch.output_file_id);
    for (const [i, prompt] of PROMPTS.entries()) {
      const out = outputs.find((o) => o.custom_id === `question-${i}`);
      const body = out?.response?.body as { choices?: { message?: { content?: string } }[] } | undefined;
      const answer = body?.choices?.[0]?.message?.content;
      if (answer === undefined || answer === '') throw new Error(`the batch gave no answer for question-${i}`);
      lines.push({ customId: `question-${i}`, prompt, answer });
    }

    const curation = await waitForCuration(stack, batchId, undefined, 60_000);
    expect(curation).toMatchObject({ status: 'completed', schema: 'review', tasks_imported: PROMPTS.length });
    if (curation.label_studio_url === null) throw new Error(`curation of ${batchId} gives no address to review at`);
    reviewUrl = curation.label_studio_url;
    const project = await stack.db
      .selectFrom('projects')
      .select('id')
      .where('name', '=', 'default')
      .executeTakeFirstOrThrow();
    projectTitle = `gpu-batch review ${project.id}`;

    await page.goto(`${ls.url}/user/login`);
    // Label Studio's login page is a Django form whose labels are not tied to their inputs.
    await page.locator('input[name=email]').fill(LS_USER);
    await page.locator('input[name=password]').fill(LS_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await visible(page.getByRole('link', { name: 'View All' }), 'its home page after logging in');
  });

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    if (failed) console.error(`curation UI screenshots and page dumps kept in ${shots}`);
    else await rm(shots, { recursive: true, force: true });
  });

  /** Keeps what the page showed when a test fails: a screenshot and its DOM. */
  function keepPageOnFailure(name: string): void {
    onTestFailed(async () => {
      failed = true;
      // Best effort: a browser that died must not hide the failure that is being reported.
      await page.screenshot({ path: path.join(shots, `${name}-failed.png`), fullPage: true }).catch(() => undefined);
      await page
        .content()
        .then((html) => writeFile(path.join(shots, `${name}-failed.html`), html))
        .catch(() => undefined);
    });
  }

  /** Opens a task of the open project from its task list, by the prompt a curator reads there. */
  async function openTask(line: Line): Promise<Locator> {
    await (await visible(page.getByText(`user: ${line.prompt}`).first(), `a task for "${line.prompt}"`)).click();
    await visible(page.getByRole('button').filter({ hasText: /^(Submit|Update)$/ }), 'the labeling screen');
    // The task list beside the labeling view repeats the prompt; what the curator reviews is in the view.
    const view = page.locator('.lsf-main-view');
    await visible(view.getByText(`user: ${line.prompt}`), `the task for "${line.prompt}"`);
    return view;
  }

  async function submit(): Promise<void> {
    const saved = page.getByText('Annotation saved successfully', { exact: true });
    // The last submit's notice may still be up; only a new one says this submit was saved.
    await saved.waitFor({ state: 'hidden' });
    await page.getByRole('button', { name: 'Submit current annotation' }).click();
    await visible(saved, 'that the annotation was saved');
    // Its accessible name is just "submit"; what a curator reads on it is "Update".
    await visible(page.getByRole('button').filter({ hasText: /^Update$/ }), 'the review as submitted');
  }

  async function exported(): Promise<Map<string, { role: string; content: string }[]>> {
    const cli = await runCli(['curation', 'export', batchId], {
      OPENAI_BASE_URL: `${stack.apiUrl}/v1`,
      OPENAI_API_KEY: stack.apiKey,
    });
    expect(cli.code, cli.stderr).toBe(0);
    const examples = cli.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => (JSON.parse(l) as { messages: { role: string; content: string }[] }).messages);
    return new Map(examples.map((m) => [m[0]?.content ?? '', m]));
  }

  it("shows a curator the prompt, the model's answer pre-filled and Accept/Reject, and exports their correction", async () => {
    keepPageOnFailure('correct');
    const line = lines[0]!;

    // From the home page to the project list, and the batch's project by its name, as a curator goes.
    await page.getByRole('link', { name: 'View All' }).click();
    // The home page lists recent projects too; the project list is what a curator picks from.
    await page.waitForURL(/\/projects\b/);
    const card = await visible(
      page.getByRole('link').filter({ hasText: projectTitle }),
      `the project "${projectTitle}" in the project list`,
    );
    // The card says how far the review is (it fills in after the card shows): no task done yet.
    await visible(
      card.getByText(`0 / ${PROMPTS.length}`, { exact: true }),
      `"0 / ${PROMPTS.length}" tasks on its card`,
    );
    await page.screenshot({ path: path.join(shots, 'projects.png') });
    await card.click();
    await visible(page.getByText(line.customId, { exact: true }), `the batch's tasks in "${projectTitle}"`);

    const view = await openTask(line);
    expect(await textUnder(view, 'Request')).toBe(`user: ${line.prompt}`);
    expect(await textUnder(view, 'Model answer')).toBe(line.answer);
    await visible(view.getByRole('checkbox', { name: 'Accept' }), 'the Accept choice');
    await visible(view.getByRole('checkbox', { name: 'Reject' }), 'the Reject choice');
    // The correction box starts as the model's answer, so a correction is an edit rather than a retyping.
    expect(await textUnder(view, 'Correction (starts as the model answer: edit it to correct it)')).toBe(line.answer);
    const prefilled = await visible(view.getByTestId('htx-textbox-content'), 'the pre-filled correction');
    expect((await prefilled.innerText()).trim()).toBe(line.answer);
    // Its edit button shows on hover, which is how the screenshot in the docs should show it.
    await prefilled.hover();
    await visible(view.getByRole('button', { name: 'Edit Region' }), 'the button that edits the correction');
    const screenshot = path.join(shots, 'labeling.png');
    await page.screenshot({ path: screenshot });
    if (process.env.UPDATE_SCREENSHOTS === '1') await copyFile(screenshot, DOC_SCREENSHOT);

    const correction = 'Paris is the capital of France.';
    await view.getByRole('checkbox', { name: 'Reject' }).check();
    await view.getByRole('button', { name: 'Edit Region' }).click();
    const box = await visible(view.getByRole('textbox'), 'the correction text area');
    expect(await box.inputValue()).toBe(line.answer);
    await box.fill(correction);
    await view.getByRole('button', { name: 'Save' }).click();
    await visible(view.getByTestId('htx-textbox-content').getByText(correction), 'the saved correction');
    await submit();
    await page.screenshot({ path: path.join(shots, 'corrected.png') });

    const examples = await exported();
    expect(examples.get(line.prompt)).toEqual([
      { role: 'user', content: line.prompt },
      { role: 'assistant', content: correction },
    ]);
    // Only what was reviewed comes out.
    expect([...examples.keys()]).toEqual([line.prompt]);
  });

  it('exports an accepted answer as it was, and leaves out one rejected without a correction', async () => {
    keepPageOnFailure('accept-reject');
    const [, accepted, rejected] = lines as [Line, Line, Line];
    // Straight to the project, from the link `gpu-batch curation status` prints.
    await page.goto(reviewUrl);

    await (await openTask(accepted)).getByRole('checkbox', { name: 'Accept' }).check();
    await submit();
    await (await openTask(rejected)).getByRole('checkbox', { name: 'Reject' }).check();
    await submit();

    const examples = await exported();
    expect(examples.get(accepted.prompt)).toEqual([
      { role: 'user', content: accepted.prompt },
      { role: 'assistant', content: accepted.answer },
    ]);
    // Label Studio sends the untouched pre-filled correction along with a Reject; it is no correction.
    expect(examples.get(rejected.prompt), 'a task only rejected is not a fine-tuning example').toBeUndefined();
  });
});
