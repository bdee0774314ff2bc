import { Kysely, Migrator } from 'kysely';
import { PostgresJSDialect } from 'kysely-postgres-js';
import postgres from 'postgres';
import { migrations } from '../schema/migrations/index.js';
import type { Database } from '../schema/tables.js';

export type Db = Kysely<Database>;

export function createDb(url: string, options: { poolSize?: number } = {}): Db {
  const client = postgres(url, {
    max: options.poolSize ?? 10,
    onnotice: () => undefined,
    // Counts, byte sizes and Unix times are bigint in SQL and plain numbers here
    // (exact up to 2^53, far beyond anything we store).
    types: {
      bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
    },
  });
  return new Kysely<Database>({ dialect: new PostgresJSDialect({ postgres: client }) });
}

/** Brings the schema up to date; safe to call from several processes at once (Kysely locks). */
export async function migrateToLatest(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: () => Promise.resolve(migrations) } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error !== undefined || failed !== undefined) {
    const reason = error instanceof Error ? error.message : `migration ${failed?.migrationName ?? 'unknown'} failed`;
    throw new Error(`database migration failed: ${reason}`);
  }
}

/** A process's database: connected and migrated before anything else uses it. */
export async function openDatabase(url: string, poolSize: number): Promise<Db> {
  const db = createDb(url, { poolSize });
  await migrateToLatest(db);
  return db;
}
