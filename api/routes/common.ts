import type { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';

import { errorResponseSchema } from '../../wire/openai.js';
import type { AuthEnv } from '../middleware/auth.js';

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

export const security = [{ bearerAuth: [] }];
