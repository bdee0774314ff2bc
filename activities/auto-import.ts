// The import worker's activities: plan a batch's import into Label Studio, make sure its project
// exists (exactly once), import page by page (exactly once), and record the outcome. A Label Studio
// that is down is the caller's to retry; wrong credentials or an unusable schema end the import.
import { ApplicationFailure } from '@temporalio/common';
import { sql } from 'kysely';

import type { Config } from '../lib/config.js';
import type { CurationRegistry, CurationSchema } from '../lib/curation-schema.js';
import { buildTask, curationKey } from '../lib/curation-tasks.js';
import type { FileStore } from '../lib/file-store.js';
import { nowSeconds } from '../lib/ids.js';
import { isBlank, readLines } from '../lib/jsonl.js';
import { LabelStudioAuthError, LabelStudioError, type LabelStudio } from '../lib/label-studio.js';
import type { Logger } from '../lib/logger.js';
import { curationPagesTotal, curationTasksImportedTotal } from '../lib/metrics.js';
import { safeText } from '../lib/sanitize.js';
import { jsonb, type Db } from '../schema/db.js';
import { persistedLines, succeededLines } from '../schema/result-groups.js';
import type { CurationStatus } from '../schema/tables.js';
import { FailureType } from '../workflows/failure-types.js';
import { addLine, type LineRange } from './line-ranges.js';
import { loadBatch } from './load-batch.js';

export interface AutoImportDeps {
  db: Db;
  store: FileStore;
  config: Config;
  log: Logger;
  registry: CurationRegistry;
  /** Undefined when LABEL_STUDIO_URL is not set: imports are skipped. */
  labelStudio: LabelStudio | undefined;
}

export interface ImportPage extends LineRange {
  page: number;
  /** Successful requests on the page. */
  tasks: number;
  /**
   * The bytes of the batch's output file holding the page's answers (the file is in input order, so
   * they are consecutive); absent in pages planned before answers left Postgres.
   */
  outputStart?: number;
  outputEnd?: number;
}

/** What every page of an import shares; each page's activity carries this, not the whole plan. */
export interface PageSource {
  schema: string;
  endpoint: string;
  model: string;
  inputKey: string;
}

export type ImportPlan =
  { ended: CurationStatus; reason: string } | (PageSource & { tasks: number; pages: ImportPage[] });

interface BatchForCuration {
  id: string;
  project_id: string;
  endpoint: string;
  model: string | null;
  metadata: Record<string, string> | null;
  storage_key: string | null;
}

function choiceError(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, FailureType.CurationChoiceError);
}

/** Label Studio errors as Temporal should treat them: credentials and refusals are final. */
function asActivityError(err: unknown): unknown {
  if (err instanceof LabelStudioAuthError)
    return ApplicationFailure.nonRetryable(err.message, FailureType.LabelStudioAuthError);
  if (err instanceof LabelStudioError && !err.retryable)
    return ApplicationFailure.nonRetryable(err.message, FailureType.LabelStudioRefused);
  return err;
}

async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw asActivityError(err);
  }
}

export function createCurationActivities(deps: AutoImportDeps) {
  const { db, store, config, log, registry } = deps;

  function schemaFor(batch: BatchForCuration): CurationSchema {
    const name = batch.metadata?.curation_schema ?? config.curation.defaultSchema;
    const schema = registry.get(name);
    if (schema === undefined)
      throw choiceError(`unknown curation schema "${name}" (known: ${registry.names().join(', ')})`);
    if (!(schema.endpoints as readonly string[]).includes(batch.endpoint)) {
      throw choiceError(
        `curation schema "${name}" does not take ${batch.endpoint} results (it takes ${schema.endpoints.join(', ')})`,
      );
    }
    return schema;
  }

  function client(): LabelStudio {
    if (deps.labelStudio === undefined) throw choiceError('Label Studio is not configured');
    return deps.labelStudio;
  }

  async function setStatus(batchId: string, status: CurationStatus, reason: string | null): Promise<void> {
    // Reasons quote Label Studio's answers, which may quote what a client sent.
    const safeReason = reason === null ? null : safeText(reason, 1000);
    await db
      .updateTable('curations')
      .set({ status, reason: safeReason, ...(status === 'running' ? {} : { finished_at: nowSeconds() }) })
      .where('batch_id', '=', batchId)
      .execute();
    if (status !== 'running') log.info({ batchId, status, reason: safeReason }, 'curation import ended');
  }

  /** A project named in metadata: only one this API project's imports made, or an operator granted it. */
  async function grantedProject(ls: LabelStudio, ownerProjectId: string, named: string): Promise<number> {
    const projectId = Number(named);
    if (!Number.isInteger(projectId) || projectId <= 0)
      throw choiceError(`metadata curation_project "${safeText(named, 40)}" is not a Label Studio project id`);
    const [made, granted] = await Promise.all([
      db
        .selectFrom('curation_projects')
        .select('key')
        .where('ls_project_id', '=', projectId)
        .where('owner_project_id', '=', ownerProjectId)
        .executeTakeFirst(),
      db
        .selectFrom('curation_grants')
        .select('ls_project_id')
        .where('ls_project_id', '=', projectId)
        .where('project_id', '=', ownerProjectId)
        .executeTakeFirst(),
    ]);
    // The same answer whether or not the project exists: an API key must not learn which ids do.
    if (made === undefined && granted === undefined) {
      throw choiceError(
        `Label Studio project ${projectId} (metadata curation_project) is not one this project may import into; an operator can allow it with \`gpu-batch curation grant\``,
      );
    }
    try {
      await ls.getProject(projectId);
    } catch (err) {
      if (err instanceof LabelStudioError && err.status === 404)
        throw choiceError(`Label Studio project ${projectId} (metadata curation_project) does not exist`);
      throw err;
    }
    return projectId;
  }

  /**
   * The project made for `key`, created once across every import worker. Creating is claimed with a
   * lease in the database (no lock or transaction is held while Label Studio answers); a claim older
   * than a step's timeout belongs to a worker that died and is taken over. A create whose answer was
   * lost is found again by its title. The annotation webhook is set up until it is.
   */
  async function ownProject(
    ls: LabelStudio,
    schema: CurationSchema,
    target: { key: string; suffix: string },
    ownerProjectId: string,
  ): Promise<number> {
    const { key } = target;
    const title = `${schema.title.slice(0, 19)} ${target.suffix}`.slice(0, 50);
    await db
      .insertInto('curation_projects')
      .values({
        key,
        title,
        schema: schema.name,
        ls_project_id: null,
        created_at: nowSeconds(),
        owner_project_id: ownerProjectId,
        claimed_at: null,
      })
      .onConflict((c) => c.column('key').doNothing())
      .execute();
    let row = await db.selectFrom('curation_projects').selectAll().where('key', '=', key).executeTakeFirstOrThrow();
    if (row.ls_project_id === null) {
      const now = nowSeconds();
      const claimed = await db
        .updateTable('curation_projects')
        .set({ claimed_at: now })
        .where('key', '=', key)
        .where('ls_project_id', 'is', null)
        .where((eb) =>
          eb.or([
            eb('claimed_at', 'is', null),
            eb('claimed_at', '<', now - Math.ceil(config.curation.stepTimeoutMs / 1000)),
          ]),
        )
        .executeTakeFirst();
      if (claimed.numUpdatedRows === 0n)
        throw ApplicationFailure.retryable(
          `the Label Studio project for ${key} is being created by another import`,
          FailureType.CurationProjectBusy,
        );
      const existing = await ls.projectsTitled(row.title);
      let id = existing.map((p) => p.id).sort((a, b) => a - b)[0];
      if (id === undefined) {
        await ls.validateConfig(schema.label_config);
        id = (
          await ls.createProject({
            title: row.title,
            description: schema.description,
            label_config: schema.label_config,
          })
        ).id;
        log.info({ key, project: id, title: row.title }, 'created a Label Studio project');
      }
      await db
        .updateTable('curation_projects')
        .set({ ls_project_id: id, claimed_at: null })
        .where('key', '=', key)
        .execute();
      row = { ...row, ls_project_id: id };
    }
    const projectId = row.ls_project_id ?? 0;
    const { webhookUrl, webhookSecret } = config.curation;
    if (!row.webhook_registered && webhookUrl !== undefined && webhookSecret !== undefined) {
      // Looked for first: a registration whose answer was lost must not make a second webhook.
      if (!(await ls.webhookUrls(projectId)).includes(webhookUrl)) {
        await ls.createWebhook({
          project: projectId,
          url: webhookUrl,
          headers: { 'x-curation-secret': webhookSecret },
          actions: ['ANNOTATION_CREATED', 'ANNOTATION_UPDATED', 'ANNOTATIONS_DELETED'],
        });
      }
      await db.updateTable('curation_projects').set({ webhook_registered: true }).where('key', '=', key).execute();
    }
    return projectId;
  }

  /** Where the batch's output file is, unless it has been deleted. */
  async function outputKeyOf(batchId: string): Promise<string | undefined> {
    const row = await db
      .selectFrom('batches')
      .innerJoin('files', 'files.id', 'batches.output_file_id')
      .select('files.storage_key')
      .where('batches.id', '=', batchId)
      .where('files.deleted_at', 'is', null)
      .executeTakeFirst();
    return row?.storage_key;
  }

  /** The output lines of a page's successful requests, by input line, read from the output file. */
  async function pageAnswers(batchId: string, page: ImportPage): Promise<Map<number, string>> {
    const outputKey = await outputKeyOf(batchId);
    if (outputKey === undefined) throw choiceError(`the output file of ${batchId} has been deleted`);
    const { done, failed } = await persistedLines(db, batchId, page);
    const lines = [...done].filter((l) => !failed.has(l)).sort((a, b) => a - b);
    // A page planned before its offsets were recorded starts at the file's beginning, past the
    // successful lines before it.
    const skip =
      page.outputStart === undefined ? (await succeededLines(db, batchId)).filter((l) => l < page.firstLine).length : 0;
    const answers = new Map<number, string>();
    let index = -skip;
    for await (const answer of readLines(
      store.read(outputKey, { start: page.outputStart ?? 0, end: page.outputEnd }),
    )) {
      if (index >= 0) {
        const line = lines[index];
        if (line === undefined) break;
        answers.set(line, answer.text);
      }
      index++;
    }
    return answers;
  }

  return {
    /** Decides whether and how a finished batch is imported, and lays out its pages. */
    async planImport(batchId: string): Promise<ImportPlan> {
      const batch = await loadBatch(db, batchId);
      await db
        .insertInto('curations')
        .values({
          batch_id: batchId,
          status: 'running',
          reason: null,
          schema: null,
          ls_project_id: null,
          started_at: nowSeconds(),
          finished_at: null,
        })
        .onConflict((c) => c.column('batch_id').doNothing())
        .execute();
      const end = async (ended: CurationStatus, reason: string): Promise<ImportPlan> => {
        await setStatus(batchId, ended, reason);
        return { ended, reason };
      };
      if (deps.labelStudio === undefined)
        return end('skipped', 'Label Studio is not configured (LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are unset)');
      if (batch.metadata?.curation === 'off')
        return end('skipped', 'turned off for this batch (metadata curation=off)');
      let schema: CurationSchema;
      try {
        schema = schemaFor(batch);
      } catch (err) {
        return end('failed', (err as Error).message);
      }
      if (batch.model === null || batch.storage_key === null)
        return end('skipped', 'the batch has no results to review');
      const okLines = new Set(await succeededLines(db, batchId));
      if (okLines.size === 0) return end('skipped', 'the batch has no successful requests to review');
      const outputKey = await outputKeyOf(batchId);
      if (outputKey === undefined) return end('skipped', 'the output file of the batch has been deleted');

      // One pass over the input and the output file side by side (the output holds the successful
      // lines in input order): pages of successful lines, each with the byte ranges to read it from.
      const pages: ImportPage[] = [];
      const answers = readLines(store.read(outputKey))[Symbol.asyncIterator]();
      try {
        for await (const line of readLines(store.read(batch.storage_key))) {
          if (!okLines.has(line.number)) continue;
          const answer = await answers.next();
          if (answer.done === true) throw new Error(`the output file of ${batchId} has fewer lines than its results`);
          const page = addLine(
            pages,
            line,
            (last) => last.tasks >= config.curation.pageSize,
            (index) => ({ page: index, tasks: 0, outputStart: answer.value.start }),
          );
          page.tasks++;
          page.outputEnd = answer.value.end;
        }
      } finally {
        await answers.return(undefined);
      }
      await db
        .updateTable('curations')
        .set({ schema: schema.name, tasks_total: okLines.size, pages_total: pages.length })
        .where('batch_id', '=', batchId)
        .execute();
      return {
        schema: schema.name,
        endpoint: batch.endpoint,
        model: batch.model,
        inputKey: batch.storage_key,
        tasks: okLines.size,
        pages,
      };
    },

    /**
     * The Label Studio project for the batch: one made for its API project (per schema) or for the
     * batch alone, or one named in metadata that this API project may import into.
     */
    async ensureProject(batchId: string): Promise<number> {
      return guarded(async () => {
        const batch = await loadBatch(db, batchId);
        const schema = schemaFor(batch);
        const ls = client();
        const named = batch.metadata?.curation_project;
        const projectId =
          named === undefined
            ? await ownProject(
                ls,
                schema,
                schema.project === 'per_schema'
                  ? { key: `project:${batch.project_id}:schema:${schema.name}`, suffix: batch.project_id }
                  : { key: `batch:${batchId}`, suffix: batchId },
                batch.project_id,
              )
            : await grantedProject(ls, batch.project_id, named);
        await db.updateTable('curations').set({ ls_project_id: projectId }).where('batch_id', '=', batchId).execute();
        return projectId;
      });
    },

    /**
     * Imports one page, exactly once: marked "posting" before it is sent and "done" after. A page found
     * "posting" may or may not have arrived, so Label Studio is asked which of its tasks it has.
     */
    async importPage(input: {
      batchId: string;
      projectId: number;
      plan: PageSource;
      page: ImportPage;
    }): Promise<number> {
      return guarded(async () => {
        const { batchId, projectId, plan, page } = input;
        const schema = registry.get(plan.schema);
        if (schema === undefined)
          throw choiceError(`unknown curation schema "${plan.schema}" (known: ${registry.names().join(', ')})`);
        const ls = client();
        const record = await db
          .selectFrom('curation_pages')
          .select('status')
          .where('batch_id', '=', batchId)
          .where('page', '=', page.page)
          .executeTakeFirst();
        if (record?.status === 'done') return 0;

        const outputs = await pageAnswers(batchId, page);
        const tasks: { key: string; task: unknown }[] = [];
        const lines = readLines(store.read(plan.inputKey, { start: page.byteStart, end: page.byteEnd }), {
          firstLine: page.firstLine,
          startOffset: page.byteStart,
        });
        for await (const line of lines) {
          const result = outputs.get(line.number);
          if (result === undefined || isBlank(line)) continue;
          const request = (JSON.parse(line.text) as { body?: unknown }).body;
          const answer = JSON.parse(result) as { custom_id?: string; response?: { body?: unknown } };
          const task = buildTask(schema, {
            batchId,
            model: plan.model,
            endpoint: plan.endpoint,
            line: line.number,
            customId: answer.custom_id ?? '',
            request,
            response: answer.response?.body,
          });
          tasks.push({ key: curationKey(batchId, line.number), task });
        }

        let toSend = tasks;
        let presentIds: number[] = [];
        if (record?.status === 'posting') {
          const present = await ls.findTasks(
            projectId,
            'curation_key',
            tasks.map((t) => t.key),
          );
          presentIds = [...present.values()];
          toSend = tasks.filter((t) => !present.has(t.key));
          log.info(
            { batchId, page: page.page, present: present.size, resending: toSend.length },
            'resuming a page whose import outcome was unknown',
          );
        } else {
          await db
            .insertInto('curation_pages')
            .values({
              batch_id: batchId,
              page: page.page,
              status: 'posting',
              tasks: tasks.length,
              ls_task_ids: null,
              updated_at: nowSeconds(),
            })
            .onConflict((c) =>
              c.columns(['batch_id', 'page']).doUpdateSet({ status: 'posting', updated_at: nowSeconds() }),
            )
            .execute();
        }
        const imported =
          toSend.length === 0
            ? { count: 0, taskIds: [] }
            : await ls.importTasks(
                projectId,
                toSend.map((t) => t.task),
              );
        curationTasksImportedTotal.inc(imported.count);
        const pageDone = await db.transaction().execute(async (trx) => {
          const done = await trx
            .updateTable('curation_pages')
            // Every task of the page, found or sent: the export asks Label Studio for exactly these.
            .set({
              status: 'done',
              ls_task_ids: imported.taskIds === undefined ? null : jsonb([...presentIds, ...imported.taskIds]),
              updated_at: nowSeconds(),
            })
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
