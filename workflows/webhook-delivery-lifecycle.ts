// How a WebhookDeliveryWorkflow is started from outside a workflow: by the reconciler, for a batch
// it ended, and by the API, to re-drive a delivery. Its input is built here from the configuration,
// so no caller assembles it. Not imported by workflow code (not bundled).
import type { Client } from '@temporalio/client';

import { webhookDeliveryActivityOptions } from '../lib/activity-options.js';
import type { Config } from '../lib/config.js';
import { withTemporalDeadline } from '../lib/temporal.js';
import type { WebhookDeliveryInput, WebhookDeliveryWorkflow } from './webhook-delivery.js';

export function webhookDeliveryInput(config: Config, deliveryId: string): WebhookDeliveryInput {
  return { deliveryId, activity: webhookDeliveryActivityOptions(config) };
}

/** The delivery's first run (workflowId = delivery id); one already started throws WorkflowExecutionAlreadyStartedError. */
export async function startWebhookDelivery(client: Client, config: Config, deliveryId: string): Promise<void> {
  await withTemporalDeadline(client, config, () =>
    client.workflow.start<typeof WebhookDeliveryWorkflow>('WebhookDeliveryWorkflow', {
      workflowId: deliveryId,
      taskQueue: config.temporal.orchestratorTaskQueue,
      args: [webhookDeliveryInput(config, deliveryId)],
      staticSummary: `deliver webhook event ${deliveryId}`,
    }),
  );
}

/** A fresh run of retries; one re-drive of a delivery at a time: asking again while it runs joins the run under way. */
export async function redriveWebhookDelivery(client: Client, config: Config, deliveryId: string): Promise<void> {
  await withTemporalDeadline(client, config, () =>
    client.workflow.start<typeof WebhookDeliveryWorkflow>('WebhookDeliveryWorkflow', {
      workflowId: `${deliveryId}-redrive`,
      workflowIdConflictPolicy: 'USE_EXISTING',
      taskQueue: config.temporal.orchestratorTaskQueue,
      args: [webhookDeliveryInput(config, deliveryId)],
      staticSummary: `re-drive webhook event ${deliveryId}`,
    }),
  );
}
