// One structured log line per request, and the HTTP metrics (requests and their durations by route).
import { createMiddleware } from 'hono/factory';
import { routePath } from 'hono/route';

import type { Logger } from '../../lib/logger.js';
import { httpRequestSeconds, httpRequestsTotal } from '../../lib/metrics.js';
import { safeText } from '../../lib/sanitize.js';
import type { Project } from '../services/keys.js';

export type RequestEnv = { Variables: { requestId: string; project?: Project } };

export interface AccessLogOptions {
  log: Logger;
}

/** Probes and scrapes come every few seconds: logged at debug only. */
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export function accessLog(options: AccessLogOptions) {
  const { log } = options;
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
