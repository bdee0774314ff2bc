// Upgrading across 0008 (answers leave Postgres): a batch running at the upgrade keeps every answer it
// had stored in batch_results and finalizes with them in input order; a finished batch's rows go (its
// files hold them), and which of its lines succeeded is still known.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Migrator } from 'kysely';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createControlActivities } from '../../activities/batch-control.js';
import { persistResults, resultRow } from '../../activities/results.js';
import { ensureDatabase } from '../../dev/embedded-postgres.js';
import { loadConfig } from '../../lib/config.js';
import { LocalFileStore, writeChunk } from '../../lib/file-store.js';
import { createLogger } from '../../lib/logger.js';
import { createDb, type Db } from '../../schema/db.js';
import { migrations } from '../../schema/migrations/index.js';
import { succeededLines } from '../../schema/result-groups.js';
import type { LegacyBatchResultsTable } from '../../schema/tables.js';

const log = createLogger('result-migration', { level: 'warn', format: 'json' });

describe('the upgrade that moves answers out of Postgres', () => {
  let db: Db;
  let dir: string;
  let store: LocalFileStore;
  const migrator = (): Migrator => new Migrator({ db, provider: { getMigrations: () => Promise.resolve(migrations) } });

  beforeAll(async () => {
    const server = inject('services').postgresServerUrl;
    const name = `mig${randomBytes(4).toString('hex')}`;
    await ensureDatabase(server, name);
    db = createDb(`${server}/${name}`, { poolSize: 2, queryTimeoutMs: 30_000, connectTimeoutMs: 5000 });
    dir = await mkdtemp(path.join(tmpdir(), 'result-migration-'));
    store = new LocalFileStore(dir);
  });
  afterAll(async () => {
    await db.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const answer = (customId: string, ok: boolean): string =>
    JSON.stringify({
      id: `batch_req_${customId}`,
      custom_id: customId,
      response: ok ? { status_code: 200, request_id: customId, body: { legacy: true } } : null,
      error: ok ? null : { code: 'engine_unavailable', message: 'gone' },
    });

  it('finalizes a batch that was running at the upgrade from the answers it had stored', async () => {
    const { error } = await migrator().migrateTo('0007_hardening');
    expect(error).toBeUndefined();
    const count = 3000;
    const input = await store.createWriter('uploads/file-in');
    for (let i = 0; i < count; i++)
      await writeChunk(
        input.stream,
        `${JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'm' } })}\n`,
      );
    await input.commit();
    const now = Math.floor(Date.now() / 1000);
    await db.insertInto('projects').values({ id: 'proj_1', name: 'default', created_at: now }).execute();
    const batch = (id: string, status: string) => ({
      id,
      project_id: 'proj_1',
      endpoint: '/v1/chat/completions',
      input_file_id: 'file-in',
      completion_window: '24h',
      status,
      model: 'm',
      request_total: count,
      created_at: now,
      expires_at: now + 86_400,
    });
    await db
      .insertInto('batches')
      .values([batch('batch_running', 'in_progress'), batch('batch_done', 'completed')] as never)
      .execute();
    // Lines 1-2,000 answered before the upgrade (every seventh failed), in both batches, as the version
    // before stored them.
    const before = db.withTables<{ batch_results: LegacyBatchResultsTable }>();
    for (const id of ['batch_running', 'batch_done'])
      await before
        .insertInto('batch_results')
        .values(
          Array.from({ length: 2000 }, (_, i) => ({
            batch_id: id,
            line: i + 1,
            custom_id: `req-${i}`,
            ok: i % 7 !== 0,
            output: answer(`req-${i}`, i % 7 !== 0),
            input_tokens: 1,
            cached_tokens: 0,
            output_tokens: 2,
            reasoning_tokens: 0,
          })),
        )
        .execute();

    const { error: upgradeError } = await migrator().migrateToLatest();
    expect(upgradeError).toBeUndefined();
    // The finished batch's answers are gone from Postgres; which of its lines succeeded is not.
    expect(
      await db.selectFrom('legacy_batch_results').select('line').where('batch_id', '=', 'batch_done').execute(),
    ).toEqual([]);
    // A worker of the version before, still running, cannot store a result where nothing would read it:
    // its write fails (and its chunk is retried).
    await expect(
      before
        .insertInto('batch_results')
        .values({
          batch_id: 'batch_running',
          line: 2999,
          custom_id: 'req-2998',
          ok: true,
          output: answer('req-2998', true),
          input_tokens: 0,
          cached_tokens: 0,
          output_tokens: 0,
          reasoning_tokens: 0,
        })
        .execute(),
    ).rejects.toThrow(/batch_results/);
    expect(await succeededLines(db, 'batch_done')).toEqual(
      Array.from({ length: 2000 }, (_, i) => i + 1).filter((line) => (line - 1) % 7 !== 0),
    );

    // The running batch goes on: its other lines are answered the new way, a few again (a zombie).
    const fresh = Array.from({ length: 1100 }, (_, i) =>
      resultRow('batch_running', 1901 + i, `req-${1900 + i}`, {
        kind: 'ok',
        status: 200,
        requestId: `new-${1900 + i}`,
        raw: '{"legacy":false}',
        body: { legacy: false },
        attempts: 1,
        errors: [],
      }),
    );
    expect(await persistResults(db, store, 'batch_running', fresh)).toBe(1000);
    const config = loadConfig({ ...process.env, FILE_STORE_DIR: dir, DATABASE_URL: 'postgres://unused/x' });
    const control = createControlActivities({ db, store, config, log });
    const summary = await control.finalizeBatch({
      batchId: 'batch_running',
      inputKey: 'uploads/file-in',
      outcome: 'completed',
    });
    const failedBefore = Math.ceil(2000 / 7);
    expect(summary).toMatchObject({ status: 'completed', completed: count - failedBefore, failed: failedBefore });
    // Its tokens: those stored before the upgrade (the answers since report none).
    expect(
      await db
        .selectFrom('batches')
        .select(['input_tokens', 'output_tokens'])
        .where('id', '=', 'batch_running')
        .executeTakeFirstOrThrow(),
    ).toEqual({ input_tokens: 2000, output_tokens: 4000 });
    const read = async (
      fileId: string | null,
    ): Promise<{ custom_id: string; response: { body: unknown } | null }[]> => {
      const key = (
        await db
          .selectFrom('files')
          .select('storage_key')
          .where('id', '=', fileId ?? '')
          .executeTakeFirstOrThrow()
      ).storage_key;
      const chunks: Buffer[] = [];
      for await (const chunk of store.read(key)) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks)
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { custom_id: string; response: { body: unknown } | null });
    };
    const output = await read(summary.outputFileId);
    const errors = await read(summary.errorFileId);
    const index = (l: { custom_id: string }): number => Number(l.custom_id.slice(4));
    expect(output.map(index)).toEqual(
      Array.from({ length: count }, (_, i) => i).filter((i) => i >= 2000 || i % 7 !== 0),
    );
    expect(errors.map(index)).toEqual(Array.from({ length: 2000 }, (_, i) => i).filter((i) => i % 7 === 0));
    // Lines answered before the upgrade keep that answer, even those answered again since.
    expect(output.filter((l) => index(l) < 2000).every((l) => (l.response?.body as { legacy: boolean }).legacy)).toBe(
      true,
    );
    expect(output.filter((l) => index(l) >= 2000).every((l) => !(l.response?.body as { legacy: boolean }).legacy)).toBe(
      true,
    );
    // Once finished, it keeps no answers in Postgres either.
    expect(
      await db.selectFrom('legacy_batch_results').select('line').where('batch_id', '=', 'batch_running').execute(),
    ).toEqual([]);
  });
});
