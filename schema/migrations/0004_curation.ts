import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Label Studio projects we created, by what they are for ("schema:review", "batch:batch_…"), so a
  // restart or retry never creates a second one.
  await db.schema
    .createTable('curation_projects')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('ls_project_id', 'integer')
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('schema', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  // One row per batch: where its import stands, and why when it did not happen.
  await db.schema
    .createTable('curations')
    .addColumn('batch_id', 'text', (c) => c.primaryKey().references('batches.id').onDelete('cascade'))
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('schema', 'text')
    .addColumn('ls_project_id', 'integer')
    .addColumn('tasks_total', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('tasks_imported', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('pages_total', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('pages_done', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('reviewed', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('finished_at', 'bigint')
    .execute();

  // Each page of an import: "posting" before it is sent, "done" once Label Studio has it. A page
  // left "posting" has an unknown outcome, and is checked against Label Studio before re-sending.
  await db.schema
    .createTable('curation_pages')
    .addColumn('batch_id', 'text', (c) => c.notNull().references('batches.id').onDelete('cascade'))
    .addColumn('page', 'integer', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('tasks', 'integer', (c) => c.notNull())
    .addColumn('ls_task_ids', 'jsonb')
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('curation_pages_pk', ['batch_id', 'page'])
    .execute();

  // Review progress reported by Label Studio's webhooks: one row per annotated task.
  await db.schema
    .createTable('curation_reviews')
    .addColumn('ls_project_id', 'integer', (c) => c.notNull())
    .addColumn('ls_task_id', 'integer', (c) => c.notNull())
    .addColumn('batch_id', 'text')
    .addColumn('custom_id', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('annotation_id', 'integer')
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('curation_reviews_pk', ['ls_project_id', 'ls_task_id'])
    .execute();
  await db.schema.createIndex('curation_reviews_batch').on('curation_reviews').column('batch_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['curation_reviews', 'curation_pages', 'curations', 'curation_projects'])
    await db.schema.dropTable(table).ifExists().execute();
}
