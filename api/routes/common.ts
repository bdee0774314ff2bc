import { createRoute, type OpenAPIHono, type RouteConfig } from '@hono/zod-openapi';
import { z } from 'zod';

import { errorResponseSchema } from '../../wire/openai.js';
import type { AuthEnv } from '../middleware/auth.js';
import type { Page } from '../services/pages.js';

export type App = OpenAPIHono<AuthEnv>;

export function json<T extends z.ZodType>(schema: T, description: string) {
  return { content: { 'application/json': { schema } }, description };
}

/** The error answers every authenticated route can give, documented once. */
export const errorResponses = {
  400: json(errorResponseSchema, 'Invalid request'),
  401: json(errorResponseSchema, 'Missing or invalid API key'),
  404: json(errorResponseSchema, 'Not found (or owned by another project)'),
} as const;

/** A refusal because of the state of what is asked about (409), documented as the other refusals are. */
export const conflictResponse = { 409: errorResponses[400] } as const;

export const security = [{ bearerAuth: [] }];

/** An authenticated route (bearer key), documented with the error answers every one can give. */
export function apiRoute<const R extends Omit<RouteConfig, 'security'>>(config: R) {
  return createRoute({ ...config, security, responses: { ...errorResponses, ...config.responses } });
}

export const batchIdParams = z.object({ batch_id: z.string().min(1) });

/** OpenAI's list envelope around one page of rows, each shown as its wire object. */
export function listPage<Row, T extends { id: string }>(page: Page<Row>, toObject: (row: Row) => T) {
  const data = page.rows.map(toObject);
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}
