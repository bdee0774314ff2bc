import { Worker } from '@temporalio/worker';
import { expect, inject } from 'vitest';

import type { TestStack } from './stack.js';

/**
 * Replays every closed workflow this stack ran against the current workflow code: a change that
 * would break running workflows (non-determinism) fails here before it reaches production.
 */
export async function expectHistoriesReplay(stack: TestStack, atLeast = 1, timeoutMs = 30_000): Promise<void> {
  const query = `TaskQueue = '${stack.config.temporal.orchestratorTaskQueue}' AND ExecutionStatus != 'Running'`;
  // A batch reads as completed a moment before its workflow closes (it still announces the end), and
  // visibility lags a little behind that: wait until the workflows the test ran have all closed.
  const deadline = Date.now() + timeoutMs;
  let ids: string[];
  for (;;) {
    ids = [];
    for await (const wf of stack.temporal.workflow.list({ query })) ids.push(wf.workflowId);
    if (ids.length >= atLeast || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(ids.length).toBeGreaterThanOrEqual(atLeast);
  const histories = await Promise.all(
    ids.map(async (workflowId) => ({
      workflowId,
      history: await stack.temporal.workflow.getHandle(workflowId).fetchHistory(),
    })),
  );
  const results = Worker.runReplayHistories(
    { workflowBundle: { codePath: inject('services').workflowBundlePath } },
    histories,
  );
  for await (const result of results) expect(result.error, result.workflowId).toBeUndefined();
}
