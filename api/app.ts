// The Hono app: OpenAI's Files, Batches and Models routes behind API-key auth, errors in OpenAI's
// shape, and an OpenAPI document generated from the same zod schemas that validate requests.
import { OpenAPIHono } from '@hono/zod-openapi';
import { rateLimiter, type RateLimitInfo } from 'hono-rate-limiter';
import { createMiddleware } from 'hono/factory';

import { databaseCheck, fileStoreCheck, registerOpsRoutes, temporalCheck } from '../lib/ops.js';
import { safeText } from '../lib/sanitize.js';
import { databaseGauges } from './database-metrics.js';
import type { ApiDeps } from './deps.js';
import { errorHandler, errorResponse, fromZodError, NotFoundError, RateLimitError } from './errors.js';
import { mediaType } from './media-type.js';
import { accessLog } from './middleware/access-log.js';
import { requireApiKey, type AuthEnv } from './middleware/auth.js';
import { bodyLimit } from './middleware/body-limit.js';
import { idempotent } from './middleware/idempotency.js';
import { requestIds } from './middleware/request-id.js';
import { hearUnreadBody } from './middleware/unread-body.js';
import { registerBatchRoutes } from './routes/batches.js';
import { registerCurationRoutes, registerWebhookReceiver, WEBHOOK_PATH } from './routes/curation.js';
import { registerFileRoutes } from './routes/files.js';
import { registerModelRoutes } from './routes/models.js';
import { registerWebhookRoutes } from './routes/webhooks.js';

type RateLimitedEnv = { Variables: AuthEnv['Variables'] & { rateLimit: RateLimitInfo } };

function isUpload(request: Request): boolean {
  return (
    request.method === 'POST' &&
    new URL(request.url).pathname === '/v1/files' &&
    mediaType(request) === 'multipart/form-data'
  );
}

export function createApp(deps: ApiDeps): OpenAPIHono<AuthEnv> {
  const jsonLimit = bodyLimit({ maxBytes: deps.config.api.maxBodyBytes });
  const app = new OpenAPIHono<AuthEnv>({
    defaultHook: async (result, c) => {
      if (result.success) return undefined;
      // What was sent, to tell a missing parameter from a wrong one (Hono keeps the parsed body).
      const input =
        result.target === 'json'
          ? await c.req.json<unknown>().catch(() => undefined)
          : result.target === 'query'
            ? c.req.query()
            : c.req.param();
      return errorResponse(c, fromZodError(result.error, input));
    },
  });
  app.use(
    '*',
    requestIds,
    accessLog({ log: deps.log }),
    hearUnreadBody({ bytes: deps.config.api.drainBodyBytes, ms: deps.config.api.drainBodyMs }),
  );
  // JSON bodies are read whole: bound them before anything reads one (uploads stream, with their own limit).
  // Everything under /v1 but the multipart upload, whose stream busboy bounds as it reads.
  app.use(
    '/v1/*',
    createMiddleware<AuthEnv>(async (c, next) => (isUpload(c.req.raw) ? next() : jsonLimit(c, next))),
  );
  app.use(WEBHOOK_PATH, bodyLimit({ maxBytes: deps.config.batch.maxLineBytes }));
  app.onError(errorHandler(deps.log));
  app.notFound((c) =>
    errorResponse(
      c,
      new NotFoundError(`Unknown request URL: ${c.req.method} ${safeText(c.req.path, 300)}.`, { code: 'unknown_url' }),
    ),
  );

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', { type: 'http', scheme: 'bearer' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'GPU batch inference',
      version: '1.0.0',
      description:
        "OpenAI's Files and Batches API for self-hosted GPUs. Point the official openai SDK's baseURL at /v1.",
    },
  });

  // Unauthenticated, for load balancers and Prometheus (keep the API port off the internet, or
  // block these three paths at the proxy, if their answers are not for everyone).
  registerOpsRoutes(app, {
    // Optionally, Temporal only degrades the API: it still lists, reads and downloads without it, and
    // taking every replica out of the load balancer at once would stop those too.
    checks: [
      databaseCheck(deps.db),
      { ...temporalCheck(deps.temporal.connection), optional: deps.config.metrics.apiReadyWithoutTemporal },
      fileStoreCheck(deps.store),
    ],
    timeoutMs: deps.config.metrics.readyTimeoutMs,
    registry: databaseGauges(deps.db, deps.config.metrics.readyTimeoutMs),
  });
  // Label Studio calls this with a shared secret, not an API key: it sits outside /v1.
  registerWebhookReceiver(app, deps);
  app.use('/v1/*', requireApiKey(deps));
  const perMinute = deps.config.api.rateLimitPerMinute;
  if (perMinute > 0) {
    app.use(
      '/v1/*',
      rateLimiter<RateLimitedEnv>({
        windowMs: 60_000,
        limit: perMinute,
        standardHeaders: 'draft-6',
        keyGenerator: (c) => c.get('project').id,
        handler: (c) => {
          // The SDKs wait as long as Retry-After says before their own retry.
          const reset = c.get('rateLimit').resetTime?.getTime() ?? Date.now() + 60_000;
          c.header('retry-after', String(Math.max(1, Math.ceil((reset - Date.now()) / 1000))));
          return errorResponse(
            c,
            new RateLimitError(
              `Rate limit reached: ${perMinute} requests per minute for this project. Retry after the time in the Retry-After header.`,
              { code: 'rate_limit_exceeded' },
            ),
          );
        },
      }),
    );
  }
  app.use(
    '/v1/*',
    idempotent({
      db: deps.db,
      ttlSeconds: deps.config.api.idempotencyTtlSeconds,
      leaseSeconds: deps.config.api.idempotencyLeaseSeconds,
    }),
  );
  registerFileRoutes(app, deps);
  registerBatchRoutes(app, deps);
  registerModelRoutes(app, deps);
  registerCurationRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  return app;
}
