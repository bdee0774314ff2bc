// WebhookDeliveryWorkflow: one event to one endpoint, retried with backoff for as long as the
// settings say (a day and more by default), then kept as failed for a re-drive through the API.
import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';

import type { WebhookActivities } from '../activities/webhook-delivery.js';
import { webhookOptions, type LegacyWebhookRetry } from './legacy-inputs.js';

export interface WebhookDeliveryInput {
  deliveryId: string;
  /** Each attempt's timeout and the retry window (recording the give-up is bounded by the same window). */
  activity: ActivityOptions;
}

/** What deliveries started before ActivityOptions were given (see legacy-inputs.ts). */
interface LegacyWebhookDeliveryInput {
  deliveryId: string;
  retry: LegacyWebhookRetry;
}

function normalize(input: WebhookDeliveryInput | LegacyWebhookDeliveryInput): WebhookDeliveryInput {
  return 'retry' in input ? { deliveryId: input.deliveryId, activity: webhookOptions(input.retry) } : input;
}

export async function WebhookDeliveryWorkflow(
  given: WebhookDeliveryInput | LegacyWebhookDeliveryInput,
): Promise<'delivered' | 'failed'> {
  const input = normalize(given);
  // Bounded too: a database away for a whole retry window ends the workflow failed, as Temporal shows.
  const { deliver, markUndelivered } = proxyActivities<WebhookActivities>(input.activity);
  try {
    await deliver.executeWithOptions({ summary: 'deliver the event (retried with backoff)' }, [input.deliveryId]);
    return 'delivered';
  } catch {
    await markUndelivered.executeWithOptions({ summary: 'record the delivery failed (re-drive it through the API)' }, [
      input.deliveryId,
    ]);
    return 'failed';
  }
}
