// Pending chunks per model, as Temporal sees each model's inference task queues: chunks scheduled
// and waiting for a GPU worker (the backlog), and how long the oldest has waited. Computed by the
// orchestrator when Prometheus scrapes, for every model with a live worker or a running batch.
import proto from '@temporalio/proto';
import type { NativeConnection } from '@temporalio/worker';
import { Gauge, type Registry } from 'prom-client';

import type { Config } from '../lib/config.js';
import { collectSafely } from '../lib/metrics.js';
import { inferenceTaskQueue, smallBatchTaskQueue } from '../lib/temporal.js';
import { liveModels } from '../lib/worker-registry.js';
import type { Db } from '../schema/db.js';

async function modelsToWatch(db: Db, config: Config): Promise<string[]> {
  const live = await liveModels(db, config.gpu.heartbeatMs);
  const running = await db
    .selectFrom('batches')
    .select('model')
    .distinct()
    .where('status', 'in', ['in_progress', 'cancelling'])
    .where('model', 'is not', null)
    .execute();
  return [
    ...new Set([...live.map((m) => m.model), ...running.flatMap((r) => (r.model === null ? [] : [r.model]))]),
  ].sort();
}

export function queueGauges(deps: { db: Db; config: Config; connection: NativeConnection; registry: Registry }): void {
  const { registry } = deps;
  // One read of Temporal per scrape serves both gauges: prom-client collects them concurrently.
  let reading: Promise<void> | undefined;
  const read = (): Promise<void> =>
    (reading ??= collectSafely('gpu_batch_pending_chunks', deps.config.metrics.readyTimeoutMs, async () => {
      const models = await modelsToWatch(deps.db, deps.config);
      const describe = async (name: string): Promise<{ backlog: number; ageSeconds: number }> => {
        const answer = await deps.connection.workflowService.describeTaskQueue({
          namespace: deps.config.temporal.namespace,
          taskQueue: { name },
          taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
          reportStats: true,
        });
        const age = answer.stats?.approximateBacklogAge;
        return {
          backlog: Number(answer.stats?.approximateBacklogCount ?? 0),
          ageSeconds: Number(age?.seconds ?? 0) + (age?.nanos ?? 0) / 1e9,
        };
      };
      // Both lanes of a model (large and small batches) count.
      const stats = await Promise.all(
        models.map(async (model) => {
          const lanes = await Promise.all([
            describe(inferenceTaskQueue(deps.config, model)),
            describe(smallBatchTaskQueue(deps.config, model)),
          ]);
          return {
            model,
            backlog: lanes.reduce((sum, l) => sum + l.backlog, 0),
            ageSeconds: Math.max(...lanes.map((l) => l.ageSeconds)),
          };
        }),
      );
      pending.reset();
      backlogAge.reset();
      for (const s of stats) {
        pending.set({ model: s.model }, s.backlog);
        backlogAge.set({ model: s.model }, s.ageSeconds);
      }
    }).finally(() => {
      reading = undefined;
    }));
  const backlogAge = new Gauge({
    name: 'gpu_batch_pending_chunk_age_seconds',
    help: 'How long the oldest pending chunk of a model has waited for a GPU worker',
    labelNames: ['model'] as const,
    registers: [registry],
    collect: read,
  });
  const pending = new Gauge({
    name: 'gpu_batch_pending_chunks',
    help: "Chunks scheduled and waiting for a GPU worker, per model (the inference task queue's backlog)",
    labelNames: ['model'] as const,
    registers: [registry],
    collect: read,
  });
}
