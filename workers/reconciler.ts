// The reconciler: a periodic sweep in each orchestrator (one at a time across them, by an advisory
// lock) that finds batches the database says are live but whose workflow is gone — terminated by an
// operator, timed out, failed after its bounded retries, or never started — and ends them: a batch
// that got past validation is finalized from what is stored (completed if every request has its
// result, else what never ran becomes `batch_aborted` error lines and the batch fails), one that did
// not is failed with the reason. Then it starts what the workflow would have: webhook deliveries and
// the curation import.
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { sql } from 'kysely';

import type { ControlActivities } from '../activities/batch-control.js';
import type { WebhookActivities } from '../activities/webhook-delivery.js';
import type { Config } from '../lib/config.js';
import type { FileStore } from '../lib/file-store.js';
import { nowSeconds } from '../lib/ids.js';
import type { Logger } from '../lib/logger.js';
import { batchesReconciledTotal } from '../lib/metrics.js';
import { withTemporalDeadline } from '../lib/temporal.js';
import { isDatabaseUnavailable, type Db } from '../schema/db.js';
import { persistedLines } from '../schema/result-groups.js';
import { LIVE_BATCH_STATES } from '../schema/tables.js';
import { startAfterEnd } from '../workflows/batch-lifecycle.js';

export interface ReconcilerDeps {
  db: Db;
  store: FileStore;
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

/** Whether a failure came with the database or the file store away. */
async function dependencyDown(deps: ReconcilerDeps, err: unknown): Promise<boolean> {
  if (isDatabaseUnavailable(err)) return true;
  try {
    await deps.store.check();
    return false;
  } catch {
    return true;
  }
}

/** What the reconciler keeps between passes: where the last pass stopped, and what failed how often. */
export interface ReconcilerState {
  after?: { createdAt: number; id: string };
  failures: Map<string, number>;
}

/** How a batch whose workflow is gone is ended: finished requests kept, and the rest said plainly. */
async function endBatch(
  deps: ReconcilerDeps,
  batch: { id: string; status: string; model: string | null; storage_key: string | null; request_total: number },
  reason: string,
): Promise<void> {
  const { db, control, store } = deps;
  const inputThere = batch.storage_key !== null && (await store.size(batch.storage_key)) !== undefined;
  if (batch.model === null || batch.status === 'validating' || batch.storage_key === null) {
    await control.failBatch({
      batchId: batch.id,
      code: 'batch_aborted',
      message: `The batch stopped before its requests ran: ${reason}.`,
    });
    return;
  }
  if (!inputThere) {
    // Without its input, the lines that never ran cannot be named: fail it, saying why.
    await control.failBatch({
      batchId: batch.id,
      code: 'batch_aborted',
      message: `The batch stopped (${reason}) and its input file is gone, so it cannot be finalized.`,
    });
    return;
  }
  // Every request has its result (its workflow failed while finishing, say): it completed.
  const n = (await persistedLines(db, batch.id)).done.size;
  const outcome =
    batch.status !== 'cancelling' && batch.request_total > 0 && n >= batch.request_total ? 'completed' : 'aborted';
  await control.finalizeBatch({ batchId: batch.id, inputKey: batch.storage_key, outcome, reason });
}

/**
 * One pass over live batches older than the grace period, from where the last pass stopped (so a
 * backlog of running batches never hides a newer one whose workflow is gone): each such batch is
 * ended. A batch that cannot be ended is tried again on later passes, and after RECONCILE_MAX_TRIES
 * failed, saying why; one batch never stops the pass. Returns how many it ended.
 */
export async function reconcileOnce(
  deps: ReconcilerDeps,
  state: ReconcilerState = { failures: new Map() },
): Promise<number> {
  const { db, config, log } = deps;
  return db.connection().execute(async (conn) => {
    // One reconciler at a time across orchestrators; the lock goes with the session if this process dies.
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(hashtext(${LOCK})) as locked`.execute(
      conn,
    );
    if (rows[0]?.locked !== true) return 0;
    try {
      let query = conn
        .selectFrom('batches')
        .leftJoin('files', 'files.id', 'batches.input_file_id')
        .select([
          'batches.id',
          'batches.status',
          'batches.model',
          'batches.created_at',
          'batches.request_total',
          'files.storage_key',
        ])
        .where('batches.status', 'in', LIVE_BATCH_STATES)
        .where('batches.created_at', '<', nowSeconds() - config.reconciler.graceSeconds);
      const after = state.after;
      if (after !== undefined)
        query = query.where(sql<boolean>`(batches.created_at, batches.id) > (${after.createdAt}, ${after.id})`);
      const candidates = await query
        .orderBy('batches.created_at')
        .orderBy('batches.id')
        .limit(config.reconciler.batchesPerPass)
        .execute();
      const last = candidates.at(-1);
      // A short page is the end of the list: the next pass starts from the oldest again.
      state.after =
        candidates.length < config.reconciler.batchesPerPass || last === undefined
          ? undefined
          : { createdAt: last.created_at, id: last.id };
      let ended = 0;
      for (const batch of candidates) {
        try {
          const reason = await workflowGone(deps.client, config, batch.id);
          if (reason === undefined) continue;
          log.warn({ batchId: batch.id, status: batch.status, reason }, 'ending a batch whose workflow is gone');
          const tries = (state.failures.get(batch.id) ?? 0) + 1;
          try {
            await endBatch(deps, batch, reason);
            state.failures.delete(batch.id);
          } catch (err) {
            // An outage of the database or the file store is waited out: giving up then would fail a
            // batch whose results are all there. Only a failure with both at hand counts as a try.
            if (await dependencyDown(deps, err)) throw err;
            state.failures.set(batch.id, tries);
            if (tries < config.reconciler.maxTries) throw err;
            await deps.control.failBatch({
              batchId: batch.id,
              code: 'batch_aborted',
              message: `The batch stopped (${reason}) and could not be finalized after ${tries} tries: ${(err as Error).message}`,
            });
            state.failures.delete(batch.id);
          }
          batchesReconciledTotal.inc();
          ended++;
          await startAfterEnd(
            deps.client,
            config,
            batch.id,
            await deps.webhooks.prepareDeliveries({ batchId: batch.id }),
          ).catch((err: unknown) => {
            log.warn(
              { batchId: batch.id, err: (err as Error).message },
              'could not start the webhook deliveries or the curation import of a reconciled batch',
            );
          });
        } catch (err) {
          log.warn(
            { batchId: batch.id, err: (err as Error).message },
            'could not reconcile a batch; trying again on the next pass',
          );
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
  const state: ReconcilerState = { failures: new Map() };
  const run = (): void => {
    reconcileOnce(deps, state)
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
