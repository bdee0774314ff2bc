// The API's scrape-time gauges: what the database holds (batches by status, import progress, webhook
// deliveries), computed when Prometheus scrapes, so every API replica reports the same values.
import { sql } from 'kysely';
import { Gauge, Registry } from 'prom-client';

import { collectSafely } from '../lib/metrics.js';
import type { Db } from '../schema/db.js';

/** A gauge of row counts by status, counted when scraped. */
function statusGauge(
  registry: Registry,
  timeoutMs: number,
  name: string,
  help: string,
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
        for (const r of rows) this.set({ status: r.status }, r.n);
      });
    },
  });
}

/** Gauges read from the database on each scrape; every API replica reports the same values. */
export function databaseGauges(db: Db, timeoutMs: number): Registry {
  const registry = new Registry();
  const n = db.fn.countAll<number>().as('n');
  statusGauge(registry, timeoutMs, 'gpu_batch_batches', 'Batches by status, as the database has them', () =>
    db.selectFrom('batches').select(['status', n]).groupBy('status').execute(),
  );
  statusGauge(registry, timeoutMs, 'gpu_batch_curation_imports', 'Imports into Label Studio by status', () =>
    db.selectFrom('curations').select(['status', n]).groupBy('status').execute(),
  );
  statusGauge(
    registry,
    timeoutMs,
    'gpu_batch_webhook_deliveries',
    'Webhook deliveries by status (pending: being tried; failed: out of retries, can be re-driven)',
    () => db.selectFrom('webhook_deliveries').select(['status', n]).groupBy('status').execute(),
  );
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
