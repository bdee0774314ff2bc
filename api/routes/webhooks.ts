import { z } from 'zod';

import {
  deliveryListSchema,
  deliveryObjectSchema,
  webhookCreateSchema,
  webhookDeletedSchema,
  webhookListSchema,
  webhookObjectSchema,
} from '../../wire/webhooks.js';
import type { ApiDeps } from '../deps.js';
import { createWebhook, deleteWebhook, listDeliveries, listWebhooks, redeliver } from '../services/webhooks.js';
import { apiRoute, json, type App } from './common.js';

const webhookParams = z.object({ webhook_id: z.string().min(1) });

const routes = {
  create: apiRoute({
    method: 'post',
    path: '/v1/webhooks',
    summary: "Extension: register an endpoint told when this project's batches end (secret returned once)",
    request: { body: { content: { 'application/json': { schema: webhookCreateSchema } }, required: true } },
    responses: { 200: json(webhookObjectSchema, 'The endpoint, with its signing secret') },
  }),
  list: apiRoute({
    method: 'get',
    path: '/v1/webhooks',
    summary: "Extension: the project's webhook endpoints",
    responses: { 200: json(webhookListSchema, 'Endpoints') },
  }),
  delete: apiRoute({
    method: 'delete',
    path: '/v1/webhooks/{webhook_id}',
    summary: 'Extension: stop sending to an endpoint',
    request: { params: webhookParams },
    responses: { 200: json(webhookDeletedSchema, 'Deleted') },
  }),
  deliveries: apiRoute({
    method: 'get',
    path: '/v1/webhooks/{webhook_id}/deliveries',
    summary: 'Extension: the latest deliveries to an endpoint, with every attempt',
    request: { params: webhookParams },
    responses: { 200: json(deliveryListSchema, 'Deliveries') },
  }),
  redeliver: apiRoute({
    method: 'post',
    path: '/v1/webhooks/deliveries/{delivery_id}/redeliver',
    summary: 'Extension: send a delivery again, with a fresh run of retries',
    request: { params: z.object({ delivery_id: z.string().min(1) }) },
    responses: { 200: json(deliveryObjectSchema, 'The delivery') },
  }),
};

export function registerWebhookRoutes(app: App, deps: ApiDeps): void {
  app.openapi(routes.create, async (c) =>
    c.json(await createWebhook(deps, c.get('project'), c.req.valid('json')), 200),
  );
  app.openapi(routes.list, async (c) =>
    c.json({ object: 'list' as const, data: await listWebhooks(deps, c.get('project')) }, 200),
  );
  app.openapi(routes.delete, async (c) => {
    const id = c.req.valid('param').webhook_id;
    await deleteWebhook(deps, c.get('project'), id);
    return c.json({ id, object: 'webhook_endpoint' as const, deleted: true }, 200);
  });
  app.openapi(routes.deliveries, async (c) =>
    c.json(
      { object: 'list' as const, data: await listDeliveries(deps, c.get('project'), c.req.valid('param').webhook_id) },
      200,
    ),
  );
  app.openapi(routes.redeliver, async (c) =>
    c.json(await redeliver(deps, c.get('project'), c.req.valid('param').delivery_id), 200),
  );
}
