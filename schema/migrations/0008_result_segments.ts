import { sql, type Kysely } from 'kysely';

// Output lines leave Postgres for the file store: each flush of results is a segment object, and a
// small row per (flush, bucket of 1,024 input lines) says which lines it counts and their tokens (a
// running batch's counts are summed from these rows; its own counters are written when it ends). Lines already in
// batch_results become such rows (segment null: their text stays in legacy_batch_results until their batch
// finishes); those of finished batches are already in the batch's files and go.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`set local statement_timeout = 0`.execute(db);
  // A worker of the version before, still running, must not store a result between the copy below and
  // the rename: it waits here, then fails on the renamed table, and its chunk is retried.
  await sql`lock table batch_results in exclusive mode`.execute(db);
  await db.schema
    .createTable('result_groups')
    .addColumn('batch_id', 'text', (c) => c.notNull().references('batches.id').onDelete('cascade'))
    .addColumn('bucket', 'integer', (c) => c.notNull())
    .addColumn('segment', 'text')
    .addColumn('byte_start', 'bigint', (c) => c.notNull())
    .addColumn('byte_end', 'bigint', (c) => c.notNull())
    .addColumn('lines', sql`integer[]`, (c) => c.notNull())
    .addColumn('failed', sql`integer[]`, (c) => c.notNull())
    .addColumn('input_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('cached_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('output_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('reasoning_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.createIndex('result_groups_bucket').on('result_groups').columns(['batch_id', 'bucket']).execute();
  await sql`
    insert into result_groups (batch_id, bucket, segment, byte_start, byte_end, lines, failed,
                               input_tokens, cached_tokens, output_tokens, reasoning_tokens)
    select batch_id, line / 1024, null, 0, 0,
           array_agg(line order by line),
           coalesce(array_agg(line order by line) filter (where not ok), '{}'),
           sum(input_tokens), sum(cached_tokens), sum(output_tokens), sum(reasoning_tokens)
    from batch_results
    group by batch_id, line / 1024
  `.execute(db);
  await sql`
    delete from batch_results r using batches b
    where r.batch_id = b.id and b.status not in ('validating', 'in_progress', 'finalizing', 'cancelling')
  `.execute(db);
  // Renamed, so that a GPU worker or orchestrator of the version before, still running, fails to store
  // a result (its chunk is retried, by an upgraded worker) instead of storing it where nothing reads it.
  await sql`alter table batch_results rename to legacy_batch_results`.execute(db);
  await sql`comment on table result_groups is 'which lines of a batch each result segment (file store) counts; a line is in one row of its bucket'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table legacy_batch_results rename to batch_results`.execute(db);
  await db.schema.dropTable('result_groups').ifExists().execute();
}
