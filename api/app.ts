// The Hono app: OpenAI's Files, Batches and Models routes behind API-key auth, errors in OpenAI's
// shape, and an OpenAPI document generated from the same zod schemas that validate requests.
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Client } from '@temporalio/client';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db.js';
import type { FileStore } from '../lib/file-store.js';
import type { Logger } from '../lib/logger.js';
import { requireApiKey, type AuthEnv } from './auth.js';
import { ApiError, errorHandler, errorResponse, fromZodError } from './errors.js';
import { registerBatchRoutes } from './routes/batches.js';
import { registerFileRoutes } from './routes/files.js';
import { registerModelRoutes } from './routes/models.js';

export interface ApiDeps {
  config: Config;
  db: Db;
  store: FileStore;
  temporal: Client;
  log: Logger;
}

export function createApp(deps: ApiDeps): OpenAPIHono<AuthEnv> {
  const app = new OpenAPIHono<AuthEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return errorResponse(c, fromZodError(result.error));
      return undefined;
    },
  });
  app.onError(errorHandler(deps.log));
  app.notFound((c) => errorResponse(c, new ApiError(404, `Unknown request URL: ${c.req.method} ${c.req.path}.`, 'unknown_url')));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', { type: 'http', scheme: 'bearer' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'GPU batch inference',
      version: '1.0.0',
      description: "OpenAI's Files and Batches API for self-hosted GPUs. Point the official openai SDK's baseURL at /v1.",
    },
  });

  app.use('/v1/*', requireApiKey(deps.db));
  registerFileRoutes(app, deps);
  registerBatchRoutes(app, deps);
  registerModelRoutes(app, deps);
  return app;
}
