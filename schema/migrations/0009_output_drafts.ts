import { sql, type Kysely } from 'kysely';

// The output and error files of a running batch are written while it runs, as uploads in parts: this
// row per (batch, file) says where each upload is, which parts it has, and how far in the input it
// has come, so a draft call or a finalize that was cut off resumes after the last part it recorded.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('output_drafts')
    .addColumn('batch_id', 'text', (c) => c.notNull().references('batches.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('output', 'errors')`))
    .addColumn('upload_id', 'text', (c) => c.notNull())
    .addColumn('parts', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn('next_line', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('lines', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('tail_key', 'text')
    .addColumn('tail_bytes', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('tail_lines', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('completed_bytes', 'bigint')
    .addPrimaryKeyConstraint('output_drafts_pkey', ['batch_id', 'kind'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('output_drafts').ifExists().execute();
}
