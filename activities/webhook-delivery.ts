// Webhooks: when a batch ends, each of its project's endpoints gets OpenAI's event shape, signed per
// the Standard Webhooks scheme. One delivery per (endpoint, event), recorded with every attempt;
// a failed attempt is retried by Temporal for as long as the delivery workflow allows.
import { ApplicationFailure } from '@temporalio/common';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';

import type { Config } from '../lib/config.js';
import { nowSeconds, stableId } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { webhookAttemptsTotal } from '../lib/metrics.js';
import { publicOnlyAgent } from '../lib/private-network.js';
import { safeText } from '../lib/sanitize.js';
import type { Db } from '../schema/db.js';
import type { BatchStatus, WebhookEvent } from '../schema/tables.js';
import { FailureType } from '../workflows/failure-types.js';

export interface WebhookDeliveryDeps {
  db: Db;
  config: Config;
  log: Logger;
}

const EVENT_OF: Partial<Record<BatchStatus, WebhookEvent>> = {
  completed: 'batch.completed',
  failed: 'batch.failed',
  expired: 'batch.expired',
  cancelled: 'batch.cancelled',
};

/** The body OpenAI sends for a batch event. */
export function eventPayload(eventId: string, type: WebhookEvent, createdAt: number, batchId: string): string {
  return JSON.stringify({ id: eventId, object: 'event', type, created_at: createdAt, data: { id: batchId } });
}

export function createWebhookActivities(deps: WebhookDeliveryDeps) {
  const { db, config, log } = deps;
  const agent = config.webhooks.allowPrivateNetworks ? new Agent() : publicOnlyAgent();

  return {
    /**
     * One delivery per subscribed endpoint of the batch's project; the same ids however often it runs.
     * The event follows the stored status, which is what the API shows.
     */
    async prepareDeliveries(input: { batchId: string }): Promise<string[]> {
      const batch = await db
        .selectFrom('batches')
        .select(['project_id', 'status'])
        .where('id', '=', input.batchId)
        .executeTakeFirst();
      const type = batch === undefined ? undefined : EVENT_OF[batch.status];
      if (batch === undefined || type === undefined) return [];
      const hooks = await db
        .selectFrom('webhooks')
        .select(['id', 'events'])
        .where('project_id', '=', batch.project_id)
        .where('deleted_at', 'is', null)
        .execute();
      const eventId = stableId('evt_', `${input.batchId}:${type}`);
      const now = nowSeconds();
      const payload = eventPayload(eventId, type, now, input.batchId);
      const subscribed = hooks.filter((h) => h.events.includes(type));
      if (subscribed.length === 0) return [];
      const rows = subscribed.map((h) => ({
        id: stableId('whd_', `${h.id}:${eventId}`),
        webhook_id: h.id,
        event_id: eventId,
        event_type: type,
        batch_id: input.batchId,
        payload,
        status: 'pending' as const,
        last_error: null,
        created_at: now,
        delivered_at: null,
      }));
      // In slices: one INSERT of thousands of rows would pass Postgres's limit on parameters.
      for (let i = 0; i < rows.length; i += 500) {
        await db
          .insertInto('webhook_deliveries')
          .values(rows.slice(i, i + 500))
          .onConflict((c) => c.columns(['webhook_id', 'event_id']).doNothing())
          .execute();
      }
      return rows.map((r) => r.id);
    },

    /** One attempt: signed POST, recorded whatever happens; anything but 2xx is retried. */
    async deliver(deliveryId: string): Promise<void> {
      const delivery = await db
        .selectFrom('webhook_deliveries')
        .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
        .select([
          'webhook_deliveries.id',
          'webhook_deliveries.status',
          'webhook_deliveries.payload',
          'webhook_deliveries.event_id',
          'webhooks.url',
          'webhooks.secret',
          'webhooks.deleted_at',
        ])
        .where('webhook_deliveries.id', '=', deliveryId)
        .executeTakeFirst();
      if (delivery === undefined || delivery.status === 'delivered') return;
      if (delivery.deleted_at !== null) {
        await db
          .updateTable('webhook_deliveries')
          .set({ status: 'failed', last_error: 'the endpoint was deleted' })
          .where('id', '=', deliveryId)
          .execute();
        return;
      }
      const attempt = await db
        .updateTable('webhook_deliveries')
        .set((eb) => ({ attempts: eb('attempts', '+', 1), status: 'pending' }))
        .where('id', '=', deliveryId)
        .returning('attempts')
        .executeTakeFirstOrThrow();
      const sentAt = new Date();
      // The message id stays the same on every attempt, so receivers can drop duplicates.
      const signature = new Webhook(delivery.secret).sign(delivery.event_id, sentAt, delivery.payload);
      const started = performance.now();
      let status: number | null = null;
      let error: string | null = null;
      try {
        // No redirects are followed: the signed request goes only where it was registered to.
        const res = await request(delivery.url, {
          method: 'POST',
          dispatcher: agent,
          headers: {
            'content-type': 'application/json',
            'user-agent': 'gpu-batch-webhooks',
            'webhook-id': delivery.event_id,
            'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
            'webhook-signature': signature,
          },
          body: delivery.payload,
          signal: AbortSignal.timeout(config.webhooks.timeoutMs),
        });
        status = res.statusCode;
        await res.body.dump();
        if (status < 200 || status >= 300) error = `the endpoint answered ${status}`;
      } catch (err) {
        // The message names the endpoint's URL, which a client gave.
        error = `could not reach the endpoint: ${safeText((err as Error).message, 500)}`;
      }
      const duration = Math.round(performance.now() - started);
      webhookAttemptsTotal.inc({ outcome: error === null ? 'delivered' : 'failed' });
      await db
        .insertInto('webhook_attempts')
        .values({
          delivery_id: deliveryId,
          attempt: attempt.attempts,
          at: nowSeconds(),
          status_code: status,
          error,
          duration_ms: duration,
        })
        .execute();
      if (error !== null) {
        await db.updateTable('webhook_deliveries').set({ last_error: error }).where('id', '=', deliveryId).execute();
        log.info({ deliveryId, attempt: attempt.attempts, error }, 'webhook attempt failed; it will be retried');
        throw ApplicationFailure.retryable(error, FailureType.WebhookDeliveryFailed);
      }
      await db
        .updateTable('webhook_deliveries')
        .set({ status: 'delivered', delivered_at: nowSeconds(), last_error: null })
        .where('id', '=', deliveryId)
        .execute();
    },

    /** Out of retries: kept as failed, to be re-driven through the API. */
    async markUndelivered(deliveryId: string): Promise<void> {
      await db
        .updateTable('webhook_deliveries')
        .set({ status: 'failed' })
        .where('id', '=', deliveryId)
        .where('status', '=', 'pending')
        .execute();
      log.warn({ deliveryId }, 'webhook delivery gave up');
    },
  };
}

export type WebhookActivities = ReturnType<typeof createWebhookActivities>;
