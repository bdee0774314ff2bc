// Curation through the API (extensions): where a batch's import into Label Studio stands, the
// reviewed results as an OpenAI chat fine-tuning dataset, and Label Studio's annotation webhooks.
import { fineTuningLine } from '../../lib/curation-tasks.js';
import { isWellFormedId, nowSeconds } from '../../lib/ids.js';
import { labelStudioEventSchema, type CurationObject } from '../../wire/curation.js';
import type { ApiDeps } from '../deps.js';
import { BadRequestError, ConflictError } from '../errors.js';
import { getBatch } from './batches.js';
import { download, type Download } from './download.js';
import type { Project } from './keys.js';

export async function getCuration(
  deps: Pick<ApiDeps, 'db' | 'config' | 'registry' | 'labelStudio'>,
  project: Project,
  batchId: string,
): Promise<CurationObject> {
  const batch = await getBatch(deps, project, batchId);
  const row = await deps.db.selectFrom('curations').selectAll().where('batch_id', '=', batch.id).executeTakeFirst();
  const base = deps.config.labelStudio.url?.replace(/\/+$/, '');
  if (row === undefined) {
    // The import starts when the batch finishes.
    const ended = batch.status === 'failed';
    return {
      object: 'batch.curation',
      batch_id: batch.id,
      status: ended ? 'skipped' : 'pending',
      reason: ended ? 'the batch failed validation, so nothing ran' : null,
      schema: null,
      label_studio_project_id: null,
      label_studio_url: null,
      tasks_total: 0,
      tasks_imported: 0,
      pages_total: 0,
      pages_done: 0,
      reviewed: 0,
      started_at: null,
      finished_at: null,
    };
  }
  return {
    object: 'batch.curation',
    batch_id: batch.id,
    status: row.status,
    reason: row.reason,
    schema: row.schema,
    label_studio_project_id: row.ls_project_id,
    label_studio_url:
      row.ls_project_id !== null && base !== undefined ? `${base}/projects/${row.ls_project_id}/data` : null,
    tasks_total: row.tasks_total,
    tasks_imported: row.tasks_imported,
    pages_total: row.pages_total,
    pages_done: row.pages_done,
    reviewed: row.reviewed,
    started_at: row.started_at,
    finished_at: row.finished_at,
  };
}

/** Task ids asked of Label Studio per request of an export. */
const EXPORT_SLICE = 200;

/**
 * The batch's reviewed tasks as OpenAI chat fine-tuning lines: an accepted answer as it was, a
 * corrected one as corrected; rejected and unreviewed tasks are left out. Checked at once (so a
 * refusal is an ordinary error answer); the lines then come as Label Studio gives them, a slice of
 * the batch's own task ids at a time, never the whole project in memory.
 */
export async function exportFineTuning(
  deps: Pick<ApiDeps, 'db' | 'config' | 'registry' | 'labelStudio'>,
  project: Project,
  batchId: string,
): Promise<Download> {
  const curation = await getCuration(deps, project, batchId);
  const refuse = (
    message: string,
    code: 'curation_unavailable' | 'curation_not_imported' | 'curation_schema_missing',
  ) => new ConflictError(message, { code, param: 'batch_id' });
  if (deps.labelStudio === undefined)
    throw refuse(
      'Label Studio is not configured on this server, so there is nothing to export.',
      'curation_unavailable',
    );
  if (curation.label_studio_project_id === null || curation.schema === null) {
    throw refuse(
      `Batch ${batchId} has not been imported into Label Studio (curation is ${curation.status}${curation.reason === null ? '' : `: ${curation.reason}`}).`,
      'curation_not_imported',
    );
  }
  const schema = deps.registry.get(curation.schema);
  if (schema === undefined)
    throw refuse(
      `The curation schema "${curation.schema}" of batch ${batchId} is no longer defined.`,
      'curation_schema_missing',
    );
  const { labelStudio } = deps;
  const lsProject = curation.label_studio_project_id;
  const pages = await deps.db
    .selectFrom('curation_pages')
    .select('ls_task_ids')
    .where('batch_id', '=', curation.batch_id)
    .orderBy('page')
    .execute();
  const taskIds = pages.flatMap((p) => p.ls_task_ids ?? []);
  const lines = (async function* () {
    for (let i = 0; i < taskIds.length; i += EXPORT_SLICE) {
      for (const task of await labelStudio.exportAnnotated(lsProject, taskIds.slice(i, i + EXPORT_SLICE))) {
        // A task moved or re-imported under another batch is not this batch's.
        if (task.data.batch_id !== batchId) continue;
        const line = fineTuningLine(schema, task);
        if (line !== undefined) yield `${line}\n`;
      }
    }
  })();
  return download(lines, { 'content-type': 'application/jsonl' });
}

/**
 * An operator lets a project import into a Label Studio project it did not make (metadata
 * curation_project); `allowed: false` takes that back. Returns the project it applied to.
 */
export async function setCurationGrant(
  deps: Pick<ApiDeps, 'db'>,
  projectName: string,
  lsProjectId: number,
  allowed: boolean,
): Promise<Project> {
  const { db } = deps;
  const project = await db
    .selectFrom('projects')
    .select(['id', 'name'])
    .where('name', '=', projectName)
    .executeTakeFirst();
  if (project === undefined) throw new Error(`no project named "${projectName}"`);
  if (allowed) {
    await db
      .insertInto('curation_grants')
      .values({ project_id: project.id, ls_project_id: lsProjectId, created_at: nowSeconds() })
      .onConflict((c) => c.doNothing())
      .execute();
  } else {
    await db
      .deleteFrom('curation_grants')
      .where('project_id', '=', project.id)
      .where('ls_project_id', '=', lsProjectId)
      .execute();
  }
  return project;
}

/** Records review progress from Label Studio's ANNOTATION_* webhooks; returns what it did. */
export async function receiveWebhook(
  deps: Pick<ApiDeps, 'db'>,
  body: unknown,
): Promise<'recorded' | 'removed' | 'ignored'> {
  const { db } = deps;
  const parsed = labelStudioEventSchema.safeParse(body);
  if (!parsed.success)
    throw new BadRequestError(`Not a Label Studio webhook: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {
      code: 'invalid_request',
    });
  const event = parsed.data;
  const batchIds = new Set<string>();
  let outcome: 'recorded' | 'removed' | 'ignored' = 'ignored';
  if (
    (event.action === 'ANNOTATION_CREATED' || event.action === 'ANNOTATION_UPDATED') &&
    event.task !== undefined &&
    event.project !== undefined
  ) {
    const data = event.task.data ?? {};
    // A task's data is whatever was imported (or edited in Label Studio since): only one of our ids is a batch id.
    const batchId = typeof data.batch_id === 'string' && isWellFormedId(data.batch_id) ? data.batch_id : null;
    await db
      .insertInto('curation_reviews')
      .values({
        ls_project_id: event.project.id,
        ls_task_id: event.task.id,
        batch_id: batchId,
        custom_id: typeof data.custom_id === 'string' ? data.custom_id : null,
        action: event.action,
        annotation_id: event.annotation?.id ?? null,
        received_at: nowSeconds(),
      })
      .onConflict((c) =>
        c.columns(['ls_project_id', 'ls_task_id']).doUpdateSet({
          action: event.action,
          annotation_id: event.annotation?.id ?? null,
          received_at: nowSeconds(),
        }),
      )
      .execute();
    if (batchId !== null) batchIds.add(batchId);
    outcome = 'recorded';
  } else if (
    event.action === 'ANNOTATIONS_DELETED' &&
    event.annotations !== undefined &&
    event.annotations.length > 0
  ) {
    const removed = await db
      .deleteFrom('curation_reviews')
      .where(
        'annotation_id',
        'in',
        event.annotations.map((a) => a.id),
      )
      .returning('batch_id')
      .execute();
    for (const r of removed) if (r.batch_id !== null) batchIds.add(r.batch_id);
    outcome = 'removed';
  }
  for (const batchId of batchIds) {
    const { count } = await db
      .selectFrom('curation_reviews')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('batch_id', '=', batchId)
      .executeTakeFirstOrThrow();
    await db.updateTable('curations').set({ reviewed: count }).where('batch_id', '=', batchId).execute();
  }
  return outcome;
}
