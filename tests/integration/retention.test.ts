// Retention: once a batch's files are deleted or expire, nothing of their content is left anywhere —
// not in any table, not in the file store; old batches go with everything they own; unfinished
// writes and gone workers are cleaned up.
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { sweepExpiredFiles } from '../../api/services/files.js';
import { sweepGoneWorkers, sweepOldBatches, sweepPartialWrites } from '../../api/services/retention.js';
import { nowSeconds } from '../../lib/ids.js';
import { runBatch, waitForBatch } from '../support/batches.js';
import { startTestStack, type TestStack } from '../support/stack.js';

/** Rows of every table whose text holds the marker, by table. */
async function rowsWith(stack: TestStack, marker: string): Promise<Record<string, number>> {
  const tables = await sql<{
    name: string;
  }>`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`.execute(
    stack.db,
  );
  const found: Record<string, number> = {};
  for (const { name } of tables.rows) {
    const { rows } = await sql<{
      n: number;
    }>`select count(*) as n from ${sql.table(name)} as t where t::text like ${`%${marker}%`}`.execute(stack.db);
    if ((rows[0]?.n ?? 0) > 0) found[name] = rows[0]?.n ?? 0;
  }
  return found;
}

/** Files under the store's folder whose bytes hold the marker. */
async function storedWith(stack: TestStack, marker: string): Promise<string[]> {
  const root = stack.config.paths.fileStoreDir;
  const names = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  const hits: string[] = [];
  for (const name of names) {
    const content = await readFile(path.join(root, name)).catch(() => undefined);
    if (content?.includes(marker) === true) hits.push(name);
  }
  return hits;
}

function markedLines(marker: string, model: string, count: number): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    // Every third asks for more tokens than the model holds: an engine 4xx, an error line, a dead letter.
    const body = {
      model,
      messages: [{ role: 'user', content: `${marker} question ${i}` }],
      max_tokens: i % 3 === 0 ? 1_000_000 : 8,
    };
    lines.push(JSON.stringify({ custom_id: `${marker}-${i}`, method: 'POST', url: '/v1/chat/completions', body }));
  }
  return `${lines.join('\n')}\n`;
}

describe('retention', () => {
  let stack: TestStack;
  const model = 'sim-test';

  beforeAll(async () => {
    stack = await startTestStack({ env: { API_RATE_LIMIT_PER_MINUTE: '0' } });
  });
  afterAll(async () => {
    await stack.stop();
  });

  it('leaves nothing of a batch anywhere once its files are deleted', async () => {
    const marker = `MARKER${Date.now()}`;
    const batch = await runBatch(stack, markedLines(marker, model, 30));
    expect(batch.status).toBe('completed');
    expect(batch.request_counts?.failed).toBe(10);
    // Before: the marker is in the dead letters and the three files (answers never go to Postgres,
    // and their segments are gone once the files are written).
    expect(Object.keys(await rowsWith(stack, marker)).sort()).toEqual(['dead_letters']);
    expect((await storedWith(stack, marker)).length).toBe(3);

    for (const id of [batch.output_file_id, batch.error_file_id, batch.input_file_id])
      await stack.openai.files.delete(id ?? '');
    expect(await rowsWith(stack, marker)).toEqual({});
    expect(await storedWith(stack, marker)).toEqual([]);
    // The batch itself stays (for its history), saying where its files were.
    expect((await stack.openai.batches.retrieve(batch.id)).request_counts).toEqual({
      total: 30,
      completed: 20,
      failed: 10,
    });
  });

  it('does the same when the files expire, and keeps the output expiry the batch asked for', async () => {
    const marker = `EXPIRY${Date.now()}`;
    const file = await stack.openai.files.create({
      file: new File([markedLines(marker, model, 9)], 'expiring.jsonl'),
      purpose: 'batch',
    });
    const created = await stack.openai.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/chat/completions',
      completion_window: '24h',
      output_expires_after: { anchor: 'created_at', seconds: 7200 },
    });
    const batch = await waitForBatch(stack.openai, created.id);
    const output = await stack.openai.files.retrieve(batch.output_file_id ?? '');
    expect(output.expires_at).toBe(output.created_at + 7200);

    await stack.db
      .updateTable('files')
      .set({ expires_at: nowSeconds() - 1 })
      .where('id', 'in', [file.id, batch.output_file_id ?? '', batch.error_file_id ?? ''])
      .execute();
    expect(await sweepExpiredFiles(stack)).toBe(3);
    expect(await rowsWith(stack, marker)).toEqual({});
    expect(await storedWith(stack, marker)).toEqual([]);
  });

  it('removes old batches with all they own, and finishes a removal cut short', async () => {
    const marker = `OLD${Date.now()}`;
    const batch = await runBatch(stack, markedLines(marker, model, 6));
    // A removal that died after marking the error file: the sweep finishes it.
    await stack.db
      .updateTable('files')
      .set({ deleted_at: nowSeconds() })
      .where('id', '=', batch.error_file_id ?? '')
      .execute();
    await expect(stack.openai.files.retrieve(batch.error_file_id ?? '')).rejects.toMatchObject({ status: 404 });
    await sweepExpiredFiles(stack);
    expect(
      await stack.db
        .selectFrom('files')
        .select('id')
        .where('id', '=', batch.error_file_id ?? '')
        .executeTakeFirst(),
    ).toBeUndefined();

    await stack.db
      .updateTable('batches')
      .set({ created_at: nowSeconds() - 100, completed_at: nowSeconds() - 100 })
      .where('id', '=', batch.id)
      .execute();
    const swept = await sweepOldBatches({
      ...stack,
      config: { ...stack.config, retention: { ...stack.config.retention, batchSeconds: 50 } },
    });
    expect(swept).toBeGreaterThanOrEqual(1);
    await expect(stack.openai.batches.retrieve(batch.id)).rejects.toMatchObject({ status: 404 });
    await expect(stack.openai.files.retrieve(batch.output_file_id ?? '')).rejects.toMatchObject({ status: 404 });
    // Only the input file, which has its own expiry, still holds the marker.
    expect(await rowsWith(stack, marker)).toEqual({});
    expect(await storedWith(stack, marker)).toEqual([`uploads/${batch.input_file_id}`]);
  });

  it('cleans up writes that never finished and workers long gone', async () => {
    const partial = path.join(stack.config.paths.fileStoreDir, 'uploads', 'file-dead.partial-abcdef123456');
    await writeFile(partial, 'half an upload');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(partial, old, old);
    const fresh = `${partial.slice(0, -4)}9999`;
    await writeFile(fresh, 'an upload under way');
    expect(
      await sweepPartialWrites({
        ...stack,
        config: { ...stack.config, retention: { ...stack.config.retention, partialWriteSeconds: 3600 } },
      }),
    ).toBe(1);
    expect((await readdir(path.dirname(partial))).filter((n) => n.includes('.partial-'))).toEqual([
      path.basename(fresh),
    ]);

    await stack.db
      .insertInto('workers')
      .values({
        id: 'gpu9@lost-host:1',
        model,
        task_queue: 'q',
        gpu: '9',
        host: 'lost-host',
        engine_url: 'http://x',
        max_inflight: 1,
        started_at: 0,
        last_seen_at: nowSeconds() - 7200,
      })
      .execute();
    expect(await sweepGoneWorkers(stack)).toBe(1);
    expect(
      await stack.db.selectFrom('workers').select('id').where('id', '=', 'gpu9@lost-host:1').executeTakeFirst(),
    ).toBeUndefined();
  });
});
