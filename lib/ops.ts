// What operators and orchestrators (Prometheus, systemd, Kubernetes, a load balancer) ask every
// process: /healthz (the process is alive and answering), /readyz (what it depends on is reachable:
// database, Temporal, file store, and for a GPU worker its engine) and /metrics (Prometheus).
// The API mounts these routes on its own app; each worker serves them on a port of its own.
import { Hono, type Env } from 'hono';
import { sql } from 'kysely';
import { Registry } from 'prom-client';

import type { Db } from '../schema/db.js';
import { withTimeout } from './abortable.js';
import type { FileStore } from './file-store.js';
import { listen, type HttpServer } from './http-server.js';
import type { Logger } from './logger.js';
import { collectProcessMetrics, processRegistry } from './metrics.js';

export interface ReadinessCheck {
  name: string;
  check: () => Promise<unknown>;
  /** Reported, but not failing readiness: the process still does useful work without it. */
  optional?: boolean;
}

export interface CheckResult {
  ok: boolean;
  ms: number;
  error?: string;
}

export interface OpsOptions {
  checks: ReadinessCheck[];
  timeoutMs: number;
  /** Metrics of this process's own (collected on scrape), served with the process-wide ones. */
  registry?: Registry;
}

async function timed(check: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  try {
    await withTimeout(check.check(), timeoutMs);
    return { ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return {
      ok: false,
      ms: Math.round(performance.now() - started),
      error: err instanceof Error ? err.message : String(err),
    };
  }
}

/** Runs every check at once; ready only if all but the optional ones pass. */
export async function readiness(
  options: OpsOptions,
): Promise<{ ready: boolean; degraded: boolean; checks: Record<string, CheckResult> }> {
  const results = await Promise.all(
    options.checks.map(async (c) => [c.name, await timed(c, options.timeoutMs)] as const),
  );
  const optional = new Set(options.checks.filter((c) => c.optional === true).map((c) => c.name));
  return {
    ready: results.every(([name, r]) => r.ok || optional.has(name)),
    degraded: results.some(([, r]) => !r.ok),
    checks: Object.fromEntries(results),
  };
}

export function databaseCheck(db: Db): ReadinessCheck {
  return { name: 'database', check: () => sql`select 1`.execute(db) };
}

/** Any Temporal connection (a client's or a worker's) will do: both have the workflow service. */
export function temporalCheck(connection: {
  workflowService: { getSystemInfo(request: object): Promise<unknown> };
}): ReadinessCheck {
  return { name: 'temporal', check: () => connection.workflowService.getSystemInfo({}) };
}

export function fileStoreCheck(store: FileStore): ReadinessCheck {
  return { name: 'file_store', check: () => store.check() };
}

/** Adds /healthz, /readyz and /metrics to an app. */
export function registerOpsRoutes<E extends Env>(app: Hono<E>, options: OpsOptions): void {
  collectProcessMetrics();
  // Merged on each scrape, so metrics registered after the server started are served too.
  const registry = (): Registry =>
    options.registry === undefined ? processRegistry : Registry.merge([processRegistry, options.registry]);
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const result = await readiness(options);
    return c.json(
      { status: !result.ready ? 'not_ready' : result.degraded ? 'degraded' : 'ready', checks: result.checks },
      result.ready ? 200 : 503,
    );
  });
  app.get('/metrics', async (c) => {
    const merged = registry();
    return c.body(await merged.metrics(), 200, { 'content-type': merged.contentType });
  });
}

/** A worker's own little server for the three routes. */
export async function startOpsServer(
  options: OpsOptions & { host: string; port: number; log: Logger; idleTimeoutMs: number },
): Promise<HttpServer> {
  const app = new Hono();
  registerOpsRoutes(app, options);
  const server = await listen(app.fetch, options, {
    idleTimeoutMs: options.idleTimeoutMs,
    onError: (err) => {
      options.log.error({ err }, 'the ops HTTP server failed');
    },
  });
  options.log.info({ url: server.url }, 'serving /metrics, /healthz and /readyz');
  return server;
}
