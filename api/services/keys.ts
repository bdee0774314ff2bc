// API keys: stored as sha256 hashes, each belonging to a project. API_KEYS seeds keys for local use.
import { createHash, randomBytes } from 'node:crypto';

import { newId, nowSeconds } from '../../lib/ids.js';
import type { ApiDeps } from '../deps.js';

export interface Project {
  id: string;
  name: string;
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function generateKey(): string {
  return `sk-batch-${randomBytes(24).toString('base64url')}`;
}

/** Shown in listings instead of the key, which is never stored. */
function prefixOf(key: string): string {
  return `${key.slice(0, 12)}…`;
}

export async function ensureProject(deps: Pick<ApiDeps, 'db'>, name: string): Promise<Project> {
  await deps.db
    .insertInto('projects')
    .values({ id: newId('proj_'), name, created_at: nowSeconds() })
    .onConflict((c) => c.column('name').doNothing())
    .execute();
  return deps.db.selectFrom('projects').select(['id', 'name']).where('name', '=', name).executeTakeFirstOrThrow();
}

/** Adds a key (idempotent for the same key) to a project, creating the project if needed. */
export async function addKey(
  deps: Pick<ApiDeps, 'db'>,
  projectName: string,
  key: string,
  keyName = 'seeded',
): Promise<Project> {
  const project = await ensureProject(deps, projectName);
  await deps.db
    .insertInto('api_keys')
    .values({
      id: newId('key_'),
      project_id: project.id,
      name: keyName,
      key_hash: hashKey(key),
      key_prefix: prefixOf(key),
      created_at: nowSeconds(),
      revoked_at: null,
    })
    .onConflict((c) => c.column('key_hash').doNothing())
    .execute();
  return project;
}

/** The project a key belongs to, or undefined for unknown and revoked keys. */
export async function projectForKey(deps: Pick<ApiDeps, 'db'>, key: string): Promise<Project | undefined> {
  return deps.db
    .selectFrom('api_keys')
    .innerJoin('projects', 'projects.id', 'api_keys.project_id')
    .select(['projects.id', 'projects.name'])
    .where('api_keys.key_hash', '=', hashKey(key))
    .where('api_keys.revoked_at', 'is', null)
    .executeTakeFirst();
}

/** API_KEYS: every listed key gets access to the "default" project. */
export async function seedKeys(deps: Pick<ApiDeps, 'db'>, keys: string[]): Promise<void> {
  for (const key of keys) await addKey(deps, 'default', key, 'API_KEYS');
}

export interface KeyInfo {
  id: string;
  project: string;
  name: string;
  prefix: string;
  createdAt: number;
  revokedAt: number | null;
}

/** A new key for a project (created if needed); the key itself is returned only here. */
export async function createKey(
  deps: Pick<ApiDeps, 'db'>,
  projectName: string,
  keyName: string,
): Promise<{ id: string; key: string; project: Project }> {
  const key = generateKey();
  const project = await addKey(deps, projectName, key, keyName);
  const row = await deps.db
    .selectFrom('api_keys')
    .select('id')
    .where('key_hash', '=', hashKey(key))
    .executeTakeFirstOrThrow();
  return { id: row.id, key, project };
}

export async function listKeys(deps: Pick<ApiDeps, 'db'>, projectName?: string): Promise<KeyInfo[]> {
  let query = deps.db
    .selectFrom('api_keys')
    .innerJoin('projects', 'projects.id', 'api_keys.project_id')
    .selectAll('api_keys')
    .select('projects.name as project')
    .orderBy('api_keys.created_at');
  if (projectName !== undefined) query = query.where('projects.name', '=', projectName);
  return (await query.execute()).map((r) => ({
    id: r.id,
    project: r.project,
    name: r.name,
    prefix: r.key_prefix,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  }));
}

/** Revokes a key by id; every request with it is refused from now on. False if there is no such key. */
export async function revokeKey(deps: Pick<ApiDeps, 'db'>, id: string): Promise<boolean> {
  const result = await deps.db
    .updateTable('api_keys')
    .set({ revoked_at: nowSeconds() })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
