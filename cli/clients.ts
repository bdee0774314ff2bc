// How commands reach the system: the API through the openai SDK (OPENAI_BASE_URL, OPENAI_API_KEY),
// and, for an operator's commands, the database itself (DATABASE_URL, or the local stack's).
import OpenAI from 'openai';

import { databaseUrl, loadConfig } from '../lib/config.js';
import { createDb, dbOptions, migrateToLatest, type Db } from '../schema/db.js';

/** The API, as an OpenAI SDK client (it is one). */
export function api(): OpenAI {
  const { apiUrl, apiKey } = loadConfig().cli;
  return new OpenAI({ baseURL: apiUrl, apiKey });
}

export async function withDatabase<T>(use: (db: Db) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const url = databaseUrl(config);
  // An operator's command: a database that is not there is said at once, not waited for.
  try {
    await migrateToLatest(url, { ...dbOptions(config), poolSize: 1 });
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${url.replace(/\/\/[^@]*@/, '//')}: ${(err as Error).message}\n` +
        'Start the stack (npm start) or set DATABASE_URL.',
      { cause: err },
    );
  }
  const db = createDb(url, { ...dbOptions(config), poolSize: 1 });
  try {
    return await use(db);
  } finally {
    await db.destroy();
  }
}
