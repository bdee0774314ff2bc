import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';

import { batchCreateSchema, batchObjectSchema, batchRetrySchema, listSchema } from '../../wire/openai.js';
import {
  cancelBatch,
  createBatch,
  getBatch,
  listBatches,
  retryBatch,
  toBatchObject,
  type BatchDeps,
} from '../services/batches.js';
import { errorResponses, json, security, type App } from './common.js';

const batchIdParams = z.object({ batch_id: z.string().min(1) });
const idempotencyHeader = z.object({
  'idempotency-key': z
    .string()
    .optional()
    .meta({ description: 'Extension: a repeated POST with the same key gets the first answer again.' }),
});
const batchList = listSchema(batchObjectSchema, 'BatchList');

const createBatchRoute = createRoute({
  method: 'post',
  path: '/v1/batches',
  summary: 'Create a batch from an uploaded .jsonl file; it answers `validating` at once',
  security,
  request: {
    headers: idempotencyHeader,
    body: { content: { 'application/json': { schema: batchCreateSchema } }, required: true },
  },
  responses: { 200: json(batchObjectSchema, 'The new batch'), ...errorResponses },
});

const retryBatchRoute = createRoute({
  method: 'post',
  path: '/v1/batches/{batch_id}/retry',
  summary: 'Extension: a new batch of only the failed, expired or cancelled lines of a finished batch',
  security,
  request: {
    params: batchIdParams,
    headers: idempotencyHeader,
    body: { content: { 'application/json': { schema: batchRetrySchema } }, required: false },
  },
  responses: { 200: json(batchObjectSchema, 'The new batch'), ...errorResponses, 409: errorResponses[400] },
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
  request: { params: batchIdParams, headers: idempotencyHeader },
  responses: { 200: json(batchObjectSchema, 'The batch'), ...errorResponses, 409: errorResponses[400] },
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
  app.openapi(createBatchRoute, async (c) =>
    c.json(toBatchObject(await createBatch(deps, c.get('project'), c.req.valid('json'))), 200),
  );
  app.openapi(retrieveBatchRoute, async (c) =>
    c.json(toBatchObject(await getBatch(deps.db, c.get('project'), c.req.valid('param').batch_id)), 200),
  );
  app.openapi(cancelBatchRoute, async (c) =>
    c.json(toBatchObject(await cancelBatch(deps, c.get('project'), c.req.valid('param').batch_id)), 200),
  );
  app.openapi(retryBatchRoute, async (c) => {
    // The body is optional: the SDK's generic post sends none when there is nothing to change.
    const body = (c.req.header('content-type') ?? '').includes('application/json') ? c.req.valid('json') : {};
    return c.json(toBatchObject(await retryBatch(deps, c.get('project'), c.req.valid('param').batch_id, body)), 200);
  });
  app.openapi(listBatchesRoute, async (c) => {
    const { rows, hasMore } = await listBatches(deps.db, c.get('project'), c.req.valid('query'));
    const data = rows.map(toBatchObject);
    return c.json(
      {
        object: 'list' as const,
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: hasMore,
      },
      200,
    );
  });
}
