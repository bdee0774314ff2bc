// The format of a curation schema file (curation-schemas/*.json): how a batch's results become
// Label Studio tasks and predictions, and how reviewed tasks become fine-tuning examples.
import { z } from 'zod';

/** Where a value in a task comes from. */
export const EXTRACTORS = [
  'request.last_user',
  'request.conversation',
  'response.text',
  'custom_id',
  'model',
  'batch_id',
] as const;
export const extractorSchema = z.enum(EXTRACTORS);
export type Extractor = z.infer<typeof extractorSchema>;

const controlName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'a Label Studio tag name');

export const predictionSpecSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('textarea'),
    from_name: controlName,
    to_name: controlName,
    /** The text to pre-fill. */
    value: extractorSchema,
  }),
  z.object({
    type: z.literal('choices'),
    from_name: controlName,
    to_name: controlName,
    /** An extractor (the model answered with a label) or a fixed choice. */
    value: z.union([extractorSchema, z.string().min(1)]),
    /** The choices the value must be one of; a value that is none of them is not pre-filled. */
    choices: z.array(z.string().min(1)).min(1),
  }),
]);
export type PredictionSpec = z.infer<typeof predictionSpecSchema>;

export const curationSchemaFileSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'lower-case letters, digits, - and _'),
    title: z.string().min(3).max(50),
    description: z.string().default(''),
    /** One Label Studio project for every batch using the schema, or a new one per batch. */
    project: z.enum(['per_schema', 'per_batch']),
    endpoints: z.array(z.enum(['/v1/chat/completions', '/v1/completions', '/v1/responses'])).min(1),
    label_config: z.string().min(10),
    /** Task data: key → where its value comes from. Every $variable of the label config must be here. */
    data: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), extractorSchema),
    predictions: z.array(predictionSpecSchema).default([]),
    export: z.object({
      /** The control whose annotated value is the curated answer (a TextArea text or a Choices choice). */
      answer_from: controlName,
      /** Choosing this keeps the model's answer as it was. */
      accept: z.object({ from_name: controlName, choice: z.string().min(1) }).optional(),
    }),
  })
  .strict();
export type CurationSchema = z.infer<typeof curationSchemaFileSchema>;
