// Webhook endpoints' wire objects (an extension): what a project registers, and each delivery with
// its attempts.
import { z } from 'zod';

import { WEBHOOK_EVENTS } from '../schema/tables.js';
import { simpleListSchema, storable } from './openai.js';

export const webhookCreateSchema = z
  .object({
    url: storable(z.url({ protocol: /^https?$/, message: 'an http or https URL' }).max(2048)),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).optional(),
  })
  .meta({ id: 'CreateWebhookRequest' });
export type WebhookCreate = z.infer<typeof webhookCreateSchema>;

export const webhookObjectSchema = z
  .object({
    id: z.string(),
    object: z.literal('webhook_endpoint'),
    url: z.string(),
    events: z.array(z.enum(WEBHOOK_EVENTS)),
    created_at: z.number().int(),
    /** Only in the answer to create: keep it to verify signatures. */
    secret: z.string().optional(),
  })
  .meta({ id: 'WebhookEndpoint' });
export type WebhookObject = z.infer<typeof webhookObjectSchema>;

export const webhookDeletedSchema = z.object({
  id: z.string(),
  object: z.literal('webhook_endpoint'),
  deleted: z.boolean(),
});

export const deliveryObjectSchema = z
  .object({
    id: z.string(),
    object: z.literal('webhook_delivery'),
    webhook_id: z.string(),
    event_id: z.string(),
    event_type: z.enum(WEBHOOK_EVENTS),
    batch_id: z.string(),
    status: z.enum(['pending', 'delivered', 'failed']),
    created_at: z.number().int(),
    delivered_at: z.number().int().nullable(),
    last_error: z.string().nullable(),
    attempts: z.array(
      z.object({
        attempt: z.number().int(),
        at: z.number().int(),
        status_code: z.number().int().nullable(),
        error: z.string().nullable(),
        duration_ms: z.number().int(),
      }),
    ),
  })
  .meta({ id: 'WebhookDelivery' });
export type DeliveryObject = z.infer<typeof deliveryObjectSchema>;

export const webhookListSchema = simpleListSchema(webhookObjectSchema, 'WebhookList');
export const deliveryListSchema = simpleListSchema(deliveryObjectSchema, 'WebhookDeliveryList');
