// Driving a test stack's batches through the OpenAI SDK: input files, submitting, waiting, and what came out.
import OpenAI, { toFile } from 'openai';
import { expect } from 'vitest';

import { resultRow, type ResultRow } from '../../activities/results.js';
import { NEW_BATCH } from '../../api/services/batches.js';
import { newId, nowSeconds } from '../../lib/ids.js';
import type { TestStack } from './stack.js';

export interface RequestLineOptions {
  model: string;
  endpoint?: string;
  count: number;
  body?: (i: number) => Record<string, unknown>;
}

/** A JSONL batch input of `count` chat requests (or whatever `body` builds). */
export function batchLines(o: RequestLineOptions): string {
  const url = o.endpoint ?? '/v1/chat/completions';
  const lines: string[] = [];
  for (let i = 0; i < o.count; i++) {
    const body = o.body?.(i) ?? {
      model: o.model,
      messages: [{ role: 'user', content: `Question number ${i}` }],
      max_tokens: 16,
    };
    lines.push(JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url, body }));
  }
  return `${lines.join('\n')}\n`;
}

export async function uploadBatchFile(
  openai: OpenAI,
  content: string | Buffer,
  filename = 'input.jsonl',
): Promise<OpenAI.Files.FileObject> {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return openai.files.create({ file: await toFile(bytes, filename), purpose: 'batch' });
}

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

export async function waitForBatch(openai: OpenAI, id: string, timeoutMs = 90_000): Promise<OpenAI.Batches.Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await openai.batches.retrieve(id);
    if (TERMINAL.has(batch.status)) return batch;
    if (Date.now() > deadline) throw new Error(`batch ${id} still ${batch.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface ParsedOutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

export async function fileLines(openai: OpenAI, fileId: string | null | undefined): Promise<ParsedOutputLine[]> {
  if (fileId === null || fileId === undefined) return [];
  const text = await (await openai.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as ParsedOutputLine);
}

export interface SubmitOptions {
  endpoint?: '/v1/chat/completions' | '/v1/completions' | '/v1/embeddings' | '/v1/responses';
  completionWindow?: string;
  priority?: number;
  metadata?: Record<string, string>;
}

/** Uploads the content and creates a batch on it; returns the new batch. */
export async function submitBatch(
  stack: TestStack,
  content: string | Buffer,
  options: SubmitOptions = {},
): Promise<OpenAI.Batches.Batch> {
  const file = await uploadBatchFile(stack.openai, content);
  const body: Record<string, unknown> = {
    input_file_id: file.id,
    endpoint: options.endpoint ?? '/v1/chat/completions',
    completion_window: options.completionWindow ?? '24h',
  };
  if (options.priority !== undefined) body.priority = options.priority;
  if (options.metadata !== undefined) body.metadata = options.metadata;
  return stack.openai.batches.create(body as unknown as OpenAI.Batches.BatchCreateParams);
}

/** Submits the content and waits for the batch to end; returns it as it ended. */
export async function runBatch(
  stack: TestStack,
  content: string | Buffer,
  timeoutMs?: number,
  options: SubmitOptions = {},
): Promise<OpenAI.Batches.Batch> {
  return waitForBatch(stack.openai, (await submitBatch(stack, content, options)).id, timeoutMs);
}

export interface Disruption {
  /** Finished requests to wait for before disrupting, and for how long (default: waitForProgress's). */
  after: number;
  afterTimeoutMs?: number;
  /** How long the batch may then take to end (default: waitForBatch's). */
  timeoutMs?: number;
}

/** Submits the content, lets `when.after` requests finish, runs `disrupt` on the running batch, and waits for it to end. */
export async function runDisruptedBatch(
  stack: TestStack,
  content: string,
  when: Disruption,
  disrupt: (created: OpenAI.Batches.Batch) => Promise<void>,
): Promise<OpenAI.Batches.Batch> {
  const created = await submitBatch(stack, content);
  await waitForProgress(stack.openai, created.id, when.after, when.afterTimeoutMs);
  await disrupt(created);
  return waitForBatch(stack.openai, created.id, when.timeoutMs);
}

/** Waits until the batch's counts reach `done` finished requests. */
export async function waitForProgress(
  openai: OpenAI,
  id: string,
  done: number,
  timeoutMs = 60_000,
): Promise<OpenAI.Batches.Batch> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const batch = await openai.batches.retrieve(id);
    const counts = batch.request_counts;
    if (counts !== undefined && counts.completed + counts.failed >= done) return batch;
    if (TERMINAL.has(batch.status))
      throw new Error(`batch ${id} ended ${batch.status} before ${done} requests finished`);
    if (Date.now() > deadline) throw new Error(`batch ${id} did not reach ${done} finished requests`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The lines of the output and error files, and how many times each custom_id stands in them. */
export async function outputsByCustomId(
  openai: OpenAI,
  batch: OpenAI.Batches.Batch,
): Promise<{ ok: ParsedOutputLine[]; failed: ParsedOutputLine[]; counts: Map<string, number> }> {
  const ok = await fileLines(openai, batch.output_file_id);
  const failed = await fileLines(openai, batch.error_file_id);
  const counts = new Map<string, number>();
  for (const line of [...ok, ...failed]) counts.set(line.custom_id, (counts.get(line.custom_id) ?? 0) + 1);
  return { ok, failed, counts };
}

export function expectedIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `req-${i}`);
}

export type BatchOutputs = Awaited<ReturnType<typeof outputsByCustomId>>;

/** Whether a file's lines of a `batchLines` input (custom_id `req-<i>`) stand in input order. */
export function inInputOrder(lines: ParsedOutputLine[]): boolean {
  const order = lines.map((l) => Number(l.custom_id.slice('req-'.length)));
  return order.every((n, i) => i === 0 || n > (order[i - 1] ?? -1));
}

/**
 * Each custom_id of a `batchLines` input of `count` lines stands exactly once across the output and
 * error files, and each file is in input order.
 */
export async function expectEachLineOnce(
  openai: OpenAI,
  batch: OpenAI.Batches.Batch,
  count: number,
): Promise<BatchOutputs> {
  const outputs = await outputsByCustomId(openai, batch);
  expect([...outputs.counts.keys()].sort()).toEqual(expectedIds(count).sort());
  expect([...outputs.counts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  expect(inInputOrder(outputs.ok), 'output file in input order').toBe(true);
  expect(inInputOrder(outputs.failed), 'error file in input order').toBe(true);
  return outputs;
}

/** The batch answered all its `count` lines, and each custom_id stands exactly once in its files. */
export async function expectEveryLineDone(
  openai: OpenAI,
  batch: OpenAI.Batches.Batch,
  count: number,
): Promise<BatchOutputs> {
  expect(batch.request_counts).toEqual({ total: count, completed: count, failed: 0 });
  return expectEachLineOnce(openai, batch, count);
}

/**
 * A batch of `count` lines recorded as running, with no workflow: a test then plays its chunk attempts,
 * its finalize or its reconciler itself. Returns its id and its input's storage key.
 */
export async function insertRunningBatch(
  stack: TestStack,
  o: { model: string; count: number; status?: 'in_progress' | 'finalizing'; lines?: string },
): Promise<{ batchId: string; inputKey: string }> {
  const file = await uploadBatchFile(stack.openai, o.lines ?? batchLines({ model: o.model, count: o.count }));
  const project = await stack.db
    .selectFrom('projects')
    .select('id')
    .where('name', '=', 'default')
    .executeTakeFirstOrThrow();
  const batchId = newId('batch_');
  await stack.db
    .insertInto('batches')
    .values({
      ...NEW_BATCH,
      id: batchId,
      project_id: project.id,
      endpoint: '/v1/chat/completions',
      input_file_id: file.id,
      completion_window: '24h',
      created_at: nowSeconds(),
      expires_at: nowSeconds() + 86_400,
      status: o.status ?? 'in_progress',
      in_progress_at: nowSeconds(),
      model: o.model,
      request_total: o.count,
    })
    .execute();
  const { storage_key } = await stack.db
    .selectFrom('files')
    .select('storage_key')
    .where('id', '=', file.id)
    .executeTakeFirstOrThrow();
  return { batchId, inputKey: storage_key };
}

/** The engine's answer for one line as a GPU worker would persist it, carrying `body`. */
export function answeredRow(
  batchId: string,
  line: number,
  body: Record<string, unknown>,
  requestId = `r-${line}`,
): ResultRow {
  return resultRow(batchId, line, `req-${line - 1}`, {
    kind: 'ok',
    status: 200,
    requestId,
    raw: JSON.stringify(body),
    body,
    attempts: 1,
    errors: [],
  });
}
