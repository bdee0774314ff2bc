// The workflows a batch leaves behind, on the time-skipping test server with mocked activities: the
// curation import into Label Studio and one webhook delivery. Inputs come from the builders the API
// and the batch use, so these run with the settings a deployment gets.
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';

import type { ImportPage, ImportPlan } from '../../activities/auto-import.js';
import { AutoImportWorkflow, type AutoImportInput } from '../../workflows/auto-import.js';
import { batchWorkflowInput } from '../../workflows/batch-lifecycle.js';
import { webhookDeliveryInput } from '../../workflows/webhook-delivery-lifecycle.js';
import { WebhookDeliveryWorkflow } from '../../workflows/webhook-delivery.js';
import { serverPerTest, testConfig, withWorker } from '../support/workflow-env.js';
import { callsOf, recorded } from '../support/workflow-mocks.js';

const t = serverPerTest();

function curationInput(taskQueue: string, batchId: string): AutoImportInput {
  const curation = batchWorkflowInput(testConfig(taskQueue), batchId, 0, 4096).curation;
  if (curation === undefined) throw new Error('batchWorkflowInput no longer sets curation');
  return { batchId, activity: curation.activity };
}

const page = (n: number): ImportPage => ({
  page: n,
  tasks: 2,
  firstLine: n * 2 + 1,
  lastLine: n * 2 + 2,
  byteStart: n * 100,
  byteEnd: (n + 1) * 100,
});
const twoPages: ImportPlan = {
  schema: 'chat',
  endpoint: '/v1/chat/completions',
  model: 'test-model',
  inputKey: 'inputs/test.jsonl',
  tasks: 4,
  pages: [page(0), page(1)],
};

describe('AutoImportWorkflow (mocked activities, time skipping)', () => {
  it('imports every page into the project, then records the import as finished', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const { activities, calls } = recorded({
      planImport: () => twoPages,
      ensureProject: () => 7,
      importPage: () => undefined,
      finishImport: () => undefined,
      failImport: () => undefined,
    });
    const result = await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, () =>
      t.env.client.workflow.execute(AutoImportWorkflow, {
        workflowId: `batch_x-curation`,
        taskQueue,
        args: [curationInput(taskQueue, 'batch_x')],
      }),
    );
    expect(result).toEqual({ status: 'completed', pages: 2, pagesDone: 2, reason: null });
    const pages = callsOf(calls, 'importPage').map((args) => args[0] as { projectId: number; page: ImportPage });
    expect(pages.map((p) => [p.projectId, p.page.page])).toEqual([
      [7, 0],
      [7, 1],
    ]);
    expect(callsOf(calls, 'finishImport')).toEqual([['batch_x']]);
    expect(callsOf(calls, 'failImport')).toEqual([]);
  });

  it('bad Label Studio credentials end the import at once, failed and saying why', async () => {
    const taskQueue = `wf-${randomUUID()}`;
    const { activities, calls } = recorded({
      planImport: () => twoPages,
      ensureProject: () => {
        // Retryable as thrown: the workflow's list of types not to retry is what stops it.
        throw ApplicationFailure.create({ type: 'LabelStudioAuthError', message: 'the API key was refused' });
      },
      importPage: () => undefined,
      finishImport: () => undefined,
      failImport: () => undefined,
    });
    const result = await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, () =>
      t.env.client.workflow.execute(AutoImportWorkflow, {
        workflowId: `batch_y-curation`,
        taskQueue,
        args: [curationInput(taskQueue, 'batch_y')],
      }),
    );
    expect(result).toEqual({ status: 'failed', pages: 2, pagesDone: 0, reason: 'the API key was refused' });
    expect(callsOf(calls, 'ensureProject')).toHaveLength(1);
    expect(callsOf(calls, 'importPage')).toEqual([]);
    expect(callsOf(calls, 'failImport')).toEqual([[{ batchId: 'batch_y', reason: 'the API key was refused' }]]);
  });
});

describe('WebhookDeliveryWorkflow (mocked activities, time skipping)', () => {
  async function deliver(deliverMock: () => unknown) {
    const taskQueue = `wf-${randomUUID()}`;
    const { activities, calls } = recorded({ deliver: deliverMock, markUndelivered: () => undefined });
    const result = await withWorker(t.env, { taskQueue, workflowBundle: t.workflowBundle, activities }, () =>
      t.env.client.workflow.execute(WebhookDeliveryWorkflow, {
        workflowId: 'whd_test',
        taskQueue,
        args: [webhookDeliveryInput(testConfig(taskQueue), 'whd_test')],
      }),
    );
    return { result, calls };
  }

  it('delivered: the receiver answered, nothing is marked undelivered', async () => {
    const { result, calls } = await deliver(() => undefined);
    expect(result).toBe('delivered');
    expect(callsOf(calls, 'deliver')).toEqual([['whd_test']]);
    expect(callsOf(calls, 'markUndelivered')).toEqual([]);
  });

  it('a receiver that is down is retried with backoff until it answers', async () => {
    let attempts = 0;
    const { result, calls } = await deliver(() => {
      if (++attempts < 4) throw new Error('connect ECONNREFUSED');
    });
    expect(result).toBe('delivered');
    expect(callsOf(calls, 'deliver')).toHaveLength(4);
    expect(callsOf(calls, 'markUndelivered')).toEqual([]);
  });

  it('a refusal not worth retrying ends the delivery at once, marked undelivered for a re-drive', async () => {
    const { result, calls } = await deliver(() => {
      throw ApplicationFailure.nonRetryable('the endpoint answered 410 Gone', 'WebhookRefused');
    });
    expect(result).toBe('failed');
    expect(callsOf(calls, 'deliver')).toHaveLength(1);
    expect(callsOf(calls, 'markUndelivered')).toEqual([['whd_test']]);
  });
});
