// WebhookDeliveryWorkflow: one event to one endpoint, retried with backoff for as long as the
// settings say (a day and more by default), then kept as failed for a re-drive through the API.
import { proxyActivities } from '@temporalio/workflow';

import type { WebhookActivities } from '../activities/webhook-delivery.js';

export interface WebhookDeliveryInput {
  deliveryId: string;
  retry: { attemptTimeoutMs: number; windowSeconds: number; initialMs: number; maxMs: number };
}

export async function WebhookDeliveryWorkflow(input: WebhookDeliveryInput): Promise<'delivered' | 'failed'> {
  const { retry } = input;
  const { deliver } = proxyActivities<WebhookActivities>({
    startToCloseTimeout: retry.attemptTimeoutMs,
    scheduleToCloseTimeout: retry.windowSeconds * 1000,
    retry: { initialInterval: retry.initialMs, maximumInterval: retry.maxMs, backoffCoefficient: 2 },
  });
  const { markUndelivered } = proxyActivities<WebhookActivities>({
    startToCloseTimeout: retry.attemptTimeoutMs,
    // Bounded too: a database away for a whole retry window ends the workflow failed, as Temporal shows.
    scheduleToCloseTimeout: retry.windowSeconds * 1000,
    retry: { initialInterval: retry.initialMs, maximumInterval: retry.maxMs },
  });
  try {
    await deliver(input.deliveryId);
    return 'delivered';
  } catch {
    await markUndelivered(input.deliveryId);
    return 'failed';
  }
}
