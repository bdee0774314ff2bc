// Files: uploads streamed straight to the file store (a 200 MB upload never sits in memory),
// and the file objects OpenAI's SDK expects.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import busboy from 'busboy';
import type { Config } from '../lib/config.js';
import type { Db } from '../lib/db.js';
import type { FileStore, FileWriter } from '../lib/file-store.js';
import { isWellFormedId, newId, nowSeconds } from '../lib/ids.js';
import { uploadFieldsSchema, type FileObject } from '../schema/openai.js';
import { LIVE_BATCH_STATES, type FileRow } from '../schema/tables.js';
import { ApiError, fromZodError, notFound } from './errors.js';
import type { Project } from './keys.js';

export interface FileDeps {
  db: Db;
  store: FileStore;
  config: Config;
}

export function toFileObject(row: FileRow): FileObject {
  return {
    id: row.id,
    object: 'file',
    bytes: row.bytes,
    created_at: row.created_at,
    expires_at: row.expires_at,
    filename: row.filename,
    purpose: row.purpose,
    status: row.status,
    status_details: row.status_details,
  };
}

interface ParsedUpload {
  fields: Map<string, string>;
  file?: { filename: string; truncated: boolean; writer: FileWriter };
}

async function parseMultipart(request: Request, deps: FileDeps, storageKey: string): Promise<ParsedUpload> {
  const contentType = request.headers.get('content-type') ?? '';
  if (request.body === null) throw new ApiError(400, 'The request has no body.', 'invalid_request');
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': contentType },
      // File names are UTF-8 in practice, whatever the multipart RFC's latin1 default says.
      defParamCharset: 'utf8',
      limits: { files: 1, fields: 20, fieldSize: 4096, fileSize: deps.config.files.maxUploadBytes },
    });
  } catch (err) {
    throw new ApiError(400, `Malformed multipart request: ${(err as Error).message}`, 'invalid_request');
  }
  const result: ParsedUpload = { fields: new Map() };
  const writes: Promise<void>[] = [];
  parser.on('field', (name, value) => result.fields.set(name, value));
  parser.on('file', (name, stream, info) => {
    if (name !== 'file' || result.file !== undefined) {
      stream.resume();
      return;
    }
    const write = (async () => {
      const writer = await deps.store.createWriter(storageKey);
      result.file = { filename: info.filename ?? 'upload', truncated: false, writer };
      await pipeline(stream, writer.stream);
      // busboy stops at the size limit and marks the stream; the caller refuses such a file.
      result.file.truncated = stream.truncated === true;
    })();
    // Settled below in every case; until then a failure must not count as unhandled.
    write.catch(() => undefined);
    writes.push(write);
  });
  let failure: unknown;
  try {
    await pipeline(Readable.fromWeb(request.body as WebReadableStream<Uint8Array>), parser);
  } catch (err) {
    failure = err;
  }
  // Wait for the file's own write whatever happened (a client that hangs up fails both).
  for (const outcome of await Promise.allSettled(writes)) if (outcome.status === 'rejected') failure ??= outcome.reason;
  if (failure !== undefined) {
    await result.file?.writer.abort();
    throw new ApiError(400, `Malformed or interrupted multipart request: ${(failure as Error).message}`, 'invalid_request');
  }
  return result;
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${Math.round(n / (1024 * 1024))} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n}-byte`;
}

/** POST /v1/files: stream the upload into the store, then record it. */
export async function createFile(deps: FileDeps, project: Project, request: Request): Promise<FileRow> {
  const contentType = request.headers.get('content-type') ?? '';
  if (!contentType.toLowerCase().startsWith('multipart/form-data')) {
    throw new ApiError(415, "Files are uploaded as multipart/form-data with fields 'file' and 'purpose'.", 'unsupported_media_type');
  }
  const id = newId('file-');
  const storageKey = `uploads/${id}`;
  const upload = await parseMultipart(request, deps, storageKey);
  const file = upload.file;
  try {
    const sent = Object.fromEntries(upload.fields);
    const fields = uploadFieldsSchema.safeParse(sent);
    if (!fields.success) throw fromZodError(fields.error, sent);
    if (file === undefined) throw new ApiError(400, "Missing required parameter: 'file'.", 'missing_required_parameter', 'file');
    if (file.truncated) {
      throw new ApiError(413, `The file is larger than the ${formatBytes(deps.config.files.maxUploadBytes)} limit for batch input files.`, 'file_too_large', 'file');
    }
    if (file.filename.includes('\u0000')) throw new ApiError(400, 'The file name contains a NUL character.', 'invalid_value', 'file');
    if (!file.filename.toLowerCase().endsWith('.jsonl')) {
      throw new ApiError(400, `Invalid file format for batch: '${file.filename}'. Batch input files must be .jsonl.`, 'invalid_file_format', 'file');
    }
    const lifetime = fields.data['expires_after[seconds]'] ?? deps.config.files.inputLifetimeSeconds;
    const { bytes } = await file.writer.commit();
    return await recordInputFile(deps.db, project, { id, filename: file.filename, bytes, storageKey, lifetime });
  } catch (err) {
    await file?.writer.abort();
    await deps.store.delete(storageKey);
    throw err;
  }
}

function recordInputFile(
  db: Db,
  project: Project,
  file: { id: string; filename: string; bytes: number; storageKey: string; lifetime: number },
): Promise<FileRow> {
  const now = nowSeconds();
  return db
    .insertInto('files')
    .values({
      id: file.id,
      project_id: project.id,
      filename: file.filename,
      purpose: 'batch',
      bytes: file.bytes,
      status: 'processed',
      status_details: null,
      created_at: now,
      expires_at: now + file.lifetime,
      storage_key: file.storageKey,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** A batch input file written by the server itself (e.g. the failed lines of a batch to retry). */
export async function createDerivedFile(
  deps: FileDeps,
  project: Project,
  filename: string,
  write: (writer: FileWriter) => Promise<void>,
): Promise<FileRow> {
  const id = newId('file-');
  const storageKey = `uploads/${id}`;
  const writer = await deps.store.createWriter(storageKey);
  try {
    await write(writer);
    const { bytes } = await writer.commit();
    return await recordInputFile(deps.db, project, { id, filename, bytes, storageKey, lifetime: deps.config.files.inputLifetimeSeconds });
  } catch (err) {
    await writer.abort();
    await deps.store.delete(storageKey);
    throw err;
  }
}

/** A live (unexpired) file of this project; another project's id is simply not found. */
export async function getFile(db: Db, project: Project, id: string): Promise<FileRow> {
  if (!isWellFormedId(id)) throw notFound('File', id.slice(0, 200));
  const row = await db
    .selectFrom('files')
    .selectAll()
    .where('id', '=', id)
    .where('project_id', '=', project.id)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', nowSeconds())]))
    .executeTakeFirst();
  if (row === undefined) throw notFound('File', id);
  return row;
}

export interface FileListQuery {
  after?: string | undefined;
  limit: number;
  order: 'asc' | 'desc';
  purpose?: string | undefined;
}

export async function listFiles(db: Db, project: Project, q: FileListQuery): Promise<{ rows: FileRow[]; hasMore: boolean }> {
  let query = db
    .selectFrom('files')
    .selectAll()
    .where('project_id', '=', project.id)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', nowSeconds())]));
  if (q.purpose !== undefined) query = query.where('purpose', '=', q.purpose as FileRow['purpose']);
  if (q.after !== undefined) {
    if (!isWellFormedId(q.after)) throw new ApiError(400, "Invalid value for 'after': not a file id.", 'invalid_value', 'after');
    const cursor = await db.selectFrom('files').select('seq').where('id', '=', q.after).where('project_id', '=', project.id).executeTakeFirst();
    if (cursor === undefined) throw new ApiError(400, `Invalid value for 'after': no file ${q.after}.`, 'invalid_value', 'after');
    query = query.where('seq', q.order === 'desc' ? '<' : '>', cursor.seq);
  }
  const rows = await query.orderBy('seq', q.order).limit(q.limit + 1).execute();
  return { rows: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

export async function deleteFile(deps: FileDeps, project: Project, id: string): Promise<void> {
  const row = await getFile(deps.db, project, id);
  const user = await deps.db
    .selectFrom('batches')
    .select('id')
    .where('input_file_id', '=', row.id)
    .where('status', 'in', LIVE_BATCH_STATES)
    .executeTakeFirst();
  // Its batch still reads it: deleting it now would lose requests.
  if (user !== undefined) {
    throw new ApiError(409, `The file is the input of batch ${user.id}, which is still running; delete it once the batch has finished.`, 'file_in_use', 'file_id');
  }
  await deps.db.deleteFrom('files').where('id', '=', row.id).execute();
  await deps.store.delete(row.storage_key);
}

/** Removes files past their expiry (except inputs of running batches), bytes and all. */
export async function sweepExpiredFiles(deps: FileDeps): Promise<number> {
  const expired = await deps.db
    .deleteFrom('files')
    .where('expires_at', '<=', nowSeconds())
    .where((eb) =>
      eb.not(
        eb.exists(
          eb.selectFrom('batches').select('batches.id').whereRef('batches.input_file_id', '=', 'files.id').where('batches.status', 'in', LIVE_BATCH_STATES),
        ),
      ),
    )
    .returning(['id', 'storage_key'])
    .execute();
  for (const file of expired) await deps.store.delete(file.storage_key);
  return expired.length;
}
