// Where file bytes live: uploaded inputs and the output/error files a batch produces. The database
// holds the metadata; this holds the bytes. A local folder by default; an S3-compatible bucket for
// deployments across hosts.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

import type { Config } from './config.js';

export interface ByteRange {
  start: number;
  /** Exclusive; omit to read to the end. */
  end?: number;
  /**
   * A local file is read this many bytes at a time (64 KiB otherwise): a range read whole in one
   * piece is one system call, where each costs most of a millisecond on a busy machine. S3 streams
   * what the network gives.
   */
  pieceBytes?: number;
}

export interface FileWriter {
  /** Write the bytes here, honouring backpressure. */
  readonly stream: Writable;
  /** Ends the stream if needed and makes the file visible under its key, all at once. */
  commit(): Promise<{ bytes: number }>;
  /** Discards what was written. */
  abort(): Promise<void>;
}

/** A part of an upload, as its writer records it. */
export interface UploadedPart {
  /** 1, 2, ... in the object's order. */
  number: number;
  /** S3's ETag of the part (empty on the local store). */
  etag: string;
  bytes: number;
}

/**
 * An upload gone under its writer (aborted, swept, completed by someone else, or a part overwritten by
 * another writer): what was written to it is lost, and the object must be written again from the start.
 */
export class UploadLostError extends Error {}

export interface FileStore {
  createWriter(key: string): Promise<FileWriter>;
  /**
   * An object written in parts over many calls, even by many processes, that appears whole only when
   * completed: the caller records the upload's id and each part it wrote, and resumes from them.
   * Parts but the last must be at least `minPartBytes` long.
   */
  startUpload(key: string): Promise<string>;
  /** Writes part `number`, which starts `offset` bytes into the object (the bytes of the parts before it). */
  writePart(
    key: string,
    uploadId: string,
    part: { number: number; offset: number },
    data: readonly Uint8Array[],
  ): Promise<UploadedPart>;
  /** Makes the parts the object, all at once; an upload already completed with these parts answers its size again. */
  completeUpload(key: string, uploadId: string, parts: readonly UploadedPart[]): Promise<{ bytes: number }>;
  abortUpload(key: string, uploadId: string): Promise<void>;
  readonly minPartBytes: number;
  read(key: string, range?: ByteRange): Readable;
  size(key: string): Promise<number | undefined>;
  delete(key: string): Promise<void>;
  /** Removes every object whose key is under this folder (`results/batch_x/`); returns how many. */
  deleteFolder(folder: string): Promise<number>;
  /** Throws unless the store can be reached: the folder exists and is writable, or the bucket answers (readiness). */
  check(): Promise<void>;
  /**
   * Removes writes never committed or aborted (their process died) older than this, except the uploads
   * in `keep` (still being written); returns how many.
   */
  sweepPartial(olderThanMs: number, keep?: ReadonlySet<string>): Promise<number>;
}

/** A stream's error so far; a function, so a check after an await is not narrowed away. */
function errorOf(stream: Writable): Error | null {
  return stream.errored;
}

function isDestroyed(stream: Writable): boolean {
  return stream.destroyed;
}

/** An object (or a range of it) read whole into memory: for small objects only. */
export async function readBytes(store: FileStore, key: string, range?: ByteRange): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of store.read(key, range)) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** Writes a small object whole, or nothing. */
export async function writeBytes(store: FileStore, key: string, data: string | Uint8Array): Promise<void> {
  const writer = await store.createWriter(key);
  try {
    await writeChunk(writer.stream, data);
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/**
 * Writes one chunk, waiting when the stream asks for a pause. A stream that is torn down while we wait
 * (a failed upload) never drains, so closing ends the wait too and the write fails with the reason.
 */
export async function writeChunk(stream: Writable, chunk: string | Uint8Array): Promise<void> {
  await writeChunks(stream, [chunk]);
}

/**
 * Writes several chunks as one write (a single writev on a local file: no copy to join them), then
 * waits as writeChunk does.
 */
export async function writeChunks(stream: Writable, chunks: readonly (string | Uint8Array)[]): Promise<void> {
  const failed = errorOf(stream);
  if (failed !== null) throw failed;
  if (stream.destroyed) throw new Error('the file store stopped accepting data');
  if (chunks.length > 1) stream.cork();
  let more = true;
  for (const chunk of chunks) more = stream.write(chunk);
  if (chunks.length > 1) stream.uncork();
  if (more && !stream.writableNeedDrain) return;
  const stop = new AbortController();
  try {
    await Promise.race([
      once(stream, 'drain', { signal: stop.signal }),
      once(stream, 'close', { signal: stop.signal }),
    ]);
  } finally {
    stop.abort();
  }
  if (isDestroyed(stream)) throw errorOf(stream) ?? new Error('the file store stopped accepting data');
}

const byteLength = (data: readonly Uint8Array[]): number => data.reduce((sum, d) => sum + d.length, 0);

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

export class LocalFileStore implements FileStore {
  readonly minPartBytes = 0;

  constructor(private readonly root: string) {}

  /** An upload is a partial file written at each part's offset, renamed to its key when completed. */
  private uploadPath(key: string, uploadId: string): string {
    if (!/^[0-9a-f]+$/.test(uploadId)) throw new UploadLostError(`invalid upload id ${uploadId}`);
    return `${this.pathOf(key)}.partial-${uploadId}`;
  }

  async startUpload(key: string): Promise<string> {
    const uploadId = randomBytes(8).toString('hex');
    await mkdir(path.dirname(this.pathOf(key)), { recursive: true });
    await writeFile(this.uploadPath(key, uploadId), '', { flag: 'wx' });
    return uploadId;
  }

  async writePart(
    key: string,
    uploadId: string,
    part: { number: number; offset: number },
    data: readonly Uint8Array[],
  ): Promise<UploadedPart> {
    const handle = await open(this.uploadPath(key, uploadId), 'r+').catch((err: unknown) => {
      throw isMissing(err) ? new UploadLostError(`upload ${uploadId} of ${key} is gone`) : err;
    });
    try {
      let at = part.offset;
      let rest = data.filter((d) => d.length > 0);
      while (rest.length > 0) {
        // A write may take fewer bytes than it was given: go on from where it stopped.
        let { bytesWritten } = await handle.writev(rest, at);
        at += bytesWritten;
        const left: Uint8Array[] = [];
        for (const d of rest) {
          if (bytesWritten >= d.length) bytesWritten -= d.length;
          else {
            left.push(d.subarray(bytesWritten));
            bytesWritten = 0;
          }
        }
        rest = left;
      }
      // On disk before the caller records it: a recorded part survives a crash of the machine.
      await handle.datasync();
    } finally {
      await handle.close();
    }
    return { number: part.number, etag: '', bytes: byteLength(data) };
  }

  async completeUpload(key: string, uploadId: string, parts: readonly UploadedPart[]): Promise<{ bytes: number }> {
    const bytes = parts.reduce((sum, p) => sum + p.bytes, 0);
    const partial = this.uploadPath(key, uploadId);
    let handle;
    try {
      handle = await open(partial, 'r+');
    } catch (err) {
      if (!isMissing(err)) throw err;
      // Completed already (a retry after the rename), or lost.
      if ((await this.size(key)) === bytes) return { bytes };
      throw new UploadLostError(`upload ${uploadId} of ${key} is gone`);
    }
    try {
      // Longer when a part was written again shorter (the last one, by a finalize that took over).
      if ((await handle.stat()).size < bytes) throw new UploadLostError(`upload ${uploadId} of ${key} is short`);
      await handle.truncate(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, this.pathOf(key));
    return { bytes };
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    await rm(this.uploadPath(key, uploadId), { force: true });
  }

  private pathOf(key: string): string {
    if (!/^[A-Za-z0-9._/-]+$/.test(key) || key.split('/').some((p) => p === '..' || p === '')) {
      throw new Error(`invalid file store key: ${key}`);
    }
    return path.join(this.root, key);
  }

  async createWriter(key: string): Promise<FileWriter> {
    const target = this.pathOf(key);
    const partial = `${target}.partial-${randomBytes(6).toString('hex')}`;
    await mkdir(path.dirname(target), { recursive: true });
    const stream = createWriteStream(partial);
    // A write error (disk full) must surface on the next write or at commit, never crash the process.
    stream.on('error', () => undefined);
    return {
      stream,
      commit: async () => {
        const before = errorOf(stream);
        if (before !== null) throw before;
        if (!stream.writableEnded) stream.end();
        if (!stream.closed) await once(stream, 'close');
        const after = errorOf(stream);
        if (after !== null) throw after;
        // fsync before the rename: a committed file survives a crash, a partial one never appears.
        const handle = await open(partial, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(partial, target);
        return { bytes: (await stat(target)).size };
      },
      abort: async () => {
        stream.destroy();
        await rm(partial, { force: true });
      },
    };
  }

  read(key: string, range?: ByteRange): Readable {
    const options: { start?: number; end?: number; highWaterMark?: number } = {};
    if (range !== undefined) {
      options.start = range.start;
      if (range.end !== undefined) {
        if (range.end <= range.start) return Readable.from([]);
        options.end = range.end - 1;
      }
      if (range.pieceBytes !== undefined) options.highWaterMark = range.pieceBytes;
    }
    return createReadStream(this.pathOf(key), options);
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await stat(this.pathOf(key))).size;
    } catch {
      return undefined;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async deleteFolder(folder: string): Promise<number> {
    const dir = this.pathOf(folder.replace(/\/$/, ''));
    const names = await readdir(dir, { recursive: true }).catch(() => []);
    await rm(dir, { recursive: true, force: true });
    return names.length;
  }

  async check(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await access(this.root, constants.W_OK);
  }

  async sweepPartial(olderThanMs: number, keep?: ReadonlySet<string>): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.root, { recursive: true });
    } catch {
      return 0;
    }
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const name of names) {
      const partial = PARTIAL.exec(name);
      if (partial === null || keep?.has(partial[1] ?? '') === true) continue;
      const file = path.join(this.root, name);
      const info = await stat(file).catch(() => undefined);
      if (info === undefined || info.mtimeMs > cutoff) continue;
      await rm(file, { force: true });
      removed++;
    }
    return removed;
  }
}

/** The name a local write has until it is committed. */
const PARTIAL = /\.partial-([0-9a-f]+)$/;

/**
 * Any S3-compatible object store (AWS S3, MinIO, Ceph, R2...), for deployments across hosts. Writes are
 * multipart uploads fed as the data comes, so a 200 MB file never sits in memory, and an object
 * appears only when its upload completes, like the local store's rename.
 */
/** S3's answer when an upload is not (or no longer) there, or a part is not the one recorded. */
function isLostUpload(err: unknown): boolean {
  const name = (err as { name?: string; Code?: string }).name ?? (err as { Code?: string }).Code;
  return name === 'NoSuchUpload' || name === 'InvalidPart' || name === 'InvalidPartOrder';
}

export class S3FileStore implements FileStore {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly partBytes: number,
    private readonly partConcurrency: number,
  ) {}

  /** S3 refuses a part under 5 MiB unless it is the last. */
  readonly minPartBytes = 5 * 1024 * 1024;

  private keyOf(key: string): string {
    return `${this.prefix}${key}`;
  }

  async startUpload(key: string): Promise<string> {
    const res = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
    if (res.UploadId === undefined) throw new Error(`the store gave no upload id for ${key}`);
    return res.UploadId;
  }

  async writePart(
    key: string,
    uploadId: string,
    part: { number: number; offset: number },
    data: readonly Uint8Array[],
  ): Promise<UploadedPart> {
    const body = Buffer.concat(data);
    try {
      const res = await this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          UploadId: uploadId,
          PartNumber: part.number,
          Body: body,
          ContentLength: body.length,
        }),
      );
      return { number: part.number, etag: res.ETag ?? '', bytes: body.length };
    } catch (err) {
      if (isLostUpload(err)) throw new UploadLostError(`upload ${uploadId} of ${key} is gone`, { cause: err });
      throw err;
    }
  }

  async completeUpload(key: string, uploadId: string, parts: readonly UploadedPart[]): Promise<{ bytes: number }> {
    const bytes = parts.reduce((sum, p) => sum + p.bytes, 0);
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.number, ETag: p.etag })) },
        }),
      );
      return { bytes };
    } catch (err) {
      if (!isLostUpload(err)) throw err;
      // Completed already (a retry after it was), or lost.
      if (err instanceof Error && err.name === 'NoSuchUpload' && (await this.size(key)) === bytes) return { bytes };
      throw new UploadLostError(`upload ${uploadId} of ${key} cannot be completed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.keyOf(key), UploadId: uploadId }),
      );
    } catch (err) {
      if (!isLostUpload(err)) throw err;
    }
  }

  createWriter(key: string): Promise<FileWriter> {
    // The upload reads its own stream: when it fails it stops reading and tears that one down with a
    // bare AbortError. The writer's stream is torn down with the upload's real reason instead, so the
    // next write (or a wait for drain) fails saying why, rather than hanging. That error is reported
    // there and at commit, so the stream's own 'error' event must not crash the process.
    const stream = new PassThrough();
    const body = new PassThrough();
    stream.pipe(body);
    stream.on('error', () => undefined);
    body.on('error', () => undefined);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.keyOf(key), Body: body },
      partSize: this.partBytes,
      queueSize: this.partConcurrency,
    });
    const done = upload.done();
    done.catch((err: unknown) => stream.destroy(err instanceof Error ? err : new Error(String(err))));
    return Promise.resolve({
      stream,
      commit: async () => {
        if (!stream.writableEnded) stream.end();
        await done;
        return { bytes: (await this.size(key)) ?? 0 };
      },
      abort: async () => {
        // Only this writer's upload goes: the key itself may hold what an earlier writer published.
        stream.destroy();
        body.destroy();
        await upload.abort().catch(() => undefined);
      },
    });
  }

  read(key: string, range?: ByteRange): Readable {
    if (range?.end !== undefined && range.end <= range.start) return Readable.from([]);
    const Range =
      range === undefined ? undefined : `bytes=${range.start}-${range.end === undefined ? '' : range.end - 1}`;
    const { client, bucket } = this;
    const objectKey = this.keyOf(key);
    return Readable.from(
      (async function* () {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey, Range }));
        if (res.Body === undefined) return;
        yield* res.Body as AsyncIterable<Uint8Array>;
      })(),
      { objectMode: false },
    );
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) })))
        .ContentLength;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
  }

  async deleteFolder(folder: string): Promise<number> {
    const prefix = this.keyOf(folder.endsWith('/') ? folder : `${folder}/`);
    let removed = 0;
    // Listed again from the start each round: what was deleted is gone from the listing.
    for (let round = 0; round < 10_000; round++) {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix }));
      const keys = (res.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
      if (keys.length === 0) break;
      await Promise.all(keys.map((Key) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }))));
      removed += keys.length;
    }
    return removed;
  }

  async sweepPartial(olderThanMs: number, keep?: ReadonlySet<string>): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (let page = 0; page < 100; page++) {
      const res = await this.client.send(
        // Listed whole and filtered here: MinIO answers a prefix that is not a whole key with nothing
        // (minio/minio#20989), which would leave every abandoned upload in place.
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const upload of res.Uploads ?? []) {
        if (
          upload.Key?.startsWith(this.prefix) !== true ||
          upload.UploadId === undefined ||
          keep?.has(upload.UploadId) === true ||
          (upload.Initiated?.getTime() ?? Date.now()) > cutoff
        )
          continue;
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }),
        );
        removed++;
      }
      if (res.IsTruncated !== true) break;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
    return removed;
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      throw new Error(
        `bucket ${this.bucket}: ${status === 404 ? 'does not exist' : status === 403 ? 'access denied' : (err as Error).message}`,
        { cause: err },
      );
    }
  }
}

export function createFileStore(config: Config): FileStore {
  const { s3 } = config.files;
  if (config.files.store === 'local') return new LocalFileStore(config.paths.fileStoreDir);
  const client = new S3Client({
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    // Without these a store that stops answering would hold a read or a write forever.
    requestHandler: { connectionTimeout: s3.connectTimeoutMs, requestTimeout: s3.requestTimeoutMs },
    maxAttempts: 3,
    ...(s3.endpoint !== undefined ? { endpoint: s3.endpoint } : {}),
    ...(s3.accessKeyId !== undefined && s3.secretAccessKey !== undefined
      ? { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } }
      : {}),
  });
  if (s3.bucket === undefined) throw new Error('FILE_STORE=s3 needs S3_BUCKET');
  return new S3FileStore(client, s3.bucket, s3.prefix, s3.partBytes, s3.uploadConcurrency);
}
