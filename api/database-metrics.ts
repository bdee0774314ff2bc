// The API's scrape-time gauges: what the database holds (batches by status, each running batch's
// progress, import progress, webhook deliveries), computed when Prometheus scrapes, so every API
// replica reports the same values.
import { sql } from 'kysely';
import { Gauge, Registry } from 'prom-client';

import { collectSafely } from '../lib/metrics.js';
import type { Db } from '../schema/db.js';
import { resultCounts } from '../schema/result-groups.js';
import { LIVE_BATCH_STATES, type CurationStatus, type WebhookDeliveriesTable } from '../schema/tables.js';
import { batchStatusSchema } from '../wire/openai.js';

const CURATION_STATUSES = ['running', 'completed', 'skipped', 'failed'] as const satisfies readonly CurationStatus[];
const DELIVERY_STATUSES = [
  'pending',
  'delivered',
  'failed',
] as const satisfies readonly WebhookDeliveriesTable['status'][];

/**
 * A gauge of row counts by status, counted when scraped. Every status is reported, a zero for those
 * without rows: a status with none is "none", not "no data" (an empty panel, a ratio with no answer).
 */
function statusGauge(
  registry: Registry,
  timeoutMs: number,
  name: string,
  help: string,
  statuses: readonly string[],
  count: () => Promise<{ status: string; n: number }[]>,
): void {
  new Gauge({
    name,
    help,
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      await collectSafely(name, timeoutMs, async () => {
        const rows = await count();
        this.reset();
        for (const status of statuses) this.set({ status }, 0);
        for (const r of rows) this.set({ status: r.status }, r.n);
      });
    },
  });
}

/** Gauges read from the database on each scrape; every API replica reports the same values. */
export function databaseGauges(db: Db, timeoutMs: number): Registry {
  const registry = new Registry();
  const n = db.fn.countAll<number>().as('n');
  statusGauge(
    registry,
    timeoutMs,
    'gpu_batch_batches',
    'Batches by status, as the database has them',
    batchStatusSchema.options,
    () => db.selectFrom('batches').select(['status', n]).groupBy('status').execute(),
  );
  statusGauge(
    registry,
    timeoutMs,
    'gpu_batch_curation_imports',
    'Imports into Label Studio by status',
    CURATION_STATUSES,
    () => db.selectFrom('curations').select(['status', n]).groupBy('status').execute(),
  );
  statusGauge(
    registry,
    timeoutMs,
    'gpu_batch_webhook_deliveries',
    'Webhook deliveries by status (pending: being tried; failed: out of retries, can be re-driven)',
    DELIVERY_STATUSES,
    () => db.selectFrom('webhook_deliveries').select(['status', n]).groupBy('status').execute(),
  );
  new Gauge({
    name: 'gpu_batch_live_batch_requests',
    help: 'Each unfinished batch (validating, in_progress, finalizing, cancelling) by id, model, project and status: its requests in total, and completed and failed so far',
    labelNames: ['batch_id', 'model', 'project', 'status', 'state'] as const,
    registers: [registry],
    async collect() {
      await collectSafely('gpu_batch_live_batch_requests', timeoutMs, async () => {
        // The project's name, as BatchProject and the fairness key have it: what operators know it by.
        const live = await db
          .selectFrom('batches')
          .innerJoin('projects', 'projects.id', 'batches.project_id')
          .select([
            'batches.id',
            'batches.model',
            'projects.name as project',
            'batches.status',
            'batches.request_total',
          ])
          .where('batches.status', 'in', LIVE_BATCH_STATES)
          .execute();
        const counts = await resultCounts(
          db,
          live.map((b) => b.id),
        );
        // Only what is live now: a batch that ended leaves the gauge (its series go stale in Prometheus).
        this.reset();
        for (const b of live) {
          const labels = { batch_id: b.id, model: b.model ?? '', project: b.project, status: b.status };
          const done = counts.get(b.id);
          this.set({ ...labels, state: 'total' }, b.request_total);
          this.set({ ...labels, state: 'completed' }, done?.completed ?? 0);
          this.set({ ...labels, state: 'failed' }, done?.failed ?? 0);
        }
      });
    },
  });
  new Gauge({
    name: 'gpu_batch_curation_import_tasks',
    help: 'Tasks of the imports under way: total to import, and imported so far',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      await collectSafely('gpu_batch_curation_import_tasks', timeoutMs, async () => {
        const row = await db
          .selectFrom('curations')
          .select([
            sql<number>`coalesce(sum(tasks_total), 0)`.as('total'),
            sql<number>`coalesce(sum(tasks_imported), 0)`.as('imported'),
          ])
          .where('status', '=', 'running')
          .executeTakeFirstOrThrow();
        this.set({ state: 'total' }, row.total);
        this.set({ state: 'imported' }, row.imported);
      });
    },
  });
  return registry;
}
