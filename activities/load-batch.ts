// A batch's row, with where its input file is stored, as the orchestrator's and the import worker's
// activities read it.
import { ApplicationFailure } from '@temporalio/common';

import type { Db } from '../schema/db.js';
import { FailureType } from '../workflows/failure-types.js';

export async function loadBatch(db: Db, batchId: string) {
  const batch = await db
    .selectFrom('batches')
    .leftJoin('files', 'files.id', 'batches.input_file_id')
    .select([
      'batches.id',
      'batches.project_id',
      'batches.endpoint',
      'batches.model',
      'batches.metadata',
      'batches.status',
      'batches.expires_at',
      'batches.output_expires_after',
      'batches.request_completed',
      'batches.request_failed',
      'batches.output_file_id',
      'batches.error_file_id',
      'files.storage_key',
      'files.purpose',
    ])
    .where('batches.id', '=', batchId)
    .executeTakeFirst();
  // Retrying cannot make a missing batch appear: fail the workflow instead of looping forever.
  if (batch === undefined)
    throw ApplicationFailure.nonRetryable(`batch ${batchId} does not exist`, FailureType.BatchNotFound);
  return batch;
}
