import { Worker } from '@temporalio/worker';
import { expect, inject } from 'vitest';
import type { TestStack } from './stack.js';

/**
 * Replays every closed workflow this stack ran against the current workflow code: a change that
 * would break running workflows (non-determinism) fails here before it reaches production.
 */
export async function expectHistoriesReplay(stack: TestStack, atLeast = 1): Promise<void> {
  const histories = [];
  const query = `TaskQueue = '${stack.config.temporal.orchestratorTaskQueue}' AND ExecutionStatus != 'Running'`;
  for await (const wf of stack.temporal.workflow.list({ query })) {
    histories.push({ workflowId: wf.workflowId, history: await stack.temporal.workflow.getHandle(wf.workflowId).fetchHistory() });
  }
  expect(histories.length).toBeGreaterThanOrEqual(atLeast);
  const results = Worker.runReplayHistories({ workflowBundle: { codePath: inject('services').workflowBundlePath } }, histories);
  for await (const result of results) expect(result.error, result.workflowId).toBeUndefined();
}
