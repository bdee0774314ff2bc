// Replays every committed history (tests/workflow/histories, recorded from the current code and from
// the commits just before each patched() marker; see record.ts there) against the current workflow
// code: a change that would break a workflow already running, started by this or older code, fails here.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { temporal } from '@temporalio/proto';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';

import { bundleWorkflows } from '../support/workflow-env.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories');
const files = (await readdir(DIR)).filter((f) => f.endsWith('.json')).sort();

let workflowBundle: WorkflowBundle;
beforeAll(async () => {
  workflowBundle = await bundleWorkflows();
});

describe('committed histories replay against the current workflow code', () => {
  // Recorded: every workflow (batch completed, expired and dead-lettered; auto-import; webhook delivery)
  // from the code before the refactor that changed workflow inputs (dd9a7b8) and from 4439da9 (before
  // 'bounded-control' and 'expiry-from-creation'), and a completed batch from b67614c (before
  // 'auto-import') and f7c8ee5 (before 'webhooks'). A cancelled batch is not recorded yet: on the
  // time-skipping test server, cancelling a running activity of those commits fails its activation.
  const expected = ['batch-completed', 'batch-expired', 'batch-dead-letter', 'auto-import', 'webhook-delivery'];
  it('has each workflow from before the input change and from before the oldest marker', () => {
    for (const commit of ['dd9a7b8', '4439da9'])
      for (const scenario of expected) expect(files).toContain(`${commit}-${scenario}.json`);
    expect(files).toEqual(expect.arrayContaining(['b67614c-batch-completed.json', 'f7c8ee5-batch-completed.json']));
  });

  it.each(files)('%s', async (file) => {
    const json: unknown = JSON.parse(await readFile(path.join(DIR, file), 'utf8'));
    const history = temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
    expect(history.events.length).toBeGreaterThan(3);
    // Throws DeterminismViolationError (or the workflow's own error) when the code no longer fits.
    await Worker.runReplayHistory({ workflowBundle }, history, file);
  });
});
