// Webhook endpoints (an extension): a project registers URLs that are told when its batches end,
// in OpenAI's event shape, signed per Standard Webhooks with a secret of each endpoint's own.
import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { z } from 'zod';

import type { Config } from '../../lib/config.js';
import { isWellFormedId, newId, nowSeconds } from '../../lib/ids.js';
import { privateHostReason } from '../../lib/private-network.js';
import { safeText } from '../../lib/sanitize.js';
import { jsonb, type Db } from '../../schema/db.js';
import { WEBHOOK_EVENTS, type WebhookEvent } from '../../schema/tables.js';
import { storable } from '../../wire/openai.js';
import { redriveWebhookDelivery } from '../../workflows/webhook-delivery-lifecycle.js';
import { ApiError } from '../errors.js';
import type { Project } from './keys.js';

export interface WebhookDeps {
  db: Db;
  config: Config;
  temporal: Client;
}

export const webhookCreateSchema = z
  .object({
    url: storable(z.url({ protocol: /^https?$/, message: 'an http or https URL' }).max(2048)),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).optional(),
  })
  .meta({ id: 'CreateWebhookRequest' });

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

function toObject(row: { id: string; url: string; events: WebhookEvent[]; created_at: number }): WebhookObject {
  return { id: row.id, object: 'webhook_endpoint', url: row.url, events: row.events, created_at: row.created_at };
}

export async function createWebhook(
  db: Db,
  config: Config,
  project: Project,
  body: z.infer<typeof webhookCreateSchema>,
): Promise<WebhookObject> {
  const refused = config.webhooks.allowPrivateNetworks ? undefined : privateHostReason(body.url);
  if (refused !== undefined) {
    throw new ApiError(
      400,
      `Webhooks may not call private networks: ${refused} (an operator can allow it with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true).`,
      'invalid_url',
      'url',
    );
  }
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const limit = config.webhooks.maxEndpointsPerProject;
  const row = await db.transaction().execute(async (trx) => {
    // The project row is locked while counting, so two creates at once cannot both take the last place.
    await trx.selectFrom('projects').select('id').where('id', '=', project.id).forUpdate().executeTakeFirst();
    const { n } = await trx
      .selectFrom('webhooks')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('project_id', '=', project.id)
      .where('deleted_at', 'is', null)
      .executeTakeFirstOrThrow();
    if (n >= limit)
      throw new ApiError(
        400,
        `This project already has ${n} webhook endpoints, the limit (WEBHOOK_MAX_ENDPOINTS); remove one first.`,
        'too_many_webhooks',
        'url',
      );
    return trx
      .insertInto('webhooks')
      .values({
        id: newId('wh_'),
        project_id: project.id,
        url: body.url,
        secret,
        events: jsonb(body.events ?? [...WEBHOOK_EVENTS]),
        created_at: nowSeconds(),
        deleted_at: null,
      })
      .returning(['id', 'url', 'events', 'created_at'])
      .executeTakeFirstOrThrow();
  });
  return { ...toObject(row), secret };
}

async function ownWebhook(db: Db, project: Project, id: string) {
  const row = isWellFormedId(id)
    ? await db
        .selectFrom('webhooks')
        .selectAll()
        .where('id', '=', id)
        .where('project_id', '=', project.id)
        .where('deleted_at', 'is', null)
        .executeTakeFirst()
    : undefined;
  if (row === undefined) throw new ApiError(404, `No such webhook endpoint: ${id.slice(0, 200)}`, null, 'webhook_id');
  return row;
}

export async function listWebhooks(db: Db, project: Project): Promise<WebhookObject[]> {
  const rows = await db
    .selectFrom('webhooks')
    .selectAll()
    .where('project_id', '=', project.id)
    .where('deleted_at', 'is', null)
    .orderBy('created_at')
    .execute();
  return rows.map(toObject);
}

export async function deleteWebhook(db: Db, project: Project, id: string): Promise<void> {
  const row = await ownWebhook(db, project, id);
  await db.updateTable('webhooks').set({ deleted_at: nowSeconds() }).where('id', '=', row.id).execute();
}

async function deliveryObjects(db: Db, where: { webhookId?: string; deliveryId?: string }): Promise<DeliveryObject[]> {
  let query = db.selectFrom('webhook_deliveries').selectAll().orderBy('created_at', 'desc').limit(100);
  if (where.webhookId !== undefined) query = query.where('webhook_id', '=', where.webhookId);
  if (where.deliveryId !== undefined) query = query.where('id', '=', where.deliveryId);
  const deliveries = await query.execute();
  if (deliveries.length === 0) return [];
  const attempts = await db
    .selectFrom('webhook_attempts')
    .selectAll()
    .where(
      'delivery_id',
      'in',
      deliveries.map((d) => d.id),
    )
    .orderBy('attempt')
    .execute();
  return deliveries.map((d) => ({
    id: d.id,
    object: 'webhook_delivery',
    webhook_id: d.webhook_id,
    event_id: d.event_id,
    event_type: d.event_type,
    batch_id: d.batch_id,
    status: d.status,
    created_at: d.created_at,
    delivered_at: d.delivered_at,
    last_error: d.last_error,
    attempts: attempts
      .filter((a) => a.delivery_id === d.id)
      .map(({ attempt, at, status_code, error, duration_ms }) => ({ attempt, at, status_code, error, duration_ms })),
  }));
}

/** The latest deliveries to an endpoint, each with every attempt. */
export async function listDeliveries(db: Db, project: Project, webhookId: string): Promise<DeliveryObject[]> {
  const hook = await ownWebhook(db, project, webhookId);
  return deliveryObjects(db, { webhookId: hook.id });
}

/** Sends a delivery again (a failed one, or any other), with a fresh run of retries. */
export async function redeliver(deps: WebhookDeps, project: Project, deliveryId: string): Promise<DeliveryObject> {
  const delivery = isWellFormedId(deliveryId)
    ? await deps.db
        .selectFrom('webhook_deliveries')
        .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
        .select(['webhook_deliveries.id', 'webhook_deliveries.status'])
        .where('webhook_deliveries.id', '=', deliveryId)
        .where('webhooks.project_id', '=', project.id)
        .where('webhooks.deleted_at', 'is', null)
        .executeTakeFirst()
    : undefined;
  if (delivery === undefined)
    throw new ApiError(404, `No such webhook delivery: ${safeText(deliveryId)}`, null, 'delivery_id');
  const { n: pending } = await deps.db
    .selectFrom('webhook_deliveries')
    .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('webhooks.project_id', '=', project.id)
    .where('webhook_deliveries.status', '=', 'pending')
    .executeTakeFirstOrThrow();
  if (delivery.status !== 'pending' && pending >= deps.config.webhooks.maxPendingPerProject) {
    throw new ApiError(
      429,
      `This project has ${pending} webhook deliveries being tried already (the limit, WEBHOOK_MAX_PENDING); try again once some are done.`,
      'too_many_pending_deliveries',
      'delivery_id',
      'rate_limit_error',
    );
  }
  // Pending before the start, so the attempt sends it even if it had been delivered; put back as it
  // was if the start fails, so nothing shows as being tried that is not.
  await deps.db.updateTable('webhook_deliveries').set({ status: 'pending' }).where('id', '=', delivery.id).execute();
  try {
    await redriveWebhookDelivery(deps.temporal, deps.config, delivery.id);
  } catch (err) {
    await deps.db
      .updateTable('webhook_deliveries')
      .set({ status: delivery.status })
      .where('id', '=', delivery.id)
      .execute();
    throw new ApiError(
      503,
      `The delivery could not be re-sent because the orchestrator is unreachable (${(err as Error).message}); try again.`,
      'service_unavailable',
    );
  }
  const [object] = await deliveryObjects(deps.db, { deliveryId: delivery.id });
  if (object === undefined) throw new ApiError(404, `No such webhook delivery: ${deliveryId}`, null, 'delivery_id');
  return object;
}

/** Deliveries (and their attempts) older than the history setting go, except those still being tried. */
export async function sweepOldDeliveries(db: Db, config: Config): Promise<number> {
  const swept = await db
    .deleteFrom('webhook_deliveries')
    .where('created_at', '<', nowSeconds() - config.webhooks.historySeconds)
    .where('status', '!=', 'pending')
    .executeTakeFirst();
  return Number(swept.numDeletedRows);
}
