// The import worker's activities: plan a batch's import into Label Studio, make sure its project
// exists (exactly once), import page by page (exactly once), and record the outcome. A Label Studio
// that is down is the caller's to retry; wrong credentials or an unusable schema end the import.
import { curationPagesTotal, curationTasksImportedTotal } from '../lib/metrics.js';
import { ApplicationFailure } from '@temporalio/common';
import { sql } from 'kysely';
import type { Config } from '../lib/config.js';
import { buildTask, curationKey, type CurationRegistry } from '../lib/curation.js';
import type { Db } from '../lib/db.js';
import type { FileStore } from '../lib/file-store.js';
import { nowSeconds } from '../lib/ids.js';
import { isBlank, readLines } from '../lib/jsonl.js';
import { LabelStudioAuthError, LabelStudioError, type LabelStudio } from '../lib/label-studio.js';
import type { Logger } from '../lib/logger.js';
import type { CurationSchema } from '../schema/curation.js';
import type { CurationStatus } from '../schema/tables.js';

export interface CurationDeps {
  db: Db;
  store: FileStore;
  config: Config;
  log: Logger;
  registry: CurationRegistry;
  /** Undefined when LABEL_STUDIO_URL is not set: imports are skipped. */
  labelStudio: LabelStudio | undefined;
}

/** The failure types that end an import at once (retrying cannot fix them). */
export const CURATION_NOT_RETRYABLE = ['LabelStudioAuthError', 'CurationChoiceError', 'LabelStudioRefused'];

export interface ImportPage {
  page: number;
  /** Successful requests on the page. */
  tasks: number;
  firstLine: number;
  lastLine: number;
  byteStart: number;
  byteEnd: number;
}

/** What every page of an import shares; each page's activity carries this, not the whole plan. */
export interface PageSource {
  schema: string;
  endpoint: string;
  model: string;
  inputKey: string;
}

export type ImportPlan = { ended: CurationStatus; reason: string } | (PageSource & { tasks: number; pages: ImportPage[] });

interface BatchForCuration {
  id: string;
  endpoint: string;
  model: string | null;
  metadata: Record<string, string> | null;
  storage_key: string | null;
}

function choiceError(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, 'CurationChoiceError');
}

/** Label Studio errors as Temporal should treat them: credentials and refusals are final. */
function asActivityError(err: unknown): unknown {
  if (err instanceof LabelStudioAuthError) return ApplicationFailure.nonRetryable(err.message, 'LabelStudioAuthError');
  if (err instanceof LabelStudioError && !err.retryable) return ApplicationFailure.nonRetryable(err.message, 'LabelStudioRefused');
  return err;
}

async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw asActivityError(err);
  }
}

export function createCurationActivities(deps: CurationDeps) {
  const { db, store, config, log, registry } = deps;

  async function loadBatch(batchId: string): Promise<BatchForCuration> {
    const batch = await db
      .selectFrom('batches')
      .leftJoin('files', 'files.id', 'batches.input_file_id')
      .select(['batches.id', 'batches.endpoint', 'batches.model', 'batches.metadata', 'files.storage_key'])
      .where('batches.id', '=', batchId)
      .executeTakeFirst();
    if (batch === undefined) throw ApplicationFailure.nonRetryable(`batch ${batchId} does not exist`, 'BatchNotFound');
    return batch;
  }

  function schemaFor(batch: BatchForCuration): CurationSchema {
    const name = batch.metadata?.curation_schema ?? config.curation.defaultSchema;
    const schema = registry.get(name);
    if (schema === undefined) throw choiceError(`unknown curation schema "${name}" (known: ${registry.names().join(', ')})`);
    if (!(schema.endpoints as readonly string[]).includes(batch.endpoint)) {
      throw choiceError(`curation schema "${name}" does not take ${batch.endpoint} results (it takes ${schema.endpoints.join(', ')})`);
    }
    return schema;
  }

  function client(): LabelStudio {
    if (deps.labelStudio === undefined) throw choiceError('Label Studio is not configured');
    return deps.labelStudio;
  }

  async function setStatus(batchId: string, status: CurationStatus, reason: string | null): Promise<void> {
    await db
      .updateTable('curations')
      .set({ status, reason, ...(status === 'running' ? {} : { finished_at: nowSeconds() }) })
      .where('batch_id', '=', batchId)
      .execute();
    if (status !== 'running') log.info({ batchId, status, reason }, 'curation import ended');
  }

  return {
    /** Decides whether and how a finished batch is imported, and lays out its pages. */
    async planImport(batchId: string): Promise<ImportPlan> {
      const batch = await loadBatch(batchId);
      await db
        .insertInto('curations')
        .values({ batch_id: batchId, status: 'running', reason: null, schema: null, ls_project_id: null, started_at: nowSeconds(), finished_at: null })
        .onConflict((c) => c.column('batch_id').doNothing())
        .execute();
      const end = async (ended: CurationStatus, reason: string): Promise<ImportPlan> => {
        await setStatus(batchId, ended, reason);
        return { ended, reason };
      };
      if (deps.labelStudio === undefined) return end('skipped', 'Label Studio is not configured (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are unset)');
      if (batch.metadata?.curation === 'off') return end('skipped', 'turned off for this batch (metadata curation=off)');
      let schema: CurationSchema;
      try {
        schema = schemaFor(batch);
      } catch (err) {
        return end('failed', (err as Error).message);
      }
      if (batch.model === null || batch.storage_key === null) return end('skipped', 'the batch has no results to review');
      const okLines = new Set(
        (await db.selectFrom('batch_results').select('line').where('batch_id', '=', batchId).where('ok', '=', true).execute()).map((r) => r.line),
      );
      if (okLines.size === 0) return end('skipped', 'the batch has no successful requests to review');

      // One pass over the input: pages of successful lines, each with the byte range to read it from.
      const pages: ImportPage[] = [];
      let current: ImportPage | undefined;
      for await (const line of readLines(store.read(batch.storage_key))) {
        if (!okLines.has(line.number)) continue;
        if (current === undefined || current.tasks >= config.curation.pageSize) {
          current = { page: pages.length, tasks: 0, firstLine: line.number, lastLine: line.number, byteStart: line.start, byteEnd: line.end };
          pages.push(current);
        }
        current.tasks++;
        current.lastLine = line.number;
        current.byteEnd = line.end;
      }
      await db
        .updateTable('curations')
        .set({ schema: schema.name, tasks_total: okLines.size, pages_total: pages.length })
        .where('batch_id', '=', batchId)
        .execute();
      return { schema: schema.name, endpoint: batch.endpoint, model: batch.model, inputKey: batch.storage_key, tasks: okLines.size, pages };
    },

    /** The Label Studio project for the batch: named in metadata, or created once per schema or batch. */
    async ensureProject(batchId: string): Promise<number> {
      return guarded(async () => {
        const batch = await loadBatch(batchId);
        const schema = schemaFor(batch);
        const ls = client();
        let projectId: number;
        const named = batch.metadata?.curation_project;
        if (named !== undefined) {
          projectId = Number(named);
          if (!Number.isInteger(projectId) || projectId <= 0) throw choiceError(`metadata curation_project "${named}" is not a Label Studio project id`);
          try {
            await ls.getProject(projectId);
          } catch (err) {
            if (err instanceof LabelStudioError && err.status === 404) throw choiceError(`Label Studio project ${projectId} (metadata curation_project) does not exist`);
            throw err;
          }
        } else {
          const key = schema.project === 'per_schema' ? `schema:${schema.name}` : `batch:${batchId}`;
          const title = schema.project === 'per_schema' ? schema.title : `${schema.title.slice(0, 19)} ${batchId}`;
          projectId = await db.transaction().execute(async (trx) => {
            // One creator at a time per project, across every import worker.
            await sql`select pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
            const known = await trx.selectFrom('curation_projects').select('ls_project_id').where('key', '=', key).executeTakeFirst();
            if (known?.ls_project_id !== null && known?.ls_project_id !== undefined) return known.ls_project_id;
            // A create whose answer was lost (a crash in between) left a project with this title.
            const existing = await ls.projectsTitled(title);
            let id = existing.map((p) => p.id).sort((a, b) => a - b)[0];
            if (known === undefined) await trx.insertInto('curation_projects').values({ key, title, schema: schema.name, ls_project_id: null, created_at: nowSeconds() }).execute();
            if (id === undefined) {
              await ls.validateConfig(schema.label_config);
              id = (await ls.createProject({ title, description: schema.description, label_config: schema.label_config })).id;
              log.info({ batchId, project: id, title }, 'created a Label Studio project');
              if (config.curation.webhookUrl !== undefined && config.curation.webhookSecret !== undefined) {
                await ls.createWebhook({
                  project: id,
                  url: config.curation.webhookUrl,
                  headers: { 'x-curation-secret': config.curation.webhookSecret },
                  actions: ['ANNOTATION_CREATED', 'ANNOTATION_UPDATED', 'ANNOTATIONS_DELETED'],
                });
              }
            }
            await trx.updateTable('curation_projects').set({ ls_project_id: id }).where('key', '=', key).execute();
            return id;
          });
        }
        await db.updateTable('curations').set({ ls_project_id: projectId }).where('batch_id', '=', batchId).execute();
        return projectId;
      });
    },

    /**
     * Imports one page, exactly once: marked "posting" before it is sent and "done" after. A page found
     * "posting" may or may not have arrived, so Label Studio is asked which of its tasks it has.
     */
    async importPage(input: { batchId: string; projectId: number; plan: PageSource; page: ImportPage }): Promise<number> {
      return guarded(async () => {
        const { batchId, projectId, plan, page } = input;
        const schema = registry.get(plan.schema);
        if (schema === undefined) throw choiceError(`unknown curation schema "${plan.schema}" (known: ${registry.names().join(', ')})`);
        const ls = client();
        const record = await db.selectFrom('curation_pages').select('status').where('batch_id', '=', batchId).where('page', '=', page.page).executeTakeFirst();
        if (record?.status === 'done') return 0;

        const outputs = new Map(
          (
            await db
              .selectFrom('batch_results')
              .select(['line', 'custom_id', 'output'])
              .where('batch_id', '=', batchId)
              .where('ok', '=', true)
              .where('line', '>=', page.firstLine)
              .where('line', '<=', page.lastLine)
              .execute()
          ).map((r) => [r.line, r]),
        );
        const tasks: { key: string; task: unknown }[] = [];
        const lines = readLines(store.read(plan.inputKey, { start: page.byteStart, end: page.byteEnd }), { firstLine: page.firstLine, startOffset: page.byteStart });
        for await (const line of lines) {
          const result = outputs.get(line.number);
          if (result === undefined || isBlank(line.text)) continue;
          const request = (JSON.parse(line.text) as { body?: unknown }).body;
          const response = (JSON.parse(result.output) as { response?: { body?: unknown } }).response?.body;
          const task = buildTask(schema, { batchId, model: plan.model, endpoint: plan.endpoint, line: line.number, customId: result.custom_id, request, response });
          tasks.push({ key: curationKey(batchId, line.number), task });
        }

        let toSend = tasks;
        if (record?.status === 'posting') {
          const present = await ls.findTasks(projectId, 'curation_key', tasks.map((t) => t.key));
          toSend = tasks.filter((t) => !present.has(t.key));
          log.info({ batchId, page: page.page, present: present.size, resending: toSend.length }, 'resuming a page whose import outcome was unknown');
        } else {
          await db
            .insertInto('curation_pages')
            .values({ batch_id: batchId, page: page.page, status: 'posting', tasks: tasks.length, ls_task_ids: null, updated_at: nowSeconds() })
            .onConflict((c) => c.columns(['batch_id', 'page']).doUpdateSet({ status: 'posting', updated_at: nowSeconds() }))
            .execute();
        }
        const imported = toSend.length === 0 ? { count: 0, taskIds: [] } : await ls.importTasks(projectId, toSend.map((t) => t.task));
        curationTasksImportedTotal.inc(imported.count);
        const pageDone = await db.transaction().execute(async (trx) => {
          const done = await trx
            .updateTable('curation_pages')
            .set({ status: 'done', ls_task_ids: imported.taskIds ?? null, updated_at: nowSeconds() })
            .where('batch_id', '=', batchId)
            .where('page', '=', page.page)
            .where('status', '=', 'posting')
            .executeTakeFirst();
          if (done.numUpdatedRows > 0n) {
            await trx
              .updateTable('curations')
              .set({ pages_done: sql`pages_done + 1`, tasks_imported: sql`tasks_imported + ${tasks.length}` })
              .where('batch_id', '=', batchId)
              .execute();
          }
          return done.numUpdatedRows > 0n;
        });
        if (pageDone) curationPagesTotal.inc();
        return imported.count;
      });
    },

    async finishImport(batchId: string): Promise<void> {
      await setStatus(batchId, 'completed', null);
    },

    async failImport(input: { batchId: string; reason: string }): Promise<void> {
      await setStatus(input.batchId, 'failed', input.reason);
    },
  };
}

export type CurationActivities = ReturnType<typeof createCurationActivities>;
