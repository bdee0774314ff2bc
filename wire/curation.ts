// Curation's wire objects (extensions): where a batch's import into Label Studio stands, and the
// annotation webhooks Label Studio sends us.
import { z } from 'zod';

export const curationObjectSchema = z
  .object({
    object: z.literal('batch.curation'),
    batch_id: z.string(),
    status: z.enum(['pending', 'running', 'completed', 'skipped', 'failed']),
    reason: z.string().nullable(),
    schema: z.string().nullable(),
    label_studio_project_id: z.number().int().nullable(),
    label_studio_url: z.string().nullable(),
    tasks_total: z.number().int(),
    tasks_imported: z.number().int(),
    pages_total: z.number().int(),
    pages_done: z.number().int(),
    reviewed: z.number().int(),
    started_at: z.number().int().nullable(),
    finished_at: z.number().int().nullable(),
  })
  .meta({ id: 'BatchCuration' });
export type CurationObject = z.infer<typeof curationObjectSchema>;

/** Label Studio's ANNOTATION_* webhook bodies: only what we read is checked, the rest passes. */
export const labelStudioEventSchema = z
  .object({
    action: z.string(),
    task: z
      .object({ id: z.number().int(), data: z.record(z.string(), z.unknown()).optional() })
      .loose()
      .optional(),
    annotation: z.object({ id: z.number().int() }).loose().optional(),
    annotations: z.array(z.object({ id: z.number().int() }).loose()).optional(),
    project: z.object({ id: z.number().int() }).loose().optional(),
  })
  .loose();
export type LabelStudioEvent = z.infer<typeof labelStudioEventSchema>;
