// What FileStore's uploads in parts promise, for each store: the object appears whole only when
// completed, a part written again (a retry) changes nothing, completing twice answers the same, an
// upload gone says so, and the sweeper of abandoned writes spares the uploads it is told to keep.
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';

import { UploadLostError, type FileStore } from '../../lib/file-store.js';

async function bytesOf(store: FileStore, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of store.read(key)) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** Defines the contract's tests; `store()` answers the store under test (a new one each call: another process). */
export function uploadContract(store: () => FileStore): void {
  it('writes an object in parts over many calls, visible only once completed, whatever was written twice', async () => {
    const key = `outputs/${randomBytes(4).toString('hex')}/output.jsonl`;
    const first = randomBytes(Math.max(store().minPartBytes, 1000));
    const second = randomBytes(Math.max(store().minPartBytes, 2000));
    const last = randomBytes(300);
    const uploadId = await store().startUpload(key);
    const p1 = await store().writePart(key, uploadId, { number: 1, offset: 0 }, [
      first.subarray(0, 10),
      first.subarray(10),
    ]);
    const p2 = await store().writePart(key, uploadId, { number: 2, offset: first.length }, [second]);
    // A retry writes part 2 again, and the last part first longer (a zombie's) then as recorded.
    const again = await store().writePart(key, uploadId, { number: 2, offset: first.length }, [second]);
    expect(again).toEqual(p2);
    await store().writePart(key, uploadId, { number: 3, offset: first.length + second.length }, [last, last]);
    const p3 = await store().writePart(key, uploadId, { number: 3, offset: first.length + second.length }, [last]);
    expect(await store().size(key)).toBeUndefined();
    const total = first.length + second.length + last.length;
    expect(await store().completeUpload(key, uploadId, [p1, p2, p3])).toEqual({ bytes: total });
    expect((await bytesOf(store(), key)).equals(Buffer.concat([first, second, last]))).toBe(true);
    // Completed again (a retry that did not see it done): the same answer, the same object.
    expect(await store().completeUpload(key, uploadId, [p1, p2, p3])).toEqual({ bytes: total });
    expect(await store().size(key)).toBe(total);
  });

  it('says an upload is lost when it was aborted, to a write and to completing it', async () => {
    const key = `outputs/${randomBytes(4).toString('hex')}/errors.jsonl`;
    const uploadId = await store().startUpload(key);
    const part = await store().writePart(key, uploadId, { number: 1, offset: 0 }, [Buffer.from('a line\n')]);
    await store().abortUpload(key, uploadId);
    await store().abortUpload(key, uploadId); // twice: nothing more to do
    await expect(
      store().writePart(key, uploadId, { number: 2, offset: 7 }, [Buffer.from('x\n')]),
    ).rejects.toBeInstanceOf(UploadLostError);
    await expect(store().completeUpload(key, uploadId, [part])).rejects.toBeInstanceOf(UploadLostError);
    expect(await store().size(key)).toBeUndefined();
  });

  it('spares the uploads it is told to keep from the sweeper of abandoned writes', async () => {
    const folder = `outputs/${randomBytes(4).toString('hex')}`;
    const kept = await store().startUpload(`${folder}/output.jsonl`);
    const abandoned = await store().startUpload(`${folder}/errors.jsonl`);
    await new Promise((r) => setTimeout(r, 20));
    expect(await store().sweepPartial(0, new Set([kept]))).toBeGreaterThanOrEqual(1);
    const part = await store().writePart(`${folder}/output.jsonl`, kept, { number: 1, offset: 0 }, [
      Buffer.from('kept\n'),
    ]);
    expect(await store().completeUpload(`${folder}/output.jsonl`, kept, [part])).toEqual({ bytes: 5 });
    await expect(
      store().writePart(`${folder}/errors.jsonl`, abandoned, { number: 1, offset: 0 }, [Buffer.from('x\n')]),
    ).rejects.toBeInstanceOf(UploadLostError);
  });
}
