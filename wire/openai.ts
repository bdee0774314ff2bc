// OpenAI's wire objects for Files and Batches, as zod schemas. The API validates with them and
// generates its OpenAPI document from them; activities use the same types for the JSONL lines.
import { z } from 'zod';

import { isStorableText } from '../lib/sanitize.js';

export const BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses'] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];
export const batchEndpointSchema = z.enum(BATCH_ENDPOINTS);

const DURATION_UNITS = { s: 1, m: 60, h: 3600, d: 86400 } as const;
export const MIN_COMPLETION_WINDOW_SECONDS = 30;
export const MAX_COMPLETION_WINDOW_SECONDS = 7 * 86400;

/** "24h" → 86400; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([smhd])$/.exec(text);
  if (m === null) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS];
}

export const completionWindowSchema = z
  .string()
  .refine(
    (w) => {
      const s = parseDuration(w);
      return s !== undefined && s >= MIN_COMPLETION_WINDOW_SECONDS && s <= MAX_COMPLETION_WINDOW_SECONDS;
    },
    {
      message:
        'completion_window must be a duration such as 24h (extension: any value from 30s to 7d, e.g. 1h, 90m, 3d)',
    },
  )
  .meta({ description: "OpenAI accepts only '24h'; this server also accepts durations from 30s to 7d." });

/** Text that can be stored exactly: Postgres refuses NUL, and an unpaired surrogate would not come back as sent. */
export const storable = <T extends z.ZodType<string>>(s: T) =>
  s.refine(isStorableText, { message: 'must not contain NUL characters or unpaired surrogates' });

export const metadataSchema = z
  .record(
    storable(z.string().max(64, 'metadata keys are at most 64 characters')),
    storable(z.string().max(512, 'metadata values are at most 512 characters')),
  )
  .refine((m) => Object.keys(m).length <= 16, { message: 'metadata holds at most 16 key-value pairs' })
  .meta({ id: 'Metadata', description: 'Up to 16 key-value pairs; keys ≤ 64 characters, values ≤ 512.' });

export const expiresAfterSchema = z.object({
  anchor: z.literal('created_at'),
  seconds: z.number().int().min(3600).max(2_592_000),
});

export const batchPrioritySchema = z.number().int().min(1).max(5).meta({
  description:
    'Extension: 1 runs first, 5 last (default 3). Chunks of higher-priority batches are taken from the task queue first.',
});

export const batchCreateSchema = z
  .object({
    input_file_id: z.string().min(1),
    endpoint: batchEndpointSchema,
    completion_window: completionWindowSchema,
    metadata: metadataSchema.nullish(),
    output_expires_after: expiresAfterSchema.nullish(),
    priority: batchPrioritySchema.nullish(),
  })
  .meta({ id: 'CreateBatchRequest' });
export type BatchCreate = z.infer<typeof batchCreateSchema>;

export const batchRetrySchema = z
  .object({
    completion_window: completionWindowSchema.optional(),
    metadata: metadataSchema.nullish(),
    priority: batchPrioritySchema.nullish(),
  })
  .meta({ id: 'RetryBatchRequest', description: 'Extension. Omitted fields are taken from the batch being retried.' });
export type BatchRetry = z.infer<typeof batchRetrySchema>;

export const filePurposeSchema = z.enum(['batch', 'batch_output']);

/** The form fields of POST /v1/files, besides the file itself. */
export const uploadFieldsSchema = z
  .object({
    purpose: z.literal('batch', { message: "this server stores batch input files only: use purpose 'batch'" }),
    'expires_after[anchor]': z.literal('created_at', { message: "only 'created_at' is supported" }).optional(),
    'expires_after[seconds]': z.coerce.number().int().min(3600).max(2_592_000).optional(),
  })
  .refine((f) => (f['expires_after[anchor]'] === undefined) === (f['expires_after[seconds]'] === undefined), {
    message: 'expires_after needs both anchor and seconds',
    path: ['expires_after[seconds]'],
  });

export const fileObjectSchema = z
  .object({
    id: z.string(),
    object: z.literal('file'),
    bytes: z.number().int(),
    created_at: z.number().int(),
    expires_at: z.number().int().nullable(),
    filename: z.string(),
    purpose: filePurposeSchema,
    status: z.enum(['uploaded', 'processed', 'error']),
    status_details: z.string().nullable(),
  })
  .meta({ id: 'FileObject' });
export type FileObject = z.infer<typeof fileObjectSchema>;

export const fileDeletedSchema = z
  .object({ id: z.string(), object: z.literal('file'), deleted: z.boolean() })
  .meta({ id: 'FileDeleted' });

export const batchErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  param: z.string().nullable(),
  line: z.number().int().nullable(),
});

export const batchStatusSchema = z.enum([
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
]);

export const batchUsageSchema = z.object({
  input_tokens: z.number().int(),
  input_tokens_details: z.object({ cached_tokens: z.number().int() }),
  output_tokens: z.number().int(),
  output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
  total_tokens: z.number().int(),
});

export const batchObjectSchema = z
  .object({
    id: z.string(),
    object: z.literal('batch'),
    endpoint: z.string(),
    model: z.string().nullable(),
    errors: z.object({ object: z.literal('list'), data: z.array(batchErrorSchema) }).nullable(),
    input_file_id: z.string(),
    completion_window: z.string(),
    status: batchStatusSchema,
    output_file_id: z.string().nullable(),
    error_file_id: z.string().nullable(),
    created_at: z.number().int(),
    in_progress_at: z.number().int().nullable(),
    expires_at: z.number().int().nullable(),
    finalizing_at: z.number().int().nullable(),
    completed_at: z.number().int().nullable(),
    failed_at: z.number().int().nullable(),
    expired_at: z.number().int().nullable(),
    cancelling_at: z.number().int().nullable(),
    cancelled_at: z.number().int().nullable(),
    request_counts: z.object({ total: z.number().int(), completed: z.number().int(), failed: z.number().int() }),
    usage: batchUsageSchema,
    metadata: z.record(z.string(), z.string()).nullable(),
    /** Extension: the batch's priority, when one was given. */
    priority: z.number().int().nullable(),
    /** Extension: the batch this one re-runs the failed lines of. */
    retry_of: z.string().nullable(),
  })
  .meta({ id: 'Batch' });
export type BatchObject = z.infer<typeof batchObjectSchema>;

/** A list without paging, as GET /v1/models answers. */
export function simpleListSchema<T extends z.ZodType>(item: T, id: string) {
  return z.object({ object: z.literal('list'), data: z.array(item) }).meta({ id });
}

/** A page of a list, as GET /v1/files and /v1/batches answer. */
export function listSchema<T extends z.ZodType>(item: T, id: string) {
  return z
    .object({
      object: z.literal('list'),
      data: z.array(item),
      first_id: z.string().nullable(),
      last_id: z.string().nullable(),
      has_more: z.boolean(),
    })
    .meta({ id });
}

export const errorResponseSchema = z
  .object({
    error: z.object({
      message: z.string(),
      type: z.string(),
      param: z.string().nullable(),
      code: z.string().nullable(),
    }),
  })
  .meta({ id: 'ErrorResponse' });
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

/** One request line of a batch input file. */
export const inputLineSchema = z.object({
  custom_id: z.string().min(1),
  method: z.literal('POST'),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});
export type InputLine = z.infer<typeof inputLineSchema>;

/** One line of a batch's output or error file. */
export interface OutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: unknown } | null;
  error: { code: string; message: string } | null;
}
