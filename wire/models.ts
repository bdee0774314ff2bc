// The model objects of GET /v1/models, in OpenAI's shape.
import { z } from 'zod';

import { simpleListSchema } from './openai.js';

export const modelSchema = z
  .object({ id: z.string(), object: z.literal('model'), created: z.number().int(), owned_by: z.string() })
  .meta({ id: 'Model' });
export type ModelObject = z.infer<typeof modelSchema>;

export const modelListSchema = simpleListSchema(modelSchema, 'ModelList');
export type ModelList = z.infer<typeof modelListSchema>;
