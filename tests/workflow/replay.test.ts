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
  // Recorded so far: batch-completed from b67614c (before 'auto-import') and f7c8ee5 (before 'webhooks').
  // Still to record (record.ts): the other batch scenarios, 4439da9 (before 'bounded-control' and
  // 'expiry-from-creation'), and the current code's histories of all three workflows.
  it('has histories to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(2);
  });

  it.each(files)('%s', async (file) => {
    const json: unknown = JSON.parse(await readFile(path.join(DIR, file), 'utf8'));
    const history = temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
    expect(history.events.length).toBeGreaterThan(3);
    // Throws DeterminismViolationError (or the workflow's own error) when the code no longer fits.
    await Worker.runReplayHistory({ workflowBundle }, history, file);
  });
});
