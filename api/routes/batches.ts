import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { batchCreateSchema, batchObjectSchema, listSchema } from '../../schema/openai.js';
import { cancelBatch, createBatch, getBatch, listBatches, toBatchObject, type BatchDeps } from '../batches.js';
import { errorResponses, json, security, type App } from './common.js';

const batchIdParams = z.object({ batch_id: z.string().min(1) });
const batchList = listSchema(batchObjectSchema, 'BatchList');

const createBatchRoute = createRoute({
  method: 'post',
  path: '/v1/batches',
  summary: 'Create a batch from an uploaded .jsonl file; it answers `validating` at once',
  security,
  request: { body: { content: { 'application/json': { schema: batchCreateSchema } }, required: true } },
  responses: { 200: json(batchObjectSchema, 'The new batch'), ...errorResponses },
});

const retrieveBatchRoute = createRoute({
  method: 'get',
  path: '/v1/batches/{batch_id}',
  summary: 'Retrieve a batch (request_counts move while it runs)',
  security,
  request: { params: batchIdParams },
  responses: { 200: json(batchObjectSchema, 'The batch'), ...errorResponses },
});

const cancelBatchRoute = createRoute({
  method: 'post',
  path: '/v1/batches/{batch_id}/cancel',
  summary: 'Cancel a batch: it goes to `cancelling`, then `cancelled` with partial results kept',
  security,
  request: { params: batchIdParams },
  responses: { 200: json(batchObjectSchema, 'The batch'), ...errorResponses, 409: json(errorResponses[400].content['application/json'].schema, 'Already finished') },
});

const listBatchesRoute = createRoute({
  method: 'get',
  path: '/v1/batches',
  summary: 'List batches, newest first',
  security,
  request: {
    query: z.object({
      after: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(100).default(20),
    }),
  },
  responses: { 200: json(batchList, 'A page of batches'), ...errorResponses },
});

export function registerBatchRoutes(app: App, deps: BatchDeps): void {
  app.openapi(createBatchRoute, async (c) => c.json(toBatchObject(await createBatch(deps, c.get('project'), c.req.valid('json'))), 200));
  app.openapi(retrieveBatchRoute, async (c) => c.json(toBatchObject(await getBatch(deps.db, c.get('project'), c.req.valid('param').batch_id)), 200));
  app.openapi(cancelBatchRoute, async (c) => c.json(toBatchObject(await cancelBatch(deps, c.get('project'), c.req.valid('param').batch_id)), 200));
  app.openapi(listBatchesRoute, async (c) => {
    const { rows, hasMore } = await listBatches(deps.db, c.get('project'), c.req.valid('query'));
    const data = rows.map(toBatchObject);
    return c.json({ object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore }, 200);
  });
}
