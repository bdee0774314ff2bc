// The faults a production cluster adds to the dev server's: its services are separate processes that
// fail alone. Mid-batch, the history service (the owner of every workflow's state and timers) and
// the matching service (the task queues) are killed with SIGKILL, and the frontend (every client's
// and worker's door) is restarted; each comes back a few seconds later, as a supervisor would bring
// it. The batch must move again within a bound and end with every custom_id exactly once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { ClusterService } from '../../dev/temporal-cluster-config.js';
import { createLogger } from '../../lib/logger.js';
import type { RunningSimulator } from '../../simulator/server.js';
import { batchLines, expectEveryLineDone, submitBatch, waitForBatch, waitForProgress } from '../support/batches.js';
import { startTestCluster, type TestCluster } from '../support/cluster.js';
import { startTestSimulator } from '../support/simulator.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/** After the service is back, the batch must move again within this. */
const STALL_BOUND_MS = 90_000;

describe("a batch while the Temporal cluster's services fail", () => {
  let cluster: TestCluster;
  let stack: TestStack;
  let engine: RunningSimulator;
  const log = createLogger('cluster-faults', { level: 'warn', format: 'json' });
  const model = 'cluster-fault-model';

  beforeAll(async () => {
    cluster = await startTestCluster(log, { ui: true });
    // About half a second a request, 8 in flight: some 25 s of work, long enough for a fault and its recovery.
    engine = await startTestSimulator({ models: [model], tokenLatencyMs: 12.5, outputTokens: { min: 40, max: 40 } });
    stack = await startTestStack({
      temporalAddress: cluster.address,
      engines: [engine.url],
      env: { GPU_MAX_INFLIGHT: '8' },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await engine.close();
    await cluster.stop();
  });

  const faults: { name: string; service: ClusterService; signal: NodeJS.Signals }[] = [
    { name: 'kill -9 of the history service', service: 'history', signal: 'SIGKILL' },
    { name: 'kill -9 of the matching service', service: 'matching', signal: 'SIGKILL' },
    { name: 'a restart of the frontend', service: 'frontend', signal: 'SIGTERM' },
  ];

  it("lists the batches in the cluster's Web UI, with their search attributes", async () => {
    const created = await submitBatch(stack, batchLines({ model, count: 20 }));
    await waitForBatch(stack.openai, created.id);
    const query = encodeURIComponent(`BatchStatus = 'completed' AND WorkflowId = '${created.id}'`);
    // What the UI's own pages fetch: its server answers from the cluster's frontend. Visibility is
    // written after the workflow's own state, so the listing may lag the batch by a moment.
    const list = async (): Promise<string[][]> => {
      const res = await fetch(`${cluster.uiUrl ?? ''}/api/v1/namespaces/default/workflows?query=${query}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        executions?: { execution: { workflowId: string }; type: { name: string } }[];
      };
      return (body.executions ?? []).map((e) => [e.execution.workflowId, e.type.name]);
    };
    const deadline = Date.now() + 15_000;
    let listed = await list();
    while (listed.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      listed = await list();
    }
    expect(listed).toEqual([[created.id, 'BatchWorkflow']]);
  });

  for (const fault of faults) {
    it(`completes every request exactly once through ${fault.name}`, async () => {
      const count = 400;
      const created = await submitBatch(stack, batchLines({ model, count }));
      await waitForProgress(stack.openai, created.id, 80);
      await cluster.kill(fault.service, fault.signal);
      expect(cluster.process(fault.service)).toBeUndefined();
      await new Promise((r) => setTimeout(r, 3000));
      const atRestart = await stack.openai.batches.retrieve(created.id);
      const doneAtRestart = (atRestart.request_counts?.completed ?? 0) + (atRestart.request_counts?.failed ?? 0);
      cluster.start(fault.service);
      // No stall: more done than the chunks already running could finish without Temporal, so new
      // chunks were dispatched after the service came back, within the bound.
      const inFlight = stack.config.gpu.concurrentChunks * stack.config.batch.chunkSize;
      try {
        await waitForProgress(stack.openai, created.id, Math.min(count, doneAtRestart + inFlight + 25), STALL_BOUND_MS);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n${fault.service} log:\n${await cluster.logTail(fault.service)}`, {
          cause: err,
        });
      }
      const batch = await waitForBatch(stack.openai, created.id, 180_000);
      expect(batch.status).toBe('completed');
      await expectEveryLineDone(stack.openai, batch, count);
    }, 300_000);
  }
});
