// Records the histories that tests/workflow/replay.test.ts replays against the current workflow code.
//
// Each patched() marker in workflows/batch.ts keeps workflows started by older code replaying; only a
// history those older commits wrote shows that it does. So histories are recorded from the code of
// each commit just before a marker came in, plus the current code, with mocked activities on the
// time-skipping test server (small batches, so the files stay small):
//
//   git worktree add /tmp/old-4439da9 4439da9 && ln -s "$PWD/node_modules" /tmp/old-4439da9/node_modules
//   npx tsx tests/workflow/histories/record.ts 4439da9 /tmp/old-4439da9
//   npx tsx tests/workflow/histories/record.ts dd9a7b8            # this checkout's code
//   npx tsx tests/workflow/histories/record.ts dd9a7b8 . batch-expired,auto-import   # only these
//
// Files: tests/workflow/histories/<commit>-<scenario>.json. Workflows a commit did not have yet are
// skipped. Record from a new commit when a change to a workflow adds a patched() marker.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundle } from '@temporalio/worker';

import type { ImportPlan } from '../../../activities/auto-import.js';
import type { BatchPlan } from '../../../activities/batch-control.js';
import type { ChunkPlan } from '../../../activities/validate.js';
import { batchWorkflowInput } from '../../../workflows/batch-lifecycle.js';
import { cancelSignal } from '../../../workflows/messages.js';
import { webhookDeliveryInput } from '../../../workflows/webhook-delivery-lifecycle.js';
import { bundleWorkflows, gate, startTimeSkippingEnv, testConfig, withWorker } from '../../support/workflow-env.js';
import { batchActivities, batchPlan, chunkSummary, recorded } from '../../support/workflow-mocks.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TASK_QUEUE = 'histories';

interface Scenario {
  name: string;
  /** The workflow file the scenario needs in the recorded commit. */
  needs: string;
  run(env: TestWorkflowEnvironment, bundle: WorkflowBundle): Promise<WorkflowHandle>;
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

async function runBatch(
  env: TestWorkflowEnvironment,
  workflowBundle: WorkflowBundle,
  id: string,
  options: { plan?: BatchPlan; overrides?: Parameters<typeof batchActivities>[1]; expiresAt?: number },
  during?: (handle: WorkflowHandle) => Promise<void>,
): Promise<WorkflowHandle> {
  const plan = options.plan ?? batchPlan(TASK_QUEUE);
  // One webhook endpoint, so the announcement (patched 'webhooks') is in the history too.
  const { activities } = batchActivities(plan, options.overrides, [`${id}-whd`]);
  return withWorker(env, { taskQueue: TASK_QUEUE, workflowBundle, activities }, async () => {
    const handle = await env.client.workflow.start('BatchWorkflow', {
      workflowId: id,
      taskQueue: TASK_QUEUE,
      args: [batchWorkflowInput(testConfig(TASK_QUEUE), id, options.expiresAt ?? nowSeconds() + 86_400, 4096)],
    });
    await during?.(handle);
    await handle.result();
    return handle;
  });
}

const SCENARIOS: Scenario[] = [
  {
    name: 'batch-completed',
    needs: 'batch.ts',
    run: (env, bundle) => runBatch(env, bundle, 'batch_completed', {}),
  },
  {
    name: 'batch-cancelled',
    needs: 'batch.ts',
    run: (env, bundle) => {
      const entered = gate();
      const release = gate();
      const plan = batchPlan(TASK_QUEUE);
      return runBatch(
        env,
        bundle,
        'batch_cancelled',
        {
          plan,
          overrides: {
            // The first chunk runs until the cancel has arrived; the second never starts.
            runChunk: async (input: { chunk: ChunkPlan }) => {
              entered.open();
              await release.wait;
              return chunkSummary(input.chunk);
            },
          },
        },
        async (handle) => {
          await entered.wait;
          await handle.signal(cancelSignal);
          release.open();
        },
      );
    },
  },
  {
    name: 'batch-expired',
    needs: 'batch.ts',
    run: (env, bundle) =>
      runBatch(env, bundle, 'batch_expired', {
        plan: batchPlan(TASK_QUEUE, { maxAttempts: 1000 }),
        overrides: {
          runChunk: () => {
            throw new Error('engine unreachable');
          },
        },
        expiresAt: nowSeconds() + 600,
      }),
  },
  {
    name: 'batch-dead-letter',
    needs: 'batch.ts',
    run: (env, bundle) =>
      runBatch(env, bundle, 'batch_dead_letter', {
        plan: batchPlan(TASK_QUEUE, { chunks: 2, maxAttempts: 2 }),
        overrides: {
          runChunk: (input: { chunk: ChunkPlan }) => {
            if (input.chunk.index === 0) throw new Error('engine unreachable');
            return chunkSummary(input.chunk);
          },
        },
      }),
  },
  {
    name: 'auto-import',
    needs: 'auto-import.ts',
    run: async (env, workflowBundle) => {
      const plan: ImportPlan = {
        schema: 'chat',
        endpoint: '/v1/chat/completions',
        model: 'test-model',
        inputKey: 'inputs/test.jsonl',
        tasks: 2,
        pages: [{ page: 0, tasks: 2, firstLine: 1, lastLine: 2, byteStart: 0, byteEnd: 100 }],
      };
      const { activities } = recorded({
        planImport: () => plan,
        ensureProject: () => 7,
        importPage: () => undefined,
        finishImport: () => undefined,
        failImport: () => undefined,
      });
      const curation = batchWorkflowInput(testConfig(TASK_QUEUE), 'batch_curated', 0, 4096).curation;
      return withWorker(env, { taskQueue: TASK_QUEUE, workflowBundle, activities }, async () => {
        const handle = await env.client.workflow.start('AutoImportWorkflow', {
          workflowId: 'batch_curated-curation',
          taskQueue: TASK_QUEUE,
          args: [{ batchId: 'batch_curated', activity: curation?.activity }],
        });
        await handle.result();
        return handle;
      });
    },
  },
  {
    name: 'webhook-delivery',
    needs: 'webhook-delivery.ts',
    run: async (env, workflowBundle) => {
      let attempts = 0;
      const { activities } = recorded({
        // One failed attempt first, so the history holds a retried delivery.
        deliver: () => {
          if (++attempts === 1) throw new Error('connect ECONNREFUSED');
        },
        markUndelivered: () => undefined,
      });
      return withWorker(env, { taskQueue: TASK_QUEUE, workflowBundle, activities }, async () => {
        const handle = await env.client.workflow.start('WebhookDeliveryWorkflow', {
          workflowId: 'whd_recorded',
          taskQueue: TASK_QUEUE,
          args: [webhookDeliveryInput(testConfig(TASK_QUEUE), 'whd_recorded')],
        });
        await handle.result();
        return handle;
      });
    },
  },
];

async function main(): Promise<void> {
  const [label, rootArg, only] = process.argv.slice(2);
  if (label === undefined) throw new Error('usage: record.ts <commit> [<checkout of that commit>] [<scenario,...>]');
  const wanted = only === undefined ? undefined : new Set(only.split(','));
  const root = path.resolve(rootArg ?? path.join(HERE, '../../..'));
  const bundle = await bundleWorkflows(root);
  for (const scenario of SCENARIOS) {
    if (wanted !== undefined && !wanted.has(scenario.name)) continue;
    if (!existsSync(path.join(root, 'workflows', scenario.needs))) {
      process.stdout.write(`${label}: no workflows/${scenario.needs}, ${scenario.name} skipped\n`);
      continue;
    }
    // A server for each, so no scenario's leftovers (abandoned children) hold another's clock.
    const env = await startTimeSkippingEnv();
    try {
      const handle = await scenario.run(env, bundle);
      const file = path.join(HERE, `${label}-${scenario.name}.json`);
      // protobufjs's own JSON (enum names, 64-bit ids as strings): the SDK's historyToJSON fails on the two
      // protobufjs versions installed; replay.test.ts reads these back with History.fromObject.
      await writeFile(file, `${JSON.stringify(await handle.fetchHistory(), null, 1)}\n`);
      process.stdout.write(`${path.relative(process.cwd(), file)}\n`);
    } finally {
      await env.teardown();
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
