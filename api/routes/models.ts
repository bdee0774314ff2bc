import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';

import type { Config } from '../../lib/config.js';
import { liveModels } from '../../lib/worker-registry.js';
import type { Db } from '../../schema/db.js';
import { errorResponses, json, security, type App } from './common.js';

const modelSchema = z
  .object({ id: z.string(), object: z.literal('model'), created: z.number().int(), owned_by: z.string() })
  .meta({ id: 'Model' });

const listModelsRoute = createRoute({
  method: 'get',
  path: '/v1/models',
  summary: 'The models GPU workers serve right now',
  security,
  responses: {
    200: json(z.object({ object: z.literal('list'), data: z.array(modelSchema) }).meta({ id: 'ModelList' }), 'Models'),
    ...errorResponses,
  },
});

export function registerModelRoutes(app: App, deps: { db: Db; config: Config }): void {
  app.openapi(listModelsRoute, async (c) => {
    const models = await liveModels(deps.db, deps.config.gpu.heartbeatMs);
    return c.json(
      {
        object: 'list' as const,
        data: models.map((m) => ({ id: m.model, object: 'model' as const, created: m.since, owned_by: 'gpu-batch' })),
      },
      200,
    );
  });
}
