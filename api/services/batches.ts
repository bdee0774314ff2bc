// Batches: create (record it, start its BatchWorkflow, answer `validating` at once), read, list,
// cancel. The workflow does the work; the database is what the API reads back.
import { WorkflowNotFoundError } from '@temporalio/client';

import { writeChunk } from '../../lib/file-store.js';
import { isWellFormedId, newId, nowSeconds } from '../../lib/ids.js';
import { isBlank, readLines } from '../../lib/jsonl.js';
import { withTemporalDeadline } from '../../lib/temporal.js';
import { jsonb } from '../../schema/db.js';
import { resultCounts, succeededLines } from '../../schema/result-groups.js';
import { isLive, type BatchRow, type BatchStatus } from '../../schema/tables.js';
import {
  batchEndpointSchema,
  parseDuration,
  type BatchCreate,
  type BatchObject,
  type BatchRetry,
} from '../../wire/openai.js';
import { startBatchWorkflow } from '../../workflows/batch-lifecycle.js';
import { cancelSignal } from '../../workflows/messages.js';
import type { ApiDeps } from '../deps.js';
import { BadRequestError, ConflictError, notFound, ServiceUnavailableError } from '../errors.js';
import { createDerivedFile, liveFiles } from './files.js';
import type { Project } from './keys.js';
import { cursorSeq, toPage, type Page } from './pages.js';

/** What a batch has not done yet when it is recorded: no model, no files, nothing past its creation. */
export const NEW_BATCH = {
  model: null,
  status: 'validating',
  output_file_id: null,
  error_file_id: null,
  errors: null,
  in_progress_at: null,
  finalizing_at: null,
  completed_at: null,
  failed_at: null,
  expired_at: null,
  cancelling_at: null,
  cancelled_at: null,
} as const;

const CANCELLABLE: BatchStatus[] = ['validating', 'in_progress', 'finalizing'];

export function toBatchObject(row: BatchRow): BatchObject {
  return {
    id: row.id,
    object: 'batch',
    endpoint: row.endpoint,
    model: row.model,
    errors: row.errors === null || row.errors.length === 0 ? null : { object: 'list', data: row.errors },
    input_file_id: row.input_file_id,
    completion_window: row.completion_window,
    status: row.status,
    output_file_id: row.output_file_id,
    error_file_id: row.error_file_id,
    created_at: row.created_at,
    in_progress_at: row.in_progress_at,
    expires_at: row.expires_at,
    finalizing_at: row.finalizing_at,
    completed_at: row.completed_at,
    failed_at: row.failed_at,
    expired_at: row.expired_at,
    cancelling_at: row.cancelling_at,
    cancelled_at: row.cancelled_at,
    // OpenAI reports zero counts until a batch is past validation (a batch that failed after it ran has its counts).
    request_counts:
      row.status === 'validating' || (row.status === 'failed' && row.in_progress_at === null)
        ? { total: 0, completed: 0, failed: 0 }
        : { total: row.request_total, completed: row.request_completed, failed: row.request_failed },
    usage: {
      input_tokens: row.input_tokens,
      input_tokens_details: { cached_tokens: row.cached_tokens },
      output_tokens: row.output_tokens,
      output_tokens_details: { reasoning_tokens: row.reasoning_tokens },
      total_tokens: row.input_tokens + row.output_tokens,
    },
    metadata: row.metadata,
    priority: row.priority,
    retry_of: row.retry_of,
  };
}

/**
 * Running batches with their counts and tokens so far, summed from their results (a batch's own row
 * gets them when it ends: writers of results never queue on it).
 */
async function withRunningCounts(db: ApiDeps['db'], rows: BatchRow[]): Promise<BatchRow[]> {
  const running = rows.filter((r) => isLive(r.status)).map((r) => r.id);
  const counts = await resultCounts(db, running);
  return rows.map((row) => {
    const c = counts.get(row.id);
    if (c === undefined || !isLive(row.status)) return row;
    return { ...row, ...c, request_completed: c.completed, request_failed: c.failed };
  });
}

export async function getBatch(deps: Pick<ApiDeps, 'db'>, project: Project, id: string): Promise<BatchRow> {
  if (!isWellFormedId(id)) throw notFound('Batch', id.slice(0, 200));
  const row = await deps.db
    .selectFrom('batches')
    .selectAll()
    .where('id', '=', id)
    .where('project_id', '=', project.id)
    .executeTakeFirst();
  if (row === undefined) throw notFound('Batch', id);
  return (await withRunningCounts(deps.db, [row]))[0] ?? row;
}

export async function createBatch(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config' | 'temporal' | 'log'>,
  project: Project,
  body: BatchCreate,
  options: { retryOf?: string } = {},
): Promise<BatchRow> {
  const { db, temporal, config } = deps;
  if (!isWellFormedId(body.input_file_id)) {
    throw new BadRequestError(`Invalid 'input_file_id': no file ${body.input_file_id.slice(0, 200)} was found.`, {
      code: 'invalid_request',
      param: 'input_file_id',
    });
  }
  const now = nowSeconds();
  const window = parseDuration(body.completion_window) ?? 86400;
  // The file row is locked (shared) until the batch is recorded, so a delete cannot slip in between.
  const row = await db.transaction().execute(async (trx) => {
    const file = await liveFiles(trx, project)
      .select(['id', 'purpose', 'bytes'])
      .where('id', '=', body.input_file_id)
      .forShare()
      .executeTakeFirst();
    if (file === undefined) {
      throw new BadRequestError(`Invalid 'input_file_id': no file ${body.input_file_id} was found.`, {
        code: 'invalid_request',
        param: 'input_file_id',
      });
    }
    if (file.purpose !== 'batch') {
      throw new BadRequestError(`Invalid 'input_file_id': ${file.id} has purpose '${file.purpose}', not 'batch'.`, {
        code: 'invalid_request',
        param: 'input_file_id',
      });
    }
    const batch = await trx
      .insertInto('batches')
      .values({
        ...NEW_BATCH,
        id: newId('batch_'),
        project_id: project.id,
        endpoint: body.endpoint,
        input_file_id: body.input_file_id,
        completion_window: body.completion_window,
        metadata: body.metadata === null || body.metadata === undefined ? null : jsonb(body.metadata),
        output_expires_after: body.output_expires_after?.seconds ?? null,
        priority: body.priority ?? null,
        retry_of: options.retryOf ?? null,
        created_at: now,
        expires_at: now + window,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { ...batch, inputBytes: file.bytes };
  });
  try {
    await startBatchWorkflow(temporal, config, {
      id: row.id,
      expiresAt: row.expires_at,
      endpoint: row.endpoint,
      projectName: project.name,
      inputFileId: row.input_file_id,
      inputBytes: row.inputBytes,
      completionWindow: row.completion_window,
      priority: row.priority,
      windowSeconds: window,
    });
  } catch (err) {
    // A start can fail after the server took it (a timeout on the reply): look before giving up.
    const started = await withTemporalDeadline(temporal, config, () => temporal.workflow.getHandle(row.id).describe())
      .then(() => true)
      .catch(() => false);
    if (!started) {
      // Recorded as failed rather than deleted: should the workflow exist after all, it sees a
      // batch that is no longer live and stops at once.
      const errors = [
        {
          code: 'service_unavailable',
          message: 'The orchestrator could not be reached to start this batch.',
          param: null,
          line: null,
        },
      ];
      // If even this write fails, the reconciler ends the batch: it has no workflow.
      await db
        .updateTable('batches')
        .set({ status: 'failed', failed_at: nowSeconds(), errors: jsonb(errors) })
        .where('id', '=', row.id)
        .execute()
        .catch(() => undefined);
      deps.log.error({ err, batchId: row.id }, 'could not start the batch workflow');
      throw new ServiceUnavailableError(
        'The batch could not be started because the orchestrator is unreachable; try again.',
        { code: 'service_unavailable' },
      );
    }
  }
  deps.log.info({ batchId: row.id, project: project.name, endpoint: body.endpoint }, 'batch created');
  return row;
}

export async function listBatches(
  deps: Pick<ApiDeps, 'db'>,
  project: Project,
  q: { after?: string | undefined; limit: number },
): Promise<Page<BatchRow>> {
  let query = deps.db.selectFrom('batches').selectAll().where('project_id', '=', project.id);
  if (q.after !== undefined) query = query.where('seq', '<', await cursorSeq(deps, project, 'batches', q.after));
  const rows = await query
    .orderBy('seq', 'desc')
    .limit(q.limit + 1)
    .execute();
  return toPage(await withRunningCounts(deps.db, rows), q.limit);
}

export async function cancelBatch(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config' | 'temporal' | 'log'>,
  project: Project,
  id: string,
): Promise<BatchRow> {
  const { db } = deps;
  if (!isWellFormedId(id)) throw notFound('Batch', id.slice(0, 200));
  const updated = await db
    .updateTable('batches')
    .set({ status: 'cancelling', cancelling_at: nowSeconds() })
    .where('id', '=', id)
    .where('project_id', '=', project.id)
    .where('status', 'in', CANCELLABLE)
    .returningAll()
    .executeTakeFirst();
  const row =
    updated === undefined
      ? await getBatch(deps, project, id)
      : ((await withRunningCounts(db, [updated]))[0] ?? updated);
  if (row.status !== 'cancelling' && row.status !== 'cancelled') {
    throw new ConflictError(`Cannot cancel a batch with status '${row.status}'.`, {
      code: 'batch_not_cancellable',
      param: 'batch_id',
    });
  }
  if (row.status === 'cancelling') {
    // Signalled again on a repeated cancel, so a cancel whose signal was lost is completed by a retry.
    try {
      await withTemporalDeadline(deps.temporal, deps.config, () =>
        deps.temporal.workflow.getHandle(id).signal(cancelSignal),
      );
    } catch (err) {
      // A workflow that has just finished needs no signal: finalize turns `cancelling` into `cancelled`.
      if (!(err instanceof WorkflowNotFoundError)) {
        deps.log.error({ err, batchId: id }, 'could not signal cancel');
        throw new ServiceUnavailableError('The cancel was recorded but the orchestrator is unreachable; try again.', {
          code: 'service_unavailable',
        });
      }
    }
  }
  deps.log.info({ batchId: id }, 'batch cancel requested');
  return row;
}

/**
 * POST /v1/batches/{id}/retry (extension): a new batch of only the lines that failed, expired or
 * were cancelled in a finished batch, taken from its input file in their original order.
 */
export async function retryBatch(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config' | 'temporal' | 'log'>,
  project: Project,
  id: string,
  body: BatchRetry,
): Promise<BatchRow> {
  const { db } = deps;
  const batch = await getBatch(deps, project, id);
  // A batch that failed after it ran (stopped by the reconciler, say) has lines to retry; one that failed validation has none.
  const ran = batch.status === 'failed' && batch.in_progress_at !== null;
  if (batch.status !== 'completed' && batch.status !== 'expired' && batch.status !== 'cancelled' && !ran) {
    const why = batch.status === 'failed' ? 'it failed validation, so none of its requests ran' : 'it has not finished';
    throw new ConflictError(`Batch ${id} cannot be retried: ${why} (status '${batch.status}').`, {
      code: 'batch_not_retryable',
      param: 'batch_id',
    });
  }
  // Every request without a successful result is retried: those that failed, expired or were
  // cancelled, and those a failed batch never got to.
  const succeeded = new Set(await succeededLines(db, id));
  const toRetry = batch.request_total - succeeded.size;
  if (toRetry <= 0)
    throw new ConflictError(`Batch ${id} has no failed, expired or cancelled requests to retry.`, {
      code: 'nothing_to_retry',
      param: 'batch_id',
    });
  const input = await db
    .selectFrom('files')
    .select(['filename', 'storage_key'])
    .where('id', '=', batch.input_file_id)
    .where('project_id', '=', project.id)
    .executeTakeFirst();
  if (input === undefined) {
    throw new ConflictError(
      `The input file ${batch.input_file_id} of batch ${id} is gone (deleted or expired), so its lines cannot be retried.`,
      { code: 'input_file_unavailable', param: 'batch_id' },
    );
  }
  const file = await createDerivedFile(
    deps,
    project,
    `${input.filename.replace(/\.jsonl$/i, '')}.retry-${id}.jsonl`,
    async (writer) => {
      for await (const line of readLines(deps.store.read(input.storage_key))) {
        if (!isBlank(line) && !succeeded.has(line.number)) await writeChunk(writer.stream, `${line.text}\n`);
      }
    },
  );
  const created = await createBatch(
    deps,
    project,
    {
      input_file_id: file.id,
      endpoint: batchEndpointSchema.parse(batch.endpoint),
      completion_window: body.completion_window ?? batch.completion_window,
      metadata: body.metadata ?? batch.metadata,
      priority: body.priority ?? batch.priority,
    },
    { retryOf: id },
  );
  deps.log.info({ batchId: created.id, retryOf: id, requests: toRetry }, 'batch retried');
  return created;
}
