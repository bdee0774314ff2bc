// The Temporal Web UI as an operator reads it, in a real browser (Debian's Chromium): the batch's row
// in the list says which project and model and how many requests; its page says how far it is
// (counts, rate, ETA) and what each chunk holds, without opening a payload or a log. Screenshots of
// each screen go to the run's folder, and to docs/images with UPDATE_SCREENSHOTS=1.
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import OpenAI from 'openai';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { addKey } from '../../api/services/keys.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, submitBatch, waitForBatch, waitForProgress } from '../support/batches.js';
import { launchBrowser } from '../support/browser.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

const DOCS_IMAGES = path.resolve(import.meta.dirname, '../../docs/images');

/** The number in "<n> of 2,000 requests done" of the current details. */
function requestsDone(text: string): number {
  const match = /([\d,]+) of 2,000 requests done/.exec(text);
  if (match?.[1] === undefined) throw new Error(`no request count in the current details: ${text}`);
  return Number(match[1].replace(/,/g, ''));
}

describe('the Temporal UI', () => {
  const { temporalUiUrl, tmpDir } = inject('services');
  // Unset until beforeAll gets that far: afterAll stops what did start.
  let stack: TestStack | undefined;
  let engine: RunningSimulator | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const model = 'ui-model';
  const project = 'vision-team';
  let team: TestStack;
  const shots = path.join(tmpDir, 'temporal-ui');

  const screenshot = async (name: string, target: Page | Locator = page): Promise<void> => {
    const file = path.join(shots, name);
    await target.screenshot({ path: file });
    if (process.env.UPDATE_SCREENSHOTS === '1') await copyFile(file, path.join(DOCS_IMAGES, name));
  };

  /** The batch's page, its User Metadata tab (clicked once the page has the workflow: earlier, the tab stays empty). */
  const openUserMetadata = async (batchId: string): Promise<void> => {
    await page.goto(`${temporalUiUrl}/namespaces/default/workflows/${batchId}`);
    await page.getByText('BatchWorkflow', { exact: true }).first().waitFor({ state: 'visible' });
    await page.getByText('User Metadata', { exact: true }).click();
  };

  /** What the page shows, the frames the UI renders user markdown in (summary, details) included. */
  const screenText = async (): Promise<string> => {
    const texts = await Promise.all(
      page.frames().map((frame) =>
        frame
          .locator('body')
          .innerText({ timeout: 5_000 })
          .catch(() => ''),
      ),
    );
    return texts.join('\n');
  };

  /** The batch's User Metadata tab as it reads once its current details have rendered. */
  const readBatchPage = async (batchId: string): Promise<string> => {
    await openUserMetadata(batchId);
    let text = '';
    await expect
      .poll(
        async () => {
          text = await screenText();
          return text;
        },
        { timeout: 15_000, interval: 250 },
      )
      .toMatch(/requests done/);
    return text;
  };

  beforeAll(async () => {
    if (temporalUiUrl === undefined)
      throw new Error('the Temporal server of this run has no Web UI: set TEMPORAL_UI_URL');
    // 160 ms a request, 4 at once: 2,000 requests take ~80 s, long enough to be read while running.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 10 });
    stack = await startTestStack({ engines: [engine.url], env: { GPU_MAX_INFLIGHT: '4', BATCH_CHUNK_SIZE: '250' } });
    await addKey(stack, project, 'sk-vision-team');
    team = { ...stack, openai: new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: 'sk-vision-team', maxRetries: 0 }) };
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(30_000);
    await mkdir(shots, { recursive: true });
    if (process.env.UPDATE_SCREENSHOTS === '1') await mkdir(DOCS_IMAGES, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    await engine?.close();
  });

  it("shows a running batch's project, model, size, progress, rate, ETA and chunks", async () => {
    const batch = await submitBatch(team, batchLines({ model, count: 2000 }));
    await waitForProgress(team.openai, batch.id, 300);

    // Its page: summary and details as started, current details as it runs.
    // The ETA comes once the first wave of chunks has ended (the rate before it undercounts):
    // read the page again, as a person would, until it is there.
    let first = '';
    await expect
      .poll(
        async () => {
          first = await readBatchPage(batch.id);
          return first;
        },
        { timeout: 90_000, interval: 2_000 },
      )
      .toMatch(/ETA/);
    expect(first).toMatch(new RegExp(`${project} · /v1/chat/completions · [\\d.]+ KB input · 24h window`));
    expect(first).toContain(`Input file ${batch.input_file_id}`);
    expect(first).toMatch(/in progress · [\d,]+ of 2,000 requests done \([\d.]+%\) · 0 failed/);
    expect(first).toMatch(/Rate [\d.]+ requests\/s · ETA \d\d-\d\d \d\d:\d\d:\d\d UTC · Window until \d\d-\d\d /);
    expect(first).toMatch(new RegExp(`Model ${model} · Chunks \\d running, \\d of 8 done`));
    // The activities, each with its line: which lines a chunk holds.
    expect(first).toMatch(/validate [\d.]+ KB/);
    expect(first).toContain('chunk 1/8 · lines 1–250');
    await screenshot('temporal-ui-batch.png');

    // Read again later: the details moved on with the batch.
    await waitForProgress(team.openai, batch.id, Math.min(2000, requestsDone(first) + 200));
    await expect
      .poll(async () => requestsDone(await readBatchPage(batch.id)), { timeout: 30_000, interval: 1_000 })
      .toBeGreaterThan(requestsDone(first));

    // The timeline: each chunk's bar carries its line.
    await page.goto(`${temporalUiUrl}/namespaces/default/workflows/${batch.id}`);
    for (const line of ['runChunk • chunk 1/8 · lines 1–250', 'runChunk • chunk 2/8 · lines 251–500']) {
      await expect.poll(() => screenText(), { timeout: 30_000 }).toContain(line);
    }
    await screenshot('temporal-ui-timeline.png');

    // The list, with the batch's search attributes as columns (the docs say how: the table's ⚙).
    await page.goto(
      `${temporalUiUrl}/namespaces/default/workflows?query=${encodeURIComponent(`WorkflowId="${batch.id}"`)}`,
    );
    await page.getByTestId('workflows-summary-table-configuration-button').click();
    for (const column of ['Run ID', 'End']) await page.getByRole('button', { name: `Remove ${column} column` }).click();
    for (const column of ['BatchProject', 'BatchModel', 'BatchRequestCount', 'BatchStatus']) {
      await page.getByRole('button', { name: `Add ${column} column` }).click();
    }
    await page.getByRole('button', { name: 'Close' }).filter({ visible: true }).first().click();
    await page.getByRole('button', { name: 'Collapse saved views' }).click();
    const row = page.getByTestId('workflows-summary-configurable-table-row').filter({ hasText: batch.id });
    await expect.poll(() => row.innerText(), { timeout: 30_000 }).toMatch(/in_progress|finalizing|completed/);
    const rowText = await row.innerText();
    expect(rowText).toContain(project);
    expect(rowText).toContain(model);
    expect(rowText).toContain('2000');
    await screenshot('temporal-ui-list.png');

    // Ended: its result and memo say how.
    expect(await waitForBatch(team.openai, batch.id, 120_000)).toMatchObject({ status: 'completed' });
    await page.goto(`${temporalUiUrl}/namespaces/default/workflows/${batch.id}`);
    await expect.poll(() => screenText(), { timeout: 30_000 }).toMatch(/"status": "completed"/);
    expect(await screenText()).toMatch(/"completed": 2000/);
    // A 2,000-line batch at a few dozen requests/s, read screen by screen: on two busy cores, minutes.
  }, 300_000);
});
