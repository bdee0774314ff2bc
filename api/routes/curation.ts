import { timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';

import { ApiError } from '../errors.js';
import {
  curationObjectSchema,
  exportFineTuning,
  getCuration,
  receiveWebhook,
  type CurationDeps,
} from '../services/curation.js';
import { errorResponses, json, security, type App } from './common.js';

const batchIdParams = z.object({ batch_id: z.string().min(1) });

const curationRoute = createRoute({
  method: 'get',
  path: '/v1/batches/{batch_id}/curation',
  summary: "Extension: where the batch's import into Label Studio stands",
  security,
  request: { params: batchIdParams },
  responses: { 200: json(curationObjectSchema, 'The curation state'), ...errorResponses },
});

export const WEBHOOK_PATH = '/hooks/label-studio';

function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function registerCurationRoutes(app: App, deps: CurationDeps): void {
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
      409: errorResponses[400],
    },
  });
  app.get('/v1/batches/:batch_id/curation/export', async (c) => {
    const lines = await exportFineTuning(deps, c.get('project'), c.req.param('batch_id'));
    // Label Studio going away mid-export cuts the body short; the client sees an incomplete download.
    const body = Readable.toWeb(Readable.from(lines).on('error', () => undefined)) as ReadableStream<Uint8Array>;
    return c.body(body, 200, { 'content-type': 'application/jsonl' });
  });
}

/** Label Studio's annotation webhooks, authenticated by a shared secret header (it cannot sign). */
export function registerWebhookReceiver(app: App, deps: CurationDeps): void {
  app.post(WEBHOOK_PATH, async (c) => {
    const secret = deps.config.curation.webhookSecret;
    if (secret === undefined)
      throw new ApiError(
        404,
        'The Label Studio webhook receiver is off (CURATION_WEBHOOK_SECRET is unset).',
        'unknown_url',
      );
    if (!sameSecret(c.req.header('x-curation-secret'), secret))
      throw new ApiError(401, 'Wrong or missing x-curation-secret header.', 'invalid_webhook_secret');
    const body: unknown = await c.req.json().catch(() => {
      throw new ApiError(400, 'The webhook body is not JSON.', 'invalid_request');
    });
    return c.json({ ok: true, outcome: await receiveWebhook(deps.db, body) }, 200);
  });
}
