// The API's side of operations: a request id on every answer (x-request-id, as OpenAI sends), one
// structured log line per request, HTTP metrics, and gauges of what the database holds (batches by
// status, import progress, webhook deliveries) computed when Prometheus scrapes.
import { randomBytes } from 'node:crypto';
import { createMiddleware } from 'hono/factory';
import { requestId } from 'hono/request-id';
import { routePath } from 'hono/route';
import { sql } from 'kysely';
import { Gauge, Registry } from 'prom-client';

import type { Logger } from '../../lib/logger.js';
import { collectSafely, httpRequestSeconds, httpRequestsTotal } from '../../lib/metrics.js';
import { safeText } from '../../lib/sanitize.js';
import type { Db } from '../../schema/db.js';
import type { Project } from '../services/keys.js';

export type RequestEnv = { Variables: { requestId: string; project?: Project } };

/** OpenAI-looking request ids; a caller's own X-Request-Id is kept when it sends one. */
export const requestIds = requestId({ generator: () => `req_${randomBytes(16).toString('hex')}` });

const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function accessLog(log: Logger) {
  return createMiddleware<RequestEnv>(async (c, next) => {
    const started = performance.now();
    await next();
    const seconds = (performance.now() - started) / 1000;
    const matched = routePath(c, -1);
    // Unknown URLs share one label, so a scanner cannot grow the metric without bound.
    const route = matched.includes('*') ? 'unmatched' : matched;
    const status = c.res.status;
    httpRequestsTotal.inc({ method: c.req.method, route, status });
    httpRequestSeconds.observe({ method: c.req.method, route }, seconds);
    const line = {
      requestId: c.get('requestId'),
      method: c.req.method,
      path: safeText(c.req.path, 300),
      status,
      ms: Math.round(seconds * 1000),
      project: c.get('project')?.name,
    };
    if (QUIET_PATHS.has(c.req.path)) log.debug(line, 'request');
    else if (status >= 500) log.error(line, 'request');
    else log.info(line, 'request');
  });
}

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
