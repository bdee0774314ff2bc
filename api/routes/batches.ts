import { z } from 'zod';

import { batchCreateSchema, batchObjectSchema, batchRetrySchema, listSchema } from '../../wire/openai.js';
import type { ApiDeps } from '../deps.js';
import { cancelBatch, createBatch, getBatch, listBatches, retryBatch, toBatchObject } from '../services/batches.js';
import { apiRoute, batchIdParams, conflictResponse, json, listPage, type App } from './common.js';

const idempotencyHeader = z.object({
  'idempotency-key': z
    .string()
    .optional()
    .meta({ description: 'Extension: a repeated POST with the same key gets the first answer again.' }),
});
const batchList = listSchema(batchObjectSchema, 'BatchList');

const createBatchRoute = apiRoute({
  method: 'post',
  path: '/v1/batches',
  summary: 'Create a batch from an uploaded .jsonl file; it answers `validating` at once',
  request: {
    headers: idempotencyHeader,
    body: { content: { 'application/json': { schema: batchCreateSchema } }, required: true },
  },
  responses: { 200: json(batchObjectSchema, 'The new batch') },
});

const retryBatchRoute = apiRoute({
  method: 'post',
  path: '/v1/batches/{batch_id}/retry',
  summary: 'Extension: a new batch of only the failed, expired or cancelled lines of a finished batch',
  request: {
    params: batchIdParams,
    headers: idempotencyHeader,
    body: { content: { 'application/json': { schema: batchRetrySchema } }, required: false },
  },
  responses: { 200: json(batchObjectSchema, 'The new batch'), ...conflictResponse },
});

const retrieveBatchRoute = apiRoute({
  method: 'get',
  path: '/v1/batches/{batch_id}',
  summary: 'Retrieve a batch (request_counts move while it runs)',
  request: { params: batchIdParams },
  responses: { 200: json(batchObjectSchema, 'The batch') },
});

const cancelBatchRoute = apiRoute({
  method: 'post',
  path: '/v1/batches/{batch_id}/cancel',
  summary: 'Cancel a batch: it goes to `cancelling`, then `cancelled` with partial results kept',
  request: { params: batchIdParams, headers: idempotencyHeader },
  responses: { 200: json(batchObjectSchema, 'The batch'), ...conflictResponse },
});

const listBatchesRoute = apiRoute({
  method: 'get',
  path: '/v1/batches',
  summary: 'List batches, newest first',
  request: {
    query: z.object({
      after: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(100).default(20),
    }),
  },
  responses: { 200: json(batchList, 'A page of batches') },
});

export function registerBatchRoutes(app: App, deps: ApiDeps): void {
  app.openapi(createBatchRoute, async (c) =>
    c.json(toBatchObject(await createBatch(deps, c.get('project'), c.req.valid('json'))), 200),
  );
  app.openapi(retrieveBatchRoute, async (c) =>
    c.json(toBatchObject(await getBatch(deps, c.get('project'), c.req.valid('param').batch_id)), 200),
  );
  app.openapi(cancelBatchRoute, async (c) =>
    c.json(toBatchObject(await cancelBatch(deps, c.get('project'), c.req.valid('param').batch_id)), 200),
  );
  app.openapi(retryBatchRoute, async (c) => {
    // The body is optional: the SDK's generic post sends none when there is nothing to change.
    const body = (c.req.header('content-type') ?? '').includes('application/json') ? c.req.valid('json') : {};
    return c.json(toBatchObject(await retryBatch(deps, c.get('project'), c.req.valid('param').batch_id, body)), 200);
  });
  app.openapi(listBatchesRoute, async (c) =>
    c.json(listPage(await listBatches(deps, c.get('project'), c.req.valid('query')), toBatchObject), 200),
  );
}
