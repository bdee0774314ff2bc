// The output and error files of a batch, written while it runs and finished at finalize. A result, once
// persisted, never changes, so every line below what is final (the chunks that ended, and the lines
// after them that already have a result) can go to the files in input order before the batch ends:
// finalize then has only the last lines to write, whatever the size of the answers.
//
// Each file is an upload in parts (FileStore.startUpload); its row in output_drafts records the parts
// and the input line it has come to, so any call (a draft, a finalize, a retry of either after a crash)
// resumes after the last recorded part. A part is written before it is recorded; a part written again
// by a retry or by a zombie attempt holds the same lines (on the local store, the same bytes at the same
// offset), and anything that does not add up (an upload gone, a part overwritten) makes finalize start
// the files again from the first line.
import { randomBytes } from 'node:crypto';

import type { Config } from '../lib/config.js';
import { UploadLostError, writeChunks, type FileStore, type UploadedPart } from '../lib/file-store.js';
import type { Logger } from '../lib/logger.js';
import { jsonb, type Db } from '../schema/db.js';
import { persistedLines, segmentFolder } from '../schema/result-groups.js';
import type { OutputDraftsTable } from '../schema/tables.js';
import { resultsInOrder } from './result-segments.js';

export type OutputKind = OutputDraftsTable['kind'];
const KINDS: readonly OutputKind[] = ['output', 'errors'];

/** Where a batch's file of this kind is published. */
export function outputKey(batchId: string, kind: OutputKind): string {
  return `outputs/${batchId}/${kind}.jsonl`;
}

/** The next_line of a file whose every line is written: past any input line. */
const ALL_LINES = 2 ** 31 - 1;

/** How far past `through` (every line before it final) a draft looks for lines that already have a result. */
const LOOKAHEAD_LINES = 1_000_000;

interface Draft {
  kind: OutputKind;
  uploadId: string;
  parts: UploadedPart[];
  nextLine: number;
  lines: number;
  tailKey: string | null;
  tailBytes: number;
  tailLines: number;
  completedBytes: number | null;
}

/** The lines of one file gathered since its last part: its tail (read back) and new ones. */
interface Gathered {
  draft: Draft;
  pieces: Buffer[];
  bytes: number;
  lines: number;
  /** Lines gathered in this call (the tail's are not). */
  fresh: number;
}

export interface CompletedFile {
  lines: number;
  bytes: number;
}

export interface OutputDeps {
  db: Db;
  store: FileStore;
  config: Config;
  log: Logger;
}

/** Told how many lines a call has written so far (an activity heartbeats with it). */
type Progress = (written: number) => void;

export function createOutputDrafts(deps: OutputDeps) {
  const { db, store, config, log } = deps;
  // Each part but the last at least the store's minimum (S3's 5 MiB).
  const partBytes = Math.max(config.batch.outputPartBytes, store.minPartBytes);
  const windowBytes = config.batch.resultReadBytes;

  async function load(batchId: string): Promise<Map<OutputKind, Draft>> {
    const rows = await db.selectFrom('output_drafts').selectAll().where('batch_id', '=', batchId).execute();
    return new Map(
      rows.map((r) => [
        r.kind,
        {
          kind: r.kind,
          uploadId: r.upload_id,
          parts: r.parts,
          nextLine: r.next_line,
          lines: r.lines,
          tailKey: r.tail_key,
          tailBytes: r.tail_bytes,
          tailLines: r.tail_lines,
          completedBytes: r.completed_bytes,
        },
      ]),
    );
  }

  /** The batch's two drafts, started if they are not yet (of two starting at once, the first stays). */
  async function open(batchId: string): Promise<Record<OutputKind, Draft>> {
    let drafts = await load(batchId);
    const missing = KINDS.filter((kind) => !drafts.has(kind));
    for (const kind of missing) {
      const key = outputKey(batchId, kind);
      const uploadId = await store.startUpload(key);
      const inserted = await db
        .insertInto('output_drafts')
        .values({ batch_id: batchId, kind, upload_id: uploadId, parts: jsonb([]) })
        .onConflict((c) => c.columns(['batch_id', 'kind']).doNothing())
        .executeTakeFirst();
      if (inserted.numInsertedOrUpdatedRows === 0n) await store.abortUpload(key, uploadId);
    }
    if (missing.length > 0) drafts = await load(batchId);
    const output = drafts.get('output');
    const errors = drafts.get('errors');
    if (output === undefined || errors === undefined) throw new Error(`the output drafts of ${batchId} are gone`);
    return { output, errors };
  }

  /**
   * Records where a draft has come to, unless another attempt moved it meanwhile (then this one
   * stops: its update is refused). The tail it replaced is removed after.
   */
  async function record(batchId: string, draft: Draft, next: Partial<Draft>): Promise<void> {
    const updated: Draft = { ...draft, ...next };
    const result = await db
      .updateTable('output_drafts')
      .set({
        parts: jsonb(updated.parts),
        next_line: updated.nextLine,
        lines: updated.lines,
        tail_key: updated.tailKey,
        tail_bytes: updated.tailBytes,
        tail_lines: updated.tailLines,
        completed_bytes: updated.completedBytes,
      })
      .where('batch_id', '=', batchId)
      .where('kind', '=', draft.kind)
      .where('upload_id', '=', draft.uploadId)
      .where('next_line', '=', draft.nextLine)
      .where('completed_bytes', 'is', null)
      .executeTakeFirst();
    if (result.numUpdatedRows === 0n)
      throw new Error(`the ${draft.kind} file of ${batchId} was moved on by another attempt; this one stops`);
    const replaced = draft.tailKey;
    Object.assign(draft, next);
    if (replaced !== null && replaced !== draft.tailKey)
      await store.delete(replaced).catch((err: unknown) => {
        log.warn({ batchId, key: replaced, err: (err as Error).message }, 'could not remove a replaced output tail');
      });
  }

  /** Writes what is gathered (the tail included) as the draft's next part, up to `nextLine`. */
  async function writePart(batchId: string, g: Gathered, nextLine: number): Promise<void> {
    const { draft } = g;
    const offset = draft.parts.reduce((sum, p) => sum + p.bytes, 0);
    const part = await store.writePart(
      outputKey(batchId, draft.kind),
      draft.uploadId,
      { number: draft.parts.length + 1, offset },
      g.pieces,
    );
    await record(batchId, draft, {
      parts: [...draft.parts, part],
      nextLine,
      lines: draft.lines - draft.tailLines + g.lines,
      tailKey: null,
      tailBytes: 0,
      tailLines: 0,
    });
    Object.assign(g, { pieces: [], bytes: 0, lines: 0, fresh: 0 });
  }

  /** Lines too few bytes for a part (a store with a minimum part size): an object of their own until they are not. */
  async function writeTail(batchId: string, g: Gathered, nextLine: number): Promise<void> {
    const { draft } = g;
    const key = `${segmentFolder(batchId)}${draft.kind}-tail-${randomBytes(8).toString('hex')}`;
    const writer = await store.createWriter(key);
    try {
      await writeChunks(writer.stream, g.pieces);
      await writer.commit();
    } catch (err) {
      await writer.abort();
      throw err;
    }
    await record(batchId, draft, {
      nextLine,
      lines: draft.lines - draft.tailLines + g.lines,
      tailKey: key,
      tailBytes: g.bytes,
      tailLines: g.lines,
    });
    g.fresh = 0;
  }

  async function readTail(draft: Draft): Promise<Buffer[]> {
    if (draft.tailKey === null) return [];
    const pieces: Buffer[] = [];
    for await (const piece of store.read(draft.tailKey)) pieces.push(Buffer.from(piece as Uint8Array));
    const bytes = pieces.reduce((sum, p) => sum + p.length, 0);
    if (bytes !== draft.tailBytes)
      throw new UploadLostError(`the tail ${draft.tailKey} holds ${bytes} bytes, not ${draft.tailBytes}`);
    return pieces;
  }

  /**
   * Writes the results of lines below `limit` that are not in the files yet; `final` (at finalize,
   * when every line has its result) writes them all, and the last parts.
   */
  async function advance(batchId: string, limit: number, final: boolean, progress?: Progress): Promise<number> {
    const drafts = await open(batchId);
    const gathered = {} as Record<OutputKind, Gathered>;
    let from = ALL_LINES;
    for (const kind of KINDS) {
      const draft = drafts[kind];
      gathered[kind] = {
        draft,
        pieces: await readTail(draft),
        bytes: draft.tailBytes,
        lines: draft.tailLines,
        fresh: 0,
      };
      if (draft.completedBytes === null) from = Math.min(from, draft.nextLine);
    }
    const end = final ? ALL_LINES : limit;
    if (from >= end) return 0;
    let written = 0;
    const span = final ? { from } : { from, to: limit };
    for await (const result of resultsInOrder(db, store, batchId, windowBytes, span)) {
      const g = gathered[result.ok ? 'output' : 'errors'];
      if (result.line < g.draft.nextLine || g.draft.completedBytes !== null) continue;
      g.pieces.push(result.output);
      g.bytes += result.output.length;
      g.lines++;
      g.fresh++;
      if (g.bytes >= partBytes) await writePart(batchId, g, result.line + 1);
      if (++written % 2000 === 0) progress?.(written);
    }
    for (const kind of KINDS) {
      const g = gathered[kind];
      if (g.draft.completedBytes !== null || g.draft.nextLine >= end) continue;
      if (g.bytes > 0 && (final || g.bytes >= store.minPartBytes)) await writePart(batchId, g, end);
      else if (g.fresh > 0) await writeTail(batchId, g, end);
      else await record(batchId, g.draft, { nextLine: end });
    }
    return written;
  }

  /** Makes each finished upload its file; a kind without lines has none (null). */
  async function complete(batchId: string): Promise<Record<OutputKind, CompletedFile | null>> {
    const drafts = await open(batchId);
    const files = {} as Record<OutputKind, CompletedFile | null>;
    for (const kind of KINDS) {
      const draft = drafts[kind];
      if (draft.completedBytes === null) {
        if (draft.nextLine !== ALL_LINES) throw new Error(`the ${kind} file of ${batchId} is not finished`);
        const key = outputKey(batchId, kind);
        let bytes = 0;
        if (draft.parts.length > 0) bytes = (await store.completeUpload(key, draft.uploadId, draft.parts)).bytes;
        else await store.abortUpload(key, draft.uploadId);
        await record(batchId, draft, { completedBytes: bytes });
      }
      files[kind] = draft.lines === 0 ? null : { lines: draft.lines, bytes: draft.completedBytes ?? 0 };
    }
    return files;
  }

  /** Drops the batch's drafts: uploads not completed are aborted (completed ones are its files and stay). */
  async function discard(batchId: string): Promise<void> {
    for (const draft of (await load(batchId)).values()) {
      if (draft.completedBytes === null) await store.abortUpload(outputKey(batchId, draft.kind), draft.uploadId);
      if (draft.tailKey !== null) await store.delete(draft.tailKey);
    }
    await db.deleteFrom('output_drafts').where('batch_id', '=', batchId).execute();
  }

  return {
    /**
     * While the batch runs: writes the lines below `through` (final: their chunks ended) and those
     * after it that already have a result, up to the first that has none.
     */
    async draft(batchId: string, through: number, progress?: Progress): Promise<{ limit: number; written: number }> {
      const { done } = await persistedLines(db, batchId, { firstLine: through, lastLine: through + LOOKAHEAD_LINES });
      let limit = through;
      while (done.has(limit)) limit++;
      return { limit, written: await advance(batchId, limit, false, progress) };
    },
    /**
     * At finalize (every line has its result): the files, whole. Drafts found lost or inconsistent
     * are dropped and both files are written again from the first line.
     */
    async finish(batchId: string, progress?: Progress): Promise<Record<OutputKind, CompletedFile | null>> {
      try {
        await advance(batchId, ALL_LINES, true, progress);
        return await complete(batchId);
      } catch (err) {
        if (!(err instanceof UploadLostError)) throw err;
        log.warn(
          { batchId, reason: err.message },
          'the files written while the batch ran are lost; writing them again',
        );
        await discard(batchId);
        await advance(batchId, ALL_LINES, true, progress);
        return complete(batchId);
      }
    },
    discard,
  };
}

export type OutputDrafts = ReturnType<typeof createOutputDrafts>;
