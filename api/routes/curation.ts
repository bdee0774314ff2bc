import { z } from 'zod';

import { curationObjectSchema } from '../../wire/curation.js';
import type { ApiDeps } from '../deps.js';
import { BadRequestError } from '../errors.js';
import { requireSharedSecret } from '../middleware/shared-secret.js';
import { exportFineTuning, getCuration, receiveWebhook } from '../services/curation.js';
import { apiRoute, batchIdParams, conflictResponse, errorResponses, json, security, type App } from './common.js';

const curationRoute = apiRoute({
  method: 'get',
  path: '/v1/batches/{batch_id}/curation',
  summary: "Extension: where the batch's import into Label Studio stands",
  request: { params: batchIdParams },
  responses: { 200: json(curationObjectSchema, 'The curation state') },
});

export const WEBHOOK_PATH = '/hooks/label-studio';

export function registerCurationRoutes(app: App, deps: ApiDeps): void {
  app.openapi(curationRoute, async (c) =>
    c.json(await getCuration(deps, c.get('project'), c.req.valid('param').batch_id), 200),
  );

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/batches/{batch_id}/curation/export',
    summary: 'Extension: the reviewed results as an OpenAI chat fine-tuning dataset (JSONL)',
    security,
    request: { params: batchIdParams },
    responses: {
      200: {
        description: 'One {"messages": [...]} line per accepted or corrected task',
        content: { 'application/jsonl': { schema: z.string() } },
      },
      ...errorResponses,
      ...conflictResponse,
    },
  });
  app.get('/v1/batches/:batch_id/curation/export', async (c) => {
    const { body, headers } = await exportFineTuning(deps, c.get('project'), c.req.param('batch_id'));
    return c.body(body, 200, headers);
  });
}

/** Label Studio's annotation webhooks, authenticated by a shared secret header (it cannot sign). */
export function registerWebhookReceiver(app: App, deps: ApiDeps): void {
  app.post(
    WEBHOOK_PATH,
    requireSharedSecret({
      header: 'x-curation-secret',
      secret: deps.config.curation.webhookSecret,
      what: 'The Label Studio webhook receiver',
      setting: 'CURATION_WEBHOOK_SECRET',
    }),
    async (c) => {
      const body: unknown = await c.req.json().catch(() => {
        throw new BadRequestError('The webhook body is not JSON.', { code: 'invalid_request' });
      });
      return c.json({ ok: true, outcome: await receiveWebhook(deps, body) }, 200);
    },
  );
}
