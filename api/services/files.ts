// Files: uploads streamed straight to the file store (a 200 MB upload never sits in memory),
// and the file objects OpenAI's SDK expects.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';

import { asError } from '../../lib/as-error.js';
import type { FileWriter } from '../../lib/file-store.js';
import { isWellFormedId, newId, nowSeconds } from '../../lib/ids.js';
import { isStorableText, safeText } from '../../lib/sanitize.js';
import { formatBytes } from '../../lib/units.js';
import type { Db } from '../../schema/db.js';
import { LIVE_BATCH_STATES, type FileRow } from '../../schema/tables.js';
import { uploadFieldsSchema, type FileObject } from '../../wire/openai.js';
import type { ApiDeps } from '../deps.js';
import {
  BadRequestError,
  ConflictError,
  fromZodError,
  notFound,
  NotFoundError,
  PayloadTooLargeError,
  serviceUnavailable,
  UnsupportedMediaTypeError,
} from '../errors.js';
import { chunksOf } from '../request-body.js';
import { download, type Download } from './download.js';
import type { Project } from './keys.js';
import { cursorSeq, toPage, type Page } from './pages.js';

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

async function parseMultipart(
  request: Request,
  deps: Pick<ApiDeps, 'db' | 'store' | 'config' | 'log'>,
  storageKey: string,
): Promise<ParsedUpload> {
  const contentType = request.headers.get('content-type') ?? '';
  if (request.body === null) throw new BadRequestError('The request has no body.', { code: 'invalid_request' });
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': contentType },
      // File names are UTF-8 in practice, whatever the multipart RFC's latin1 default says.
      defParamCharset: 'utf8',
      limits: { files: 1, fields: 20, fieldSize: 4096, fileSize: deps.config.files.maxUploadBytes },
    });
  } catch (err) {
    throw new BadRequestError(`Malformed multipart request: ${(err as Error).message}`, { code: 'invalid_request' });
  }
  const result: ParsedUpload = { fields: new Map() };
  const writes: Promise<void>[] = [];
  let partFailure: Error | undefined;
  // The file store's own failure (no space, S3 away): not the client's fault, and worth a retry.
  let storeFailure: Error | undefined;
  // On a malformed part header busboy emits 'error' from inside its write (mscdex/busboy#377, open) and
  // goes on parsing the chunk in hand: a part it opens then is never ended nor destroyed, and the upload
  // waited for it forever. Each part is kept here to be ended with the form's failure.
  const partStreams: Readable[] = [];
  parser.on('field', (name, value) => result.fields.set(name, value));
  parser.on('file', (name, stream, info) => {
    // Every part's stream fails with the form ("Unexpected end of form" when the body is cut); its
    // error is the form's, reported once below, and must never go unheard (that ends the process).
    stream.on('error', (err: Error) => {
      partFailure ??= err;
    });
    partStreams.push(stream);
    // A part opened after the form failed is not stored: the client gets the form's 400, not the store's trouble.
    if (name !== 'file' || result.file !== undefined || parser.destroyed) {
      stream.resume();
      return;
    }
    const write = (async () => {
      const writer = await deps.store.createWriter(storageKey).catch((err: unknown) => {
        storeFailure ??= asError(err);
        // Nothing will read this part now: drain it, or the form (and the request) never ends.
        stream.resume();
        throw err;
      });
      // A cut body reaches the writer too, after the part's own error; only an error before that is the store's.
      writer.stream.on('error', (err: Error) => {
        if (partFailure === undefined) storeFailure ??= err;
      });
      result.file = { filename: info.filename ?? 'upload', truncated: false, writer };
      await pipeline(stream, writer.stream);
      // busboy stops at the size limit and marks the stream; the caller refuses such a file.
      result.file.truncated = stream.truncated === true;
    })();
    // Settled below in every case; until then a failure must not count as unhandled. When the store
    // failed, the form is ended here: nothing would read the rest of the body.
    write.catch(() => {
      if (storeFailure !== undefined) parser.destroy(storeFailure);
    });
    writes.push(write);
  });
  let failure: unknown;
  const reader: ReadableStreamDefaultReader<Uint8Array> = request.body.getReader();
  try {
    await pipeline(Readable.from(chunksOf(reader), { objectMode: false }), parser);
  } catch (err) {
    failure = err;
    for (const stream of partStreams) if (!stream.readableEnded) stream.destroy(asError(err));
  }
  // Wait for the file's own write whatever happened (a client that hangs up fails both).
  for (const outcome of await Promise.allSettled(writes)) if (outcome.status === 'rejected') failure ??= outcome.reason;
  failure ??= partFailure;
  if (storeFailure === undefined && failure === undefined) return result;
  // What the form left unread is heard out before the answer (middleware/unread-body.ts). No read is
  // pending (the pipeline settled only once its source had stopped); if one were, the middleware
  // would find the body locked and the answer would close the connection.
  try {
    reader.releaseLock();
  } catch {
    // A reader that cannot be released leaves the body locked: handled as above.
  }
  await result.file?.writer.abort().catch((err: unknown) => {
    deps.log.warn({ err: asError(err).message }, 'a failed upload could not be removed; the sweep will');
  });
  if (storeFailure !== undefined) {
    deps.log.error({ err: storeFailure.message }, 'the file store failed during an upload');
    throw serviceUnavailable('The file store');
  }
  throw new BadRequestError(`Malformed or interrupted multipart request: ${safeText(asError(failure).message)}`, {
    code: 'invalid_request',
  });
}

/** Longer names are refused: a name is shown in listings and headers, not a place to store data. */
const MAX_FILENAME_CHARS = 255;

/** "the 200.0 MB limit", "the 512-byte limit". */
function limitSize(n: number): string {
  return n < 1024 ? `${n}-byte` : formatBytes(n);
}

/**
 * POST /v1/files: stream the upload into the store, then record it. It takes the log because the file
 * store's failures are told to the client only as a 503.
 */
export async function createFile(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config' | 'log'>,
  project: Project,
  request: Request,
): Promise<FileRow> {
  const contentType = request.headers.get('content-type') ?? '';
  if (!contentType.toLowerCase().startsWith('multipart/form-data')) {
    throw new UnsupportedMediaTypeError("Files are uploaded as multipart/form-data with fields 'file' and 'purpose'.", {
      code: 'unsupported_media_type',
    });
  }
  const id = newId('file-');
  const storageKey = `uploads/${id}`;
  const upload = await parseMultipart(request, deps, storageKey);
  const file = upload.file;
  try {
    const sent = Object.fromEntries(upload.fields);
    const fields = uploadFieldsSchema.safeParse(sent);
    if (!fields.success) throw fromZodError(fields.error, sent);
    if (file === undefined)
      throw new BadRequestError("Missing required parameter: 'file'.", {
        code: 'missing_required_parameter',
        param: 'file',
      });
    if (file.truncated) {
      throw new PayloadTooLargeError(
        `The file is larger than the ${limitSize(deps.config.files.maxUploadBytes)} limit for batch input files.`,
        { code: 'file_too_large', param: 'file' },
      );
    }
    if (!isStorableText(file.filename))
      throw new BadRequestError('The file name contains a NUL character or an unpaired surrogate.', {
        code: 'invalid_value',
        param: 'file',
      });
    if (file.filename.length > MAX_FILENAME_CHARS)
      throw new BadRequestError(`The file name is longer than ${MAX_FILENAME_CHARS} characters.`, {
        code: 'invalid_value',
        param: 'file',
      });
    if (!file.filename.toLowerCase().endsWith('.jsonl')) {
      throw new BadRequestError(
        `Invalid file format for batch: '${safeText(file.filename)}'. Batch input files must be .jsonl.`,
        { code: 'invalid_file_format', param: 'file' },
      );
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
      deleted_at: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** A batch input file written by the server itself (e.g. the failed lines of a batch to retry). */
export async function createDerivedFile(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config'>,
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
    return await recordInputFile(deps.db, project, {
      id,
      filename,
      bytes,
      storageKey,
      lifetime: deps.config.files.inputLifetimeSeconds,
    });
  } catch (err) {
    await writer.abort();
    await deps.store.delete(storageKey);
    throw err;
  }
}

/** The files of a project that the API shows: neither expired nor being removed. */
export function liveFiles(db: Db, project: Project) {
  return db
    .selectFrom('files')
    .where('project_id', '=', project.id)
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', nowSeconds())]));
}

/** A live file of this project; another project's id is simply not found. */
export async function getFile(deps: Pick<ApiDeps, 'db'>, project: Project, id: string): Promise<FileRow> {
  if (!isWellFormedId(id)) throw notFound('File', safeText(id));
  const row = await liveFiles(deps.db, project).selectAll().where('id', '=', id).executeTakeFirst();
  if (row === undefined) throw notFound('File', id);
  return row;
}

export interface FileListQuery {
  after?: string | undefined;
  limit: number;
  order: 'asc' | 'desc';
  purpose?: string | undefined;
}

export async function listFiles(deps: Pick<ApiDeps, 'db'>, project: Project, q: FileListQuery): Promise<Page<FileRow>> {
  let query = liveFiles(deps.db, project).selectAll();
  if (q.purpose !== undefined) query = query.where('purpose', '=', q.purpose as FileRow['purpose']);
  if (q.after !== undefined)
    query = query.where('seq', q.order === 'desc' ? '<' : '>', await cursorSeq(deps, project, 'files', q.after));
  const rows = await query
    .orderBy('seq', q.order)
    .limit(q.limit + 1)
    .execute();
  return toPage(rows, q.limit);
}

/** RFC 6266: an ASCII fallback plus the exact UTF-8 name, so any file name is a valid header. */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

/** The bytes of a live file; a file whose bytes are gone from the store is not found (not a body cut short). */
export async function fileContent(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config'>,
  project: Project,
  id: string,
): Promise<Download> {
  const file = await getFile(deps, project, id);
  const bytes = await deps.store.size(file.storage_key);
  if (bytes === undefined)
    throw new NotFoundError(`The content of file ${file.id} is no longer available.`, {
      code: 'file_content_unavailable',
      param: 'file_id',
    });
  return download(deps.store.read(file.storage_key), {
    'content-type': 'application/octet-stream',
    'content-length': String(bytes),
    'content-disposition': contentDisposition(file.filename),
  });
}

export async function deleteFile(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config'>,
  project: Project,
  id: string,
): Promise<void> {
  if (!isWellFormedId(id)) throw notFound('File', safeText(id));
  // The file row stays locked until it is marked, so no batch can take it as input meanwhile.
  const file = await deps.db.transaction().execute(async (trx) => {
    const row = await liveFiles(trx, project).selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
    if (row === undefined) throw notFound('File', id);
    const user = await trx
      .selectFrom('batches')
      .select('id')
      .where('input_file_id', '=', row.id)
      .where('status', 'in', LIVE_BATCH_STATES)
      .executeTakeFirst();
    // Its batch still reads it: deleting it now would lose requests.
    if (user !== undefined) {
      throw new ConflictError(
        `The file is the input of batch ${user.id}, which is still running; delete it once the batch has finished.`,
        { code: 'file_in_use', param: 'file_id' },
      );
    }
    await trx.updateTable('files').set({ deleted_at: nowSeconds() }).where('id', '=', row.id).execute();
    return row;
  });
  await removeFile(deps, file);
}

/**
 * Finishes removing a file marked deleted: what Postgres holds of its content (the dead letters of a
 * batch's error file; results keep only line numbers there), then its bytes, then its row. Each step is
 * idempotent, so a removal cut short by a crash is finished by the next sweep.
 */
export async function removeFile(
  deps: Pick<ApiDeps, 'db' | 'store' | 'config'>,
  file: Pick<FileRow, 'id' | 'storage_key' | 'purpose'>,
): Promise<void> {
  if (file.purpose === 'batch_output') {
    await deps.db
      .deleteFrom('dead_letters')
      .where('batch_id', 'in', (eb) => eb.selectFrom('batches').select('id').where('error_file_id', '=', file.id))
      .execute();
  }
  await deps.store.delete(file.storage_key);
  await deps.db.deleteFrom('files').where('id', '=', file.id).execute();
}

/** Removes files past their expiry (except inputs of running batches) and finishes removals cut short. */
export async function sweepExpiredFiles(deps: Pick<ApiDeps, 'db' | 'store' | 'config'>): Promise<number> {
  const now = nowSeconds();
  await deps.db
    .updateTable('files')
    .set({ deleted_at: now })
    .where('deleted_at', 'is', null)
    .where('expires_at', '<=', now)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('batches')
            .select('batches.id')
            .whereRef('batches.input_file_id', '=', 'files.id')
            .where('batches.status', 'in', LIVE_BATCH_STATES),
        ),
      ),
    )
    .execute();
  const marked = await deps.db
    .selectFrom('files')
    .select(['id', 'storage_key', 'purpose'])
    .where('deleted_at', 'is not', null)
    .limit(1000)
    .execute();
  for (const file of marked) await removeFile(deps, file);
  return marked.length;
}
