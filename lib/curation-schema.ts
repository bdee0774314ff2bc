// The format of a curation schema file (curation-schemas/*.json): how a batch's results become
// Label Studio tasks and predictions, and how reviewed tasks become fine-tuning examples; and the
// registry of those files, loaded and checked at start-up.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
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

export class CurationSchemaError extends Error {}

function namesIn(labelConfig: string): Set<string> {
  return new Set([...labelConfig.matchAll(/\bname="([^"]+)"/g)].map((m) => m[1] ?? ''));
}

/** What a schema promises that its label config does not hold. */
function problemsOf(schema: CurationSchema): string[] {
  const problems: string[] = [];
  const names = namesIn(schema.label_config);
  for (const variable of schema.label_config.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) {
    const name = variable[1] ?? '';
    if (!(name in schema.data)) problems.push(`label_config uses $${name} but data has no "${name}"`);
  }
  for (const p of schema.predictions) {
    if (!names.has(p.from_name))
      problems.push(`prediction from_name "${p.from_name}" is not a tag name in label_config`);
    if (!names.has(p.to_name)) problems.push(`prediction to_name "${p.to_name}" is not a tag name in label_config`);
  }
  if (!names.has(schema.export.answer_from))
    problems.push(`export.answer_from "${schema.export.answer_from}" is not a tag name in label_config`);
  if (schema.export.accept !== undefined && !names.has(schema.export.accept.from_name)) {
    problems.push(`export.accept.from_name "${schema.export.accept.from_name}" is not a tag name in label_config`);
  }
  return problems;
}

export class CurationRegistry {
  constructor(private readonly schemas: ReadonlyMap<string, CurationSchema>) {}

  get(name: string): CurationSchema | undefined {
    return this.schemas.get(name);
  }

  names(): string[] {
    return [...this.schemas.keys()].sort();
  }
}

/** Reads every *.json in the folder; any invalid file stops the process with the reasons. */
export function loadCurationSchemas(dir: string): CurationRegistry {
  const schemas = new Map<string, CurationSchema>();
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  const problems: string[] = [];
  for (const file of files) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
    } catch (err) {
      problems.push(`${file}: not JSON (${(err as Error).message})`);
      continue;
    }
    const parsed = curationSchemaFileSchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problems.push(`${file}: ${issue.path.join('.')}: ${issue.message}`);
      continue;
    }
    if (file !== `${parsed.data.name}.json`)
      problems.push(`${file}: its name is "${parsed.data.name}"; the file must be ${parsed.data.name}.json`);
    for (const p of problemsOf(parsed.data)) problems.push(`${file}: ${p}`);
    schemas.set(parsed.data.name, parsed.data);
  }
  if (problems.length > 0)
    throw new CurationSchemaError(`invalid curation schemas in ${dir}:\n  ${problems.join('\n  ')}`);
  if (schemas.size === 0) throw new CurationSchemaError(`no curation schemas (*.json) in ${dir}`);
  return new CurationRegistry(schemas);
}
