// Retention: what the service keeps, and for how long. Files go at their expiry (api/services/files.ts, which
// also takes what Postgres holds of an output or error file's content with it); ended batches, with
// their results, dead letters and curation records, after BATCH_RETENTION_SECONDS; dead letters after
// DEAD_LETTER_RETENTION_SECONDS; unfinished uploads after FILE_STORE_PARTIAL_MAX_AGE_SECONDS; GPU
// workers that stopped announcing themselves (killed, or their host lost) after a while; idempotency
// keys after IDEMPOTENCY_TTL_SECONDS.
import { sql } from 'kysely';

import { nowSeconds } from '../../lib/ids.js';
import { segmentFolder } from '../../schema/result-groups.js';
import { LIVE_BATCH_STATES } from '../../schema/tables.js';
import type { ApiDeps } from '../deps.js';
import { removeFile } from './files.js';

/** Ended batches older than the retention, with their output and error files; returns how many went. */
export async function sweepOldBatches(deps: Pick<ApiDeps, 'db' | 'store' | 'config'>): Promise<number> {
  const { db, config } = deps;
  const cutoff = nowSeconds() - config.retention.batchSeconds;
  const old = await db
    .selectFrom('batches')
    .select(['id', 'output_file_id', 'error_file_id'])
    .where('status', 'not in', LIVE_BATCH_STATES)
    .where('created_at', '<', cutoff)
    .where(sql<number>`coalesce(completed_at, failed_at, expired_at, cancelled_at, created_at)`, '<', cutoff)
    .limit(500)
    .execute();
  for (const batch of old) {
    const fileIds = [batch.output_file_id, batch.error_file_id].filter((id): id is string => id !== null);
    if (fileIds.length > 0) {
      await db
        .updateTable('files')
        .set({ deleted_at: nowSeconds() })
        .where('id', 'in', fileIds)
        .where('deleted_at', 'is', null)
        .execute();
      const files = await db
        .selectFrom('files')
        .select(['id', 'storage_key', 'purpose'])
        .where('id', 'in', fileIds)
        .execute();
      for (const file of files) await removeFile(deps, file);
    }
    // Results, dead letters and curation records go with it (foreign keys cascade), and the reviews
    // Label Studio reported for its tasks (kept by Label Studio's ids, not tied to the batch row).
    await db.deleteFrom('curation_reviews').where('batch_id', '=', batch.id).execute();
    // Result segments a finalize could not remove (its store was down, or it was killed after the end).
    await deps.store.deleteFolder(segmentFolder(batch.id));
    await db.deleteFrom('batches').where('id', '=', batch.id).execute();
  }
  return old.length;
}

/** Rows whose time column is older than `seconds` ago, deleted; returns how many. */
async function deleteOlderThan(
  deps: Pick<ApiDeps, 'db'>,
  table: 'dead_letters' | 'workers' | 'idempotency_keys',
  column: 'created_at' | 'last_seen_at',
  seconds: number,
): Promise<number> {
  const result = await deps.db
    .deleteFrom(table)
    .where(column, '<', nowSeconds() - seconds)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Dead letters older than their retention (they also go with their batch's error file). */
export function sweepOldDeadLetters(deps: Pick<ApiDeps, 'db' | 'config'>): Promise<number> {
  return deleteOlderThan(deps, 'dead_letters', 'created_at', deps.config.retention.deadLetterSeconds);
}

/** GPU workers that have not announced themselves for long (a killed process, a lost host). */
export function sweepGoneWorkers(deps: Pick<ApiDeps, 'db' | 'config'>): Promise<number> {
  return deleteOlderThan(deps, 'workers', 'last_seen_at', deps.config.retention.goneWorkerSeconds);
}

/** Idempotency keys older than their TTL: a repeat of their request is a new request again. */
export function sweepExpiredKeys(deps: Pick<ApiDeps, 'db' | 'config'>): Promise<number> {
  return deleteOlderThan(deps, 'idempotency_keys', 'created_at', deps.config.api.idempotencyTtlSeconds);
}

/**
 * Writes that never finished (a process killed mid-upload): partial files, incomplete multipart
 * uploads. Not the files of running batches, written in parts for as long as the batch runs.
 */
export async function sweepPartialWrites(deps: Pick<ApiDeps, 'db' | 'store' | 'config'>): Promise<number> {
  const drafts = await deps.db
    .selectFrom('output_drafts')
    .select('upload_id')
    .where('completed_bytes', 'is', null)
    .execute();
  return deps.store.sweepPartial(
    deps.config.retention.partialWriteSeconds * 1000,
    new Set(drafts.map((d) => d.upload_id)),
  );
}
