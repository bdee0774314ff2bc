import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Indexes on large tables may take longer than a query may (DATABASE_QUERY_TIMEOUT_MS): not here.
  await sql`set local statement_timeout = 0`.execute(db);
  // A file being removed is marked first, then its bytes go, then its row: a crash in between leaves
  // a mark the sweep finishes, never bytes nobody knows of.
  await db.schema.alterTable('files').addColumn('deleted_at', 'bigint').execute();
  await db.schema.createIndex('files_expires').on('files').column('expires_at').execute();
  // What each GPU worker's engine serves: validation refuses a batch for an endpoint no worker of its model has.
  await db.schema.alterTable('workers').addColumn('endpoints', 'jsonb').execute();
  // Retention finds old batches by age.
  await db.schema.createIndex('batches_created').on('batches').column('created_at').execute();

  // Label Studio projects belong to the API project they were made for; creating one is claimed (a
  // lease) instead of holding a lock across Label Studio's answers; the webhook is set up until it is.
  await db.schema.alterTable('curation_projects').addColumn('owner_project_id', 'text').execute();
  await db.schema.alterTable('curation_projects').addColumn('claimed_at', 'bigint').execute();
  await db.schema
    .alterTable('curation_projects')
    .addColumn('webhook_registered', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  // Label Studio projects an operator lets an API project import into (metadata curation_project).
  await db.schema
    .createTable('curation_grants')
    .addColumn('project_id', 'text', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('ls_project_id', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('curation_grants_pk', ['project_id', 'ls_project_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('curation_grants').ifExists().execute();
  for (const column of ['webhook_registered', 'claimed_at', 'owner_project_id'])
    await db.schema.alterTable('curation_projects').dropColumn(column).execute();
  await db.schema.dropIndex('batches_created').ifExists().execute();
  await db.schema.alterTable('workers').dropColumn('endpoints').execute();
  await db.schema.dropIndex('files_expires').ifExists().execute();
  await db.schema.alterTable('files').dropColumn('deleted_at').execute();
}
