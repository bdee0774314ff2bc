// Retention: what the service keeps, and for how long. Files go at their expiry (api/services/files.ts, which
// also takes what Postgres holds of an output or error file's content with it); ended batches, with
// their results, dead letters and curation records, after BATCH_RETENTION_SECONDS; dead letters after
// DEAD_LETTER_RETENTION_SECONDS; unfinished uploads after FILE_STORE_PARTIAL_MAX_AGE_SECONDS; GPU
// workers that stopped announcing themselves (killed, or their host lost) after a while.
import { sql } from 'kysely';

import type { Config } from '../../lib/config.js';
import type { FileStore } from '../../lib/file-store.js';
import { nowSeconds } from '../../lib/ids.js';
import type { Db } from '../../schema/db.js';
import { LIVE_BATCH_STATES } from '../../schema/tables.js';
import { removeFile } from './files.js';

export interface RetentionDeps {
  db: Db;
  store: FileStore;
  config: Config;
}

/** Ended batches older than the retention, with their output and error files; returns how many went. */
export async function sweepOldBatches(deps: RetentionDeps): Promise<number> {
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
    await db.deleteFrom('batches').where('id', '=', batch.id).execute();
  }
  return old.length;
}

/** Dead letters older than their retention (they also go with their batch's error file). */
export async function sweepOldDeadLetters(deps: RetentionDeps): Promise<number> {
  const result = await deps.db
    .deleteFrom('dead_letters')
    .where('created_at', '<', nowSeconds() - deps.config.retention.deadLetterSeconds)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** GPU workers that have not announced themselves for long (a killed process, a lost host). */
export async function sweepGoneWorkers(deps: RetentionDeps): Promise<number> {
  const result = await deps.db
    .deleteFrom('workers')
    .where('last_seen_at', '<', nowSeconds() - deps.config.retention.goneWorkerSeconds)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Writes that never finished (a process killed mid-upload): partial files, incomplete multipart uploads. */
export function sweepPartialWrites(deps: RetentionDeps): Promise<number> {
  return deps.store.sweepPartial(deps.config.retention.partialWriteSeconds * 1000);
}
