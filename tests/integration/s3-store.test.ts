// The S3 file store against a real S3-compatible server (MinIO, built from the Go module proxy):
// the store's own contract (atomic commit, ranged reads, aborts, readiness), then the whole path of
// a batch with every part (API, orchestrator, a GPU worker in a process of its own) on the bucket.
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { createControlActivities } from '../../activities/batch-control.js';
import { persistResults } from '../../activities/results.js';
import { ensureBucket } from '../../dev/minio.js';
import { S3FileStore, writeChunk, type FileStore } from '../../lib/file-store.js';
import {
  answeredRow,
  batchLines,
  expectEachLineOnce,
  expectedIds,
  fileLines,
  insertRunningBatch,
  runBatch,
} from '../support/batches.js';
import { spawnGpuWorker, type ChildUnderTest } from '../support/processes.js';
import { startTestStack, type TestStack } from '../support/stack.js';
import { uploadContract } from '../support/upload-contract.js';

async function text(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

function client(): S3Client {
  const { s3 } = inject('services');
  return new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

async function keysIn(s3: S3Client, bucket: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (listed.Contents ?? []).map((o) => o.Key ?? '');
}

const PART_BYTES = 5 * 1024 * 1024;

describe('the S3 file store', () => {
  const bucket = `store-${randomBytes(4).toString('hex')}`;
  let s3: S3Client;
  let store: FileStore;

  beforeAll(async () => {
    s3 = client();
    await ensureBucket(s3, bucket);
    store = new S3FileStore(s3, bucket, 'pre/', PART_BYTES, 2);
  });
  afterAll(() => {
    s3.destroy();
  });

  uploadContract(() => store);

  it('streams a file larger than one multipart part, shows it only once committed, and reads it back whole and in ranges', async () => {
    const data = randomBytes(20 * 1024 * 1024 + 123);
    const writer = await store.createWriter('files/big.bin');
    for (let at = 0; at < data.length; at += 1024 * 1024)
      await writeChunk(writer.stream, data.subarray(at, at + 1024 * 1024));
    expect(await store.size('files/big.bin')).toBeUndefined();
    expect(await writer.commit()).toEqual({ bytes: data.length });
    expect(await store.size('files/big.bin')).toBe(data.length);
    expect(await keysIn(s3, bucket)).toContain('pre/files/big.bin');

    const whole = await text(store.read('files/big.bin'));
    expect(createHash('sha256').update(whole).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(await text(store.read('files/big.bin', { start: 5, end: 1000 }))).toEqual(data.subarray(5, 1000));
    expect(await text(store.read('files/big.bin', { start: data.length - 10 }))).toEqual(
      data.subarray(data.length - 10),
    );
    expect((await text(store.read('files/big.bin', { start: 7, end: 7 }))).length).toBe(0);

    await store.delete('files/big.bin');
    expect(await store.size('files/big.bin')).toBeUndefined();
  });

  it('leaves nothing behind when a write is aborted', async () => {
    const writer = await store.createWriter('files/aborted.bin');
    await writeChunk(writer.stream, randomBytes(1024));
    await writer.abort();
    expect(await store.size('files/aborted.bin')).toBeUndefined();
    expect(await keysIn(s3, bucket)).not.toContain('pre/files/aborted.bin');
  });

  it('fails the writer, instead of leaving it waiting forever, when the upload underneath fails', async () => {
    const writer = await new S3FileStore(s3, 'no-such-bucket-here', '', PART_BYTES, 2).createWriter('files/lost.bin');
    const writeAll = async (): Promise<void> => {
      for (let i = 0; i < 4 * (PART_BYTES / (1024 * 1024)); i++)
        await writeChunk(writer.stream, randomBytes(1024 * 1024));
    };
    await expect(writeAll()).rejects.toThrow(/bucket does not exist/i);
    await expect(writer.commit()).rejects.toThrow(/bucket does not exist/i);
  });

  it('removes a folder of objects, and only that folder', async () => {
    for (const key of ['results/b1/a.seg', 'results/b1/b.seg', 'results/b1/c.seg', 'results/b10/a.seg']) {
      const writer = await store.createWriter(key);
      writer.stream.write(key);
      await writer.commit();
    }
    expect(await store.deleteFolder('results/b1/')).toBe(3);
    expect((await keysIn(s3, bucket)).filter((k) => k.startsWith('pre/results/'))).toEqual(['pre/results/b10/a.seg']);
    expect(await store.deleteFolder('results/b1/')).toBe(0);
  });

  it('fails a read of a missing object with an error, not an empty file', async () => {
    await expect(text(store.read('files/missing.bin'))).rejects.toThrow(/key does not exist|NoSuchKey/i);
  });

  it('is ready when its bucket answers, and says why not when it does not', async () => {
    await expect(store.check()).resolves.toBeUndefined();
    await expect(new S3FileStore(s3, 'no-such-bucket-here', '', PART_BYTES, 2).check()).rejects.toThrow(
      /bucket no-such-bucket-here: does not exist/,
    );
  });
});

describe('a batch on the S3 store, with its GPU worker in a process of its own', () => {
  let stack: TestStack;
  let worker: ChildUnderTest;
  let s3: S3Client;

  beforeAll(async () => {
    stack = await startTestStack({ s3: true, engines: [] });
    worker = await spawnGpuWorker(stack, inject('services').simulatorUrl);
    s3 = client();
  });
  afterAll(async () => {
    await worker.stop();
    await stack.stop();
    s3.destroy();
  });

  it('keeps every byte in the bucket and answers the same as with the local store', async () => {
    const model = inject('services').simulatorModel;
    const batch = await runBatch(stack, batchLines({ model, count: 120 }));
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 120, completed: 120, failed: 0 });
    const { ok } = await expectEachLineOnce(stack.openai, batch, 120);
    expect(ok.every((l) => l.response?.status_code === 200)).toBe(true);

    // Input and output are objects under the prefix (the results' segments went once the files were
    // written); the local folder was never used.
    const keys = await keysIn(s3, stack.name);
    expect(keys.sort()).toEqual([
      `gpu-batch/outputs/${batch.id}/output.jsonl`,
      `gpu-batch/uploads/${batch.input_file_id}`,
    ]);
    expect(keys.every((k) => k.startsWith('gpu-batch/'))).toBe(true);
    expect(await readdir(stack.config.paths.fileStoreDir)).toEqual([]);

    // Deleting the output file through the API removes its object.
    const before = keys.length;
    await stack.openai.files.delete(batch.output_file_id ?? '');
    expect((await keysIn(s3, stack.name)).length).toBe(before - 1);
  });

  it('finalizes from a hundred segments in one bucket of lines, more than the client has connections', async () => {
    const count = 100;
    const { batchId, inputKey } = await insertRunningBatch(stack, { model: 'm', count });
    // One line a flush, as a slow chunk's timer flushes: every one its own segment object of 40 KB.
    for (let line = 1; line <= count; line++)
      await persistResults(stack.db, stack.store, batchId, [answeredRow(batchId, line, { pad: 'x'.repeat(40_000) })]);
    const control = createControlActivities({ db: stack.db, store: stack.store, config: stack.config, log: stack.log });
    const summary = await control.finalizeBatch({ batchId, inputKey, outcome: 'completed' });
    expect(summary).toMatchObject({ status: 'completed', completed: count, failed: 0 });
    const output = await fileLines(stack.openai, summary.outputFileId);
    expect(output.map((l) => l.custom_id)).toEqual(expectedIds(count));
    expect((await keysIn(s3, stack.name)).filter((k) => k.includes('/results/'))).toEqual([]);
  }, 60_000);

  it('reports the bucket in readiness', async () => {
    const ready = (await (await fetch(`${stack.apiUrl}/readyz`)).json()) as { checks: Record<string, { ok: boolean }> };
    expect(ready.checks.file_store?.ok).toBe(true);
  });
});
