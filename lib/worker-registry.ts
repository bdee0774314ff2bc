// GPU workers announce the models they serve; the API answers /v1/models and refuses batches for
// models nobody serves from this table. A worker that stops heartbeating drops out by itself.
import { sql } from 'kysely';

import { jsonb, type Db } from '../schema/db.js';
import { BATCH_ENDPOINTS } from '../wire/openai.js';
import { nowSeconds } from './ids.js';

export interface WorkerAnnouncement {
  id: string;
  models: string[];
  taskQueueOf: (model: string) => string;
  gpu: string;
  host: string;
  engineUrl: string;
  maxInFlight: number;
  /** The batch endpoints its engine serves. */
  endpoints: string[];
}

export async function announceWorker(db: Db, w: WorkerAnnouncement): Promise<void> {
  const now = nowSeconds();
  await db
    .insertInto('workers')
    .values(
      w.models.map((model) => ({
        id: w.id,
        model,
        task_queue: w.taskQueueOf(model),
        gpu: w.gpu,
        host: w.host,
        engine_url: w.engineUrl,
        max_inflight: w.maxInFlight,
        endpoints: jsonb(w.endpoints),
        started_at: now,
        last_seen_at: now,
      })),
    )
    .onConflict((c) => c.columns(['id', 'model']).doUpdateSet({ last_seen_at: now }))
    .execute();
}

export async function withdrawWorker(db: Db, id: string): Promise<void> {
  await db.deleteFrom('workers').where('id', '=', id).execute();
}

export interface LiveModel {
  model: string;
  workers: number;
  since: number;
  /** The smallest GPU_MAX_INFLIGHT among the model's workers. */
  minInFlight: number;
  /** The batch endpoints some live worker of the model serves. */
  endpoints: string[];
}

/** Models with at least one worker that has not missed three heartbeats. */
export async function liveModels(db: Db, heartbeatMs: number): Promise<LiveModel[]> {
  const freshSeconds = Math.ceil((3 * heartbeatMs) / 1000);
  const rows = await db
    .selectFrom('workers')
    .select([
      'model',
      // Distinct: a worker's row appears once for each endpoint it serves.
      sql<number>`count(distinct workers.id)`.as('workers'),
      sql<number>`min(started_at)`.as('since'),
      sql<number>`min(max_inflight)`.as('min_inflight'),
      // Workers registered before endpoints were recorded serve every endpoint, as they were taken to.
      sql<string[]>`coalesce(jsonb_agg(distinct e.value) filter (where e.value is not null), '[]'::jsonb)`.as(
        'endpoints',
      ),
      sql<boolean>`bool_or(workers.endpoints is null)`.as('unknown_endpoints'),
    ])
    .leftJoin(sql<{ value: string }>`jsonb_array_elements_text(workers.endpoints)`.as('e'), (join) => join.onTrue())
    .where('last_seen_at', '>=', nowSeconds() - freshSeconds)
    .groupBy('model')
    .orderBy('model')
    .execute();
  return rows.map((r) => ({
    model: r.model,
    workers: r.workers,
    since: r.since,
    minInFlight: r.min_inflight,
    endpoints: r.unknown_endpoints ? [...BATCH_ENDPOINTS] : r.endpoints,
  }));
}
