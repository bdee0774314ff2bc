// Webhook endpoints (an extension): a project registers URLs that are told when its batches end,
// in OpenAI's event shape, signed per Standard Webhooks with a secret of each endpoint's own.
import { randomBytes } from 'node:crypto';

import { isWellFormedId, newId, nowSeconds } from '../../lib/ids.js';
import { privateHostReason } from '../../lib/private-network.js';
import { safeText } from '../../lib/sanitize.js';
import { jsonb, type Db } from '../../schema/db.js';
import { WEBHOOK_EVENTS, type WebhookEvent } from '../../schema/tables.js';
import type { DeliveryObject, WebhookCreate, WebhookObject } from '../../wire/webhooks.js';
import { redriveWebhookDelivery } from '../../workflows/webhook-delivery-lifecycle.js';
import type { ApiDeps } from '../deps.js';
import { BadRequestError, NotFoundError, RateLimitError, ServiceUnavailableError } from '../errors.js';
import type { Project } from './keys.js';

function toObject(row: { id: string; url: string; events: WebhookEvent[]; created_at: number }): WebhookObject {
  return { id: row.id, object: 'webhook_endpoint', url: row.url, events: row.events, created_at: row.created_at };
}

export async function createWebhook(
  deps: Pick<ApiDeps, 'db' | 'config'>,
  project: Project,
  body: WebhookCreate,
): Promise<WebhookObject> {
  const { db, config } = deps;
  const refused = config.webhooks.allowPrivateNetworks ? undefined : privateHostReason(body.url);
  if (refused !== undefined) {
    throw new BadRequestError(
      `Webhooks may not call private networks: ${refused} (an operator can allow it with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true).`,
      { code: 'invalid_url', param: 'url' },
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
      throw new BadRequestError(
        `This project already has ${n} webhook endpoints, the limit (WEBHOOK_MAX_ENDPOINTS); remove one first.`,
        { code: 'too_many_webhooks', param: 'url' },
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

async function ownWebhook(deps: Pick<ApiDeps, 'db'>, project: Project, id: string) {
  const row = isWellFormedId(id)
    ? await deps.db
        .selectFrom('webhooks')
        .selectAll()
        .where('id', '=', id)
        .where('project_id', '=', project.id)
        .where('deleted_at', 'is', null)
        .executeTakeFirst()
    : undefined;
  if (row === undefined)
    throw new NotFoundError(`No such webhook endpoint: ${id.slice(0, 200)}`, { param: 'webhook_id' });
  return row;
}

export async function listWebhooks(deps: Pick<ApiDeps, 'db'>, project: Project): Promise<WebhookObject[]> {
  const rows = await deps.db
    .selectFrom('webhooks')
    .selectAll()
    .where('project_id', '=', project.id)
    .where('deleted_at', 'is', null)
    .orderBy('created_at')
    .execute();
  return rows.map(toObject);
}

export async function deleteWebhook(deps: Pick<ApiDeps, 'db'>, project: Project, id: string): Promise<void> {
  const row = await ownWebhook(deps, project, id);
  await deps.db.updateTable('webhooks').set({ deleted_at: nowSeconds() }).where('id', '=', row.id).execute();
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
export async function listDeliveries(
  deps: Pick<ApiDeps, 'db'>,
  project: Project,
  webhookId: string,
): Promise<DeliveryObject[]> {
  const hook = await ownWebhook(deps, project, webhookId);
  return deliveryObjects(deps.db, { webhookId: hook.id });
}

/** Sends a delivery again (a failed one, or any other), with a fresh run of retries. */
export async function redeliver(
  deps: Pick<ApiDeps, 'db' | 'config' | 'temporal'>,
  project: Project,
  deliveryId: string,
): Promise<DeliveryObject> {
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
    throw new NotFoundError(`No such webhook delivery: ${safeText(deliveryId)}`, { param: 'delivery_id' });
  const { n: pending } = await deps.db
    .selectFrom('webhook_deliveries')
    .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('webhooks.project_id', '=', project.id)
    .where('webhook_deliveries.status', '=', 'pending')
    .executeTakeFirstOrThrow();
  if (delivery.status !== 'pending' && pending >= deps.config.webhooks.maxPendingPerProject) {
    throw new RateLimitError(
      `This project has ${pending} webhook deliveries being tried already (the limit, WEBHOOK_MAX_PENDING); try again once some are done.`,
      { code: 'too_many_pending_deliveries', param: 'delivery_id' },
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
    throw new ServiceUnavailableError(
      `The delivery could not be re-sent because the orchestrator is unreachable (${(err as Error).message}); try again.`,
      { code: 'service_unavailable' },
    );
  }
  const [object] = await deliveryObjects(deps.db, { deliveryId: delivery.id });
  if (object === undefined)
    throw new NotFoundError(`No such webhook delivery: ${deliveryId}`, { param: 'delivery_id' });
  return object;
}

/** Deliveries (and their attempts) older than the history setting go, except those still being tried. */
export async function sweepOldDeliveries(deps: Pick<ApiDeps, 'db' | 'config'>): Promise<number> {
  const swept = await deps.db
    .deleteFrom('webhook_deliveries')
    .where('created_at', '<', nowSeconds() - deps.config.webhooks.historySeconds)
    .where('status', '!=', 'pending')
    .executeTakeFirst();
  return Number(swept.numDeletedRows);
}
