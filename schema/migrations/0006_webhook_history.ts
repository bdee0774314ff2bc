import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Scrapes count deliveries by status; the API lists an endpoint's latest; the sweeper drops old ones.
  await db.schema.createIndex('webhook_deliveries_status').on('webhook_deliveries').column('status').execute();
  await db.schema
    .createIndex('webhook_deliveries_latest')
    .on('webhook_deliveries')
    .columns(['webhook_id', 'created_at'])
    .execute();
  await db.schema.createIndex('webhook_deliveries_created').on('webhook_deliveries').column('created_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const index of ['webhook_deliveries_created', 'webhook_deliveries_latest', 'webhook_deliveries_status'])
    await db.schema.dropIndex(index).ifExists().execute();
}
