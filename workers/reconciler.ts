// The reconciler: a periodic sweep in each orchestrator (one at a time across them, by an advisory
// lock) that finds batches the database says are live but whose workflow is gone — terminated by an
// operator, timed out, failed after its bounded retries, or never started — and ends them: a batch
// that got past validation is finalized from what is stored (what never ran becomes `batch_aborted`
// error lines), one that did not is failed with the reason. Then it starts what the workflow would
// have: webhook deliveries and the curation import.
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { sql } from 'kysely';
import type { ControlActivities } from '../activities/batch-control.js';
import type { WebhookActivities } from '../activities/webhooks.js';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db.js';
import { nowSeconds } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { batchesReconciledTotal } from '../lib/metrics.js';
import { withTemporalDeadline } from '../lib/temporal.js';
import { LIVE_BATCH_STATES } from '../schema/tables.js';
import { startAfterEnd } from '../workflows/batch-lifecycle.js';

export interface ReconcilerDeps {
  db: Db;
  config: Config;
  log: Logger;
  client: Client;
  control: ControlActivities;
  webhooks: Pick<WebhookActivities, 'prepareDeliveries'>;
}

const LOCK = 'gpu-batch-reconciler';

/** Why a batch's workflow no longer works on it, or undefined while it is running. */
async function workflowGone(client: Client, config: Config, batchId: string): Promise<string | undefined> {
  try {
    const description = await withTemporalDeadline(client, config, () => client.workflow.getHandle(batchId).describe());
    if (description.status.name === 'RUNNING') return undefined;
    return `its workflow is ${description.status.name.toLowerCase().replace(/_/g, ' ')}`;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return 'its workflow does not exist';
    throw err;
  }
}

/** One pass: every live batch older than the grace period whose workflow is gone is ended. Returns how many. */
export async function reconcileOnce(deps: ReconcilerDeps): Promise<number> {
  const { db, config, log } = deps;
  return db.connection().execute(async (conn) => {
    // One reconciler at a time across orchestrators; the lock goes with the session if this process dies.
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(hashtext(${LOCK})) as locked`.execute(conn);
    if (rows[0]?.locked !== true) return 0;
    try {
      const candidates = await conn
        .selectFrom('batches')
        .leftJoin('files', 'files.id', 'batches.input_file_id')
        .select(['batches.id', 'batches.status', 'batches.model', 'files.storage_key'])
        .where('batches.status', 'in', LIVE_BATCH_STATES)
        .where('batches.created_at', '<', nowSeconds() - config.reconciler.graceSeconds)
        .orderBy('batches.created_at')
        .limit(config.reconciler.batchesPerPass)
        .execute();
      let ended = 0;
      for (const batch of candidates) {
        const reason = await workflowGone(deps.client, config, batch.id);
        if (reason === undefined) continue;
        log.warn({ batchId: batch.id, status: batch.status, reason }, 'ending a batch whose workflow is gone');
        // Validated (it has a model) and its input still there: finalize from what is stored.
        if (batch.model !== null && batch.storage_key !== null && batch.status !== 'validating') {
          await deps.control.finalizeBatch({ batchId: batch.id, inputKey: batch.storage_key, outcome: 'aborted', reason });
        } else {
          await deps.control.failBatch({ batchId: batch.id, code: 'batch_aborted', message: `The batch stopped before its requests ran: ${reason}.` });
        }
        batchesReconciledTotal.inc();
        ended++;
        try {
          await startAfterEnd(deps.client, config, batch.id, await deps.webhooks.prepareDeliveries({ batchId: batch.id }));
        } catch (err) {
          log.warn({ batchId: batch.id, err: (err as Error).message }, 'could not start the webhook deliveries or the curation import of a reconciled batch');
        }
      }
      return ended;
    } finally {
      await sql`select pg_advisory_unlock(hashtext(${LOCK}))`.execute(conn);
    }
  });
}

/** Runs the pass every RECONCILE_INTERVAL_MS; returns the function that stops it. */
export function startReconciler(deps: ReconcilerDeps): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const run = (): void => {
    reconcileOnce(deps)
      .then((ended) => {
        if (ended > 0) deps.log.info({ ended }, 'reconciled batches whose workflow was gone');
      })
      .catch((err: unknown) => {
        deps.log.warn({ err: (err as Error).message }, 'reconciling failed; will try again');
      })
      .finally(() => {
        if (!stopped) timer = setTimeout(run, deps.config.reconciler.intervalMs);
      });
  };
  timer = setTimeout(run, deps.config.reconciler.intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
