import { modelListSchema } from '../../wire/models.js';
import type { ApiDeps } from '../deps.js';
import { listModels } from '../services/models.js';
import { apiRoute, json, type App } from './common.js';

const listModelsRoute = apiRoute({
  method: 'get',
  path: '/v1/models',
  summary: 'The models GPU workers serve right now',
  responses: { 200: json(modelListSchema, 'Models') },
});

export function registerModelRoutes(app: App, deps: ApiDeps): void {
  app.openapi(listModelsRoute, async (c) => c.json(await listModels(deps), 200));
}
