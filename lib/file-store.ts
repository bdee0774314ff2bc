// Where file bytes live: uploaded inputs and the output/error files a batch produces. The database
// holds the metadata; this holds the bytes. The local folder is the default; other stores
// implement the same interface.
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';

export interface ByteRange {
  start: number;
  /** Exclusive; omit to read to the end. */
  end?: number;
}

export interface FileWriter {
  /** Write the bytes here, honouring backpressure. */
  readonly stream: Writable;
  /** Ends the stream if needed and makes the file visible under its key, all at once. */
  commit(): Promise<{ bytes: number }>;
  /** Discards what was written. */
  abort(): Promise<void>;
}

export interface FileStore {
  createWriter(key: string): Promise<FileWriter>;
  read(key: string, range?: ByteRange): Readable;
  size(key: string): Promise<number | undefined>;
  delete(key: string): Promise<void>;
}

/** Writes one chunk, waiting when the stream asks for a pause. */
/** A stream's error so far; a function, so a check after an await is not narrowed away. */
function errorOf(stream: Writable): Error | null {
  return stream.errored;
}

export async function writeChunk(stream: Writable, chunk: string | Uint8Array): Promise<void> {
  const failed = errorOf(stream);
  if (failed !== null) throw failed;
  if (!stream.write(chunk)) await once(stream, 'drain');
}

export class LocalFileStore implements FileStore {
  constructor(private readonly root: string) {}

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
    const options: { start?: number; end?: number } = {};
    if (range !== undefined) {
      options.start = range.start;
      if (range.end !== undefined) {
        if (range.end <= range.start) return Readable.from([]);
        options.end = range.end - 1;
      }
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
}

export function createFileStore(dir: string): FileStore {
  return new LocalFileStore(dir);
}
