import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';

import {
  createWebhook,
  deleteWebhook,
  deliveryObjectSchema,
  listDeliveries,
  listWebhooks,
  redeliver,
  webhookCreateSchema,
  webhookObjectSchema,
  type WebhookDeps,
} from '../services/webhooks.js';
import { errorResponses, json, security, type App } from './common.js';

const webhookParams = z.object({ webhook_id: z.string().min(1) });
const list = <T extends z.ZodType>(item: T, id: string) =>
  z.object({ object: z.literal('list'), data: z.array(item) }).meta({ id });

const routes = {
  create: createRoute({
    method: 'post',
    path: '/v1/webhooks',
    summary: "Extension: register an endpoint told when this project's batches end (secret returned once)",
    security,
    request: { body: { content: { 'application/json': { schema: webhookCreateSchema } }, required: true } },
    responses: { 200: json(webhookObjectSchema, 'The endpoint, with its signing secret'), ...errorResponses },
  }),
  list: createRoute({
    method: 'get',
    path: '/v1/webhooks',
    summary: "Extension: the project's webhook endpoints",
    security,
    responses: { 200: json(list(webhookObjectSchema, 'WebhookList'), 'Endpoints'), ...errorResponses },
  }),
  delete: createRoute({
    method: 'delete',
    path: '/v1/webhooks/{webhook_id}',
    summary: 'Extension: stop sending to an endpoint',
    security,
    request: { params: webhookParams },
    responses: {
      200: json(z.object({ id: z.string(), object: z.literal('webhook_endpoint'), deleted: z.boolean() }), 'Deleted'),
      ...errorResponses,
    },
  }),
  deliveries: createRoute({
    method: 'get',
    path: '/v1/webhooks/{webhook_id}/deliveries',
    summary: 'Extension: the latest deliveries to an endpoint, with every attempt',
    security,
    request: { params: webhookParams },
    responses: { 200: json(list(deliveryObjectSchema, 'WebhookDeliveryList'), 'Deliveries'), ...errorResponses },
  }),
  redeliver: createRoute({
    method: 'post',
    path: '/v1/webhooks/deliveries/{delivery_id}/redeliver',
    summary: 'Extension: send a delivery again, with a fresh run of retries',
    security,
    request: { params: z.object({ delivery_id: z.string().min(1) }) },
    responses: { 200: json(deliveryObjectSchema, 'The delivery'), ...errorResponses },
  }),
};

export function registerWebhookRoutes(app: App, deps: WebhookDeps): void {
  app.openapi(routes.create, async (c) =>
    c.json(await createWebhook(deps.db, deps.config, c.get('project'), c.req.valid('json')), 200),
  );
  app.openapi(routes.list, async (c) =>
    c.json({ object: 'list' as const, data: await listWebhooks(deps.db, c.get('project')) }, 200),
  );
  app.openapi(routes.delete, async (c) => {
    const id = c.req.valid('param').webhook_id;
    await deleteWebhook(deps.db, c.get('project'), id);
    return c.json({ id, object: 'webhook_endpoint' as const, deleted: true }, 200);
  });
  app.openapi(routes.deliveries, async (c) =>
    c.json(
      {
        object: 'list' as const,
        data: await listDeliveries(deps.db, c.get('project'), c.req.valid('param').webhook_id),
      },
      200,
    ),
  );
  app.openapi(routes.redeliver, async (c) =>
    c.json(await redeliver(deps, c.get('project'), c.req.valid('param').delivery_id), 200),
  );
}
