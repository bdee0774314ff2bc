// Webhooks as a project's receiver sees them: registered through the API with a secret of their
// own, told of each batch's end once in OpenAI's event shape, signed per Standard Webhooks,
// retried after failures, recorded attempt by attempt, and re-driven after giving up.
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createWebhookActivities } from '../../activities/webhook-delivery.js';
import { createKey } from '../../api/services/keys.js';
import { createWebhook, sweepOldDeliveries } from '../../api/services/webhooks.js';
import { batchLines, runBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';
import { eventOf, startWebhookReceiver, verified, type WebhookReceiver } from '../support/webhook-receiver.js';

interface Endpoint {
  id: string;
  object: string;
  url: string;
  events: string[];
  created_at: number;
  secret?: string;
}

interface Delivery {
  id: string;
  event_id: string;
  event_type: string;
  batch_id: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: { attempt: number; status_code: number | null; error: string | null }[];
}

async function deliveriesOf(openai: OpenAI, webhookId: string, batchId: string): Promise<Delivery[]> {
  const list: { data: Delivery[] } = await openai.get(`/webhooks/${webhookId}/deliveries`);
  return list.data.filter((d) => d.batch_id === batchId);
}

async function waitForDelivery(
  openai: OpenAI,
  webhookId: string,
  batchId: string,
  status: Delivery['status'],
  timeoutMs = 30_000,
): Promise<Delivery> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [delivery] = await deliveriesOf(openai, webhookId, batchId);
    if (delivery?.status === status) return delivery;
    if (Date.now() > deadline)
      throw new Error(`delivery for ${batchId} is ${delivery?.status ?? 'missing'}, not ${status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhooks', () => {
  let stack: TestStack;
  let receiver: WebhookReceiver;
  let endpoint: Endpoint;
  const model = inject('services').simulatorModel;

  beforeAll(async () => {
    // Quick backoff and a five-second retry window, so giving up happens within the test.
    stack = await startTestStack({
      env: {
        WEBHOOK_RETRY_INITIAL_MS: '200',
        WEBHOOK_RETRY_MAX_MS: '400',
        WEBHOOK_RETRY_WINDOW_SECONDS: '5',
        WEBHOOK_TIMEOUT_MS: '2000',
      },
    });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await stack.stop();
    await receiver.close();
  });

  it('registers an endpoint with a secret of its own, shown once', async () => {
    endpoint = await stack.openai.post('/webhooks', { body: { url: receiver.url } });
    expect(endpoint).toMatchObject({
      object: 'webhook_endpoint',
      url: receiver.url,
      events: ['batch.completed', 'batch.failed', 'batch.expired', 'batch.cancelled'],
    });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    const second: Endpoint = await stack.openai.post('/webhooks', {
      body: { url: `${receiver.url}?second`, events: ['batch.failed'] },
    });
    expect(second.secret).not.toBe(endpoint.secret);

    const list: { data: Endpoint[] } = await stack.openai.get('/webhooks');
    expect(list.data.map((e) => e.id)).toEqual([endpoint.id, second.id]);
    expect(list.data.every((e) => e.secret === undefined)).toBe(true);
    await stack.openai.delete(`/webhooks/${second.id}`);
  });

  it('refuses a bad registration with a clear error', async () => {
    for (const body of [
      { url: 'ftp://example.com/x' },
      { url: 'not a url' },
      { url: receiver.url, events: ['batch.started'] },
      {},
    ]) {
      const err = (await stack.openai.post('/webhooks', { body }).catch((e: unknown) => e)) as APIError;
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect(err.error).toMatchObject({ type: 'invalid_request_error' });
      expect((err.error as { message: string }).message.length).toBeGreaterThan(10);
    }
  });

  it('announces a completed batch once, signed, in OpenAI event shape, retrying until the endpoint takes it', async () => {
    // The endpoint fails twice, then accepts.
    let failures = 0;
    receiver.respond = () => (failures++ < 2 ? 500 : 200);
    const batch = await runBatch(stack, batchLines({ model, count: 10 }));
    expect(batch.status).toBe('completed');
    await receiver.waitFor(() => receiver.about(batch.id).some((r) => r.status === 200));
    await new Promise((r) => setTimeout(r, 1500));

    const requests = receiver.about(batch.id);
    expect(requests.map((r) => r.status)).toEqual([500, 500, 200]);
    const events = requests.map((r) => verified(endpoint.secret ?? '', r));
    expect(events[0]).toEqual({
      id: expect.stringMatching(/^evt_/),
      object: 'event',
      type: 'batch.completed',
      created_at: expect.any(Number),
      data: { id: batch.id },
    });
    // Every attempt is the same message: one id for receivers to drop duplicates by.
    expect(new Set(requests.map((r) => r.headers['webhook-id']))).toEqual(new Set([events[0]?.id]));
    expect(events.every((e) => JSON.stringify(e) === JSON.stringify(events[0]))).toBe(true);
    // The openai SDK's own webhook helper accepts it too, as it would an event from OpenAI.
    const sdk = new OpenAI({ apiKey: 'unused', webhookSecret: endpoint.secret ?? '' });
    const lastHeaders = Object.fromEntries(Object.entries(requests[2]!.headers).map(([k, v]) => [k, String(v)]));
    expect(await sdk.webhooks.unwrap(requests[2]!.body, lastHeaders)).toMatchObject({
      type: 'batch.completed',
      data: { id: batch.id },
    });
    // A wrong secret does not verify.
    expect(() =>
      verified(`whsec_${Buffer.from('some other secret of 32 bytes!!').toString('base64')}`, requests[2]!),
    ).toThrow();

    const [delivery] = await deliveriesOf(stack.openai, endpoint.id, batch.id);
    expect(delivery).toMatchObject({ status: 'delivered', event_type: 'batch.completed', event_id: events[0]?.id });
    expect(delivery?.attempts.map((a) => a.status_code)).toEqual([500, 500, 200]);
    expect(delivery?.attempts[0]?.error).toMatch(/500/);
  });

  it('announces a batch that fails validation as batch.failed', async () => {
    receiver.respond = () => 200;
    const batch = await runBatch(stack, '{"custom_id": "a", broken\n');
    expect(batch.status).toBe('failed');
    await receiver.waitFor(() => receiver.about(batch.id).length > 0);
    expect(verified(endpoint.secret ?? '', receiver.about(batch.id)[0]!)).toMatchObject({
      type: 'batch.failed',
      data: { id: batch.id },
    });
  });

  it('gives up after the retry window, keeps the delivery as failed, and re-drives it on request', async () => {
    receiver.respond = () => 503;
    const batch = await runBatch(stack, batchLines({ model, count: 5 }));
    const failed = await waitForDelivery(stack.openai, endpoint.id, batch.id, 'failed');
    expect(failed.attempts.length).toBeGreaterThan(2);
    expect(failed.attempts.every((a) => a.status_code === 503)).toBe(true);

    receiver.respond = () => 200;
    const redriven: Delivery = await stack.openai.post(`/webhooks/deliveries/${failed.id}/redeliver`);
    expect(redriven.id).toBe(failed.id);
    const delivered = await waitForDelivery(stack.openai, endpoint.id, batch.id, 'delivered');
    expect(delivered.attempts.at(-1)?.status_code).toBe(200);
    const last = receiver.about(batch.id).at(-1)!;
    expect(verified(endpoint.secret ?? '', last)).toMatchObject({ id: failed.event_id, type: 'batch.completed' });

    const missing = (await stack.openai
      .post('/webhooks/deliveries/whd_nope/redeliver')
      .catch((e: unknown) => e)) as APIError;
    expect(missing.status).toBe(404);
  });

  it('keeps projects apart, and a deleted endpoint hears nothing more', async () => {
    const other = await createKey(stack, 'webhook-other', 'test');
    const otherApi = new OpenAI({ baseURL: `${stack.apiUrl}/v1`, apiKey: other.key, maxRetries: 0 });
    const otherReceiver = await startWebhookReceiver();
    try {
      const otherEndpoint: Endpoint = await otherApi.post('/webhooks', { body: { url: otherReceiver.url } });
      expect(
        ((await stack.openai.delete(`/webhooks/${otherEndpoint.id}`).catch((e: unknown) => e)) as APIError).status,
      ).toBe(404);
      expect(
        ((await otherApi.get(`/webhooks/${endpoint.id}/deliveries`).catch((e: unknown) => e)) as APIError).status,
      ).toBe(404);

      const mine = await runBatch(stack, batchLines({ model, count: 3 }));
      await receiver.waitFor(() => receiver.about(mine.id).length > 0);
      await stack.openai.delete(`/webhooks/${endpoint.id}`);
      const after = await runBatch(stack, batchLines({ model, count: 3 }));
      expect(after.status).toBe('completed');
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.about(after.id)).toEqual([]);
      expect(otherReceiver.received.map((r) => eventOf(r).data.id)).toEqual([]);
    } finally {
      await otherReceiver.close();
    }
  });

  it('keeps webhooks off private networks unless the operator allows them', async () => {
    // The suite's stack allows them (its receivers are on this machine); these use the default settings.
    const strict = { ...stack.config, webhooks: { ...stack.config.webhooks, allowPrivateNetworks: false } };
    const { project } = await createKey(stack, 'webhook-strict', 'test');
    for (const url of [
      'http://127.0.0.1:8080/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://[::1]/x',
      'http://10.1.2.3/',
      'http://localhost:3000/',
    ]) {
      await expect(createWebhook({ db: stack.db, config: strict }, project, { url })).rejects.toMatchObject({
        status: 400,
        param: 'url',
        message: expect.stringMatching(/private networks.*WEBHOOK_ALLOW_PRIVATE_NETWORKS/),
      });
    }
    expect(await stack.db.selectFrom('webhooks').select('id').where('project_id', '=', project.id).execute()).toEqual(
      [],
    );

    // A name is checked on the address it resolves to, when sending: registered while allowed, then refused.
    receiver.respond = () => 200;
    const hook = await createWebhook(stack, project, {
      url: receiver.url.replace('127.0.0.1', 'localhost'),
    });
    const batch = await runBatch(stack, batchLines({ model, count: 2 }));
    /** A delivery of an empty payload to `hook`, still to be made, created long ago. */
    const pendingDelivery = async (name: string): Promise<void> => {
      await stack.db
        .insertInto('webhook_deliveries')
        .values({
          id: `whd_${name}`,
          webhook_id: hook.id,
          event_id: `evt_${name}`,
          event_type: 'batch.completed',
          batch_id: batch.id,
          payload: '{}',
          status: 'pending',
          last_error: null,
          created_at: 0,
          delivered_at: null,
        })
        .execute();
    };
    await pendingDelivery('strict');
    const strictActivities = createWebhookActivities({ db: stack.db, config: strict, log: stack.log });
    await expect(strictActivities.deliver('whd_strict')).rejects.toThrow(
      /resolves to (127\.0\.0\.1|::1), a private address/,
    );
    const [attempt] = await stack.db
      .selectFrom('webhook_attempts')
      .selectAll()
      .where('delivery_id', '=', 'whd_strict')
      .execute();
    expect(attempt).toMatchObject({ status_code: null, error: expect.stringMatching(/private address/) });
    expect(receiver.received.filter((r) => r.body === '{}')).toEqual([]);
    // The same delivery goes through where private networks are allowed.
    await createWebhookActivities({ db: stack.db, config: stack.config, log: stack.log }).deliver('whd_strict');
    expect(receiver.received.filter((r) => r.body === '{}')).toHaveLength(1);

    // Finished deliveries older than the history setting are swept with their attempts; ones still being tried stay.
    await pendingDelivery('still_trying');
    expect(await sweepOldDeliveries(stack)).toBe(1);
    expect(
      await stack.db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('id', 'in', ['whd_strict', 'whd_still_trying'])
        .execute(),
    ).toEqual([{ id: 'whd_still_trying' }]);
    expect(
      await stack.db
        .selectFrom('webhook_attempts')
        .select('delivery_id')
        .where('delivery_id', '=', 'whd_strict')
        .execute(),
    ).toEqual([]);
  });
});
