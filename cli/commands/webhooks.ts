// `gpu-batch webhooks`: the endpoints told when this project's batches end, and their deliveries,
// through the API.
import type { Command } from 'commander';

import type { DeliveryObject, WebhookObject } from '../../wire/webhooks.js';
import { api } from '../clients.js';
import { idCommand, jsonOption, print } from '../output.js';

export function registerWebhookCommands(program: Command): void {
  const json = jsonOption();
  const webhooks = program
    .command('webhooks')
    .description("endpoints told when this project's batches end (signed per Standard Webhooks)");
  webhooks
    .command('add <url>')
    .description('register an endpoint; its signing secret is shown once')
    .option(
      '--events <types>',
      'which events, comma-separated (default: all)',
      (value: string, previous: string[] | undefined) => [
        ...(previous ?? []),
        ...value.split(',').filter((e) => e !== ''),
      ],
    )
    .addOption(json)
    .action(async (url: string, opts: { events?: string[]; json?: boolean }) => {
      const created: WebhookObject = await api().post('/webhooks', {
        body: { url, ...(opts.events !== undefined ? { events: opts.events } : {}) },
      });
      print(opts.json === true, created, () =>
        [
          `Registered ${created.id} for ${created.events.join(', ')}:`,
          `  ${created.url}`,
          '',
          `Signing secret (shown once): ${created.secret ?? ''}`,
        ].join('\n'),
      );
    });
  webhooks
    .command('list')
    .description("the project's endpoints")
    .addOption(json)
    .action(async (opts: { json?: boolean }) => {
      const list: { data: WebhookObject[] } = await api().get('/webhooks');
      print(opts.json === true, list.data, () =>
        list.data.length === 0
          ? 'No webhook endpoints.'
          : list.data.map((w) => `${w.id}  ${w.url}  ${w.events.join(',')}`).join('\n'),
      );
    });
  idCommand(
    webhooks,
    'remove <webhookId>',
    'stop sending to an endpoint',
    json,
    (webhookId): Promise<unknown> => api().delete(`/webhooks/${webhookId}`),
    (_, webhookId) => `Removed ${webhookId}.`,
  );
  idCommand(
    webhooks,
    'deliveries <webhookId>',
    'the latest deliveries to an endpoint, with every attempt',
    json,
    async (webhookId) => {
      const list: { data: DeliveryObject[] } = await api().get(`/webhooks/${webhookId}/deliveries`);
      return list.data;
    },
    (deliveries) =>
      deliveries.length === 0
        ? 'No deliveries yet.'
        : deliveries
            .map((d) => {
              const last = d.attempts.at(-1);
              return `${d.id}  ${d.event_type.padEnd(15)} ${d.batch_id}  ${d.status.padEnd(9)} ${d.attempts.length} attempts${last === undefined ? '' : `, last ${last.status_code ?? last.error ?? ''}`}`;
            })
            .join('\n'),
  );
  idCommand(
    webhooks,
    'redeliver <deliveryId>',
    'send a delivery again (one that failed, or any other)',
    json,
    (deliveryId): Promise<DeliveryObject> => api().post(`/webhooks/deliveries/${deliveryId}/redeliver`),
    (delivery) => `Sending ${delivery.id} (${delivery.event_type} for ${delivery.batch_id}) again.`,
  );
}
