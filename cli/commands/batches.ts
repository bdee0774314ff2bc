// `gpu-batch submit|watch|top|status|list|cancel|retry|download`: everyday batch work from the command
// line, all through the API (the same calls the openai SDK makes).
//
// Exit codes: 0 the batch completed and every request succeeded; 2 it completed but some requests
// failed (see the error file); 1 it failed, expired or was cancelled, or the command itself failed;
// 130 interrupted while watching (the batch goes on).
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type OpenAI from 'openai';
import { toFile } from 'openai';

import { formatBytes } from '../../lib/units.js';
import { api } from '../clients.js';
import { date, EXIT, idCommand, jsonOption, print } from '../output.js';
import { top } from '../top.js';
import { watchBatch } from '../watch.js';

type Batch = OpenAI.Batches.Batch;
type Endpoint = OpenAI.Batches.BatchCreateParams['endpoint'];

/** What a finished batch means for the shell. */
export function exitCodeOf(batch: Batch): number {
  if (batch.status !== 'completed') return EXIT.failed;
  return (batch.request_counts?.failed ?? 0) > 0 ? EXIT.partial : EXIT.ok;
}

/** The `url` of the first request line: every line of a batch must name the same endpoint. */
async function endpointOf(file: string): Promise<Endpoint> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      let url: unknown;
      try {
        url = (JSON.parse(line.replace(/^\uFEFF/, '')) as { url?: unknown }).url;
      } catch {
        throw new Error(`${file}: the first line is not JSON, so the endpoint cannot be read from it; pass --endpoint`);
      }
      if (typeof url !== 'string') throw new Error(`${file}: the first line has no "url"; pass --endpoint`);
      return url as Endpoint;
    }
  } finally {
    lines.close();
  }
  throw new Error(`${file} has no request lines`);
}

function parseMetadata(pairs: string[] | undefined): Record<string, string> | undefined {
  if (pairs === undefined || pairs.length === 0) return undefined;
  return Object.fromEntries(
    pairs.map((p) => {
      const at = p.indexOf('=');
      if (at <= 0) throw new Error(`--metadata takes key=value, not "${p}"`);
      return [p.slice(0, at), p.slice(at + 1)];
    }),
  );
}

async function download(openai: OpenAI, fileId: string, target: string): Promise<number> {
  const response = await openai.files.content(fileId);
  if (response.body === null) throw new Error(`file ${fileId} has no content`);
  const out = createWriteStream(target);
  await pipeline(Readable.fromWeb(response.body), out);
  return out.bytesWritten;
}

/** Downloads a finished batch's files; returns what was written. */
async function downloadResults(
  openai: OpenAI,
  batch: Batch,
  targets: { output?: string; errors?: string },
): Promise<{ file: string; kind: string; bytes: number }[]> {
  const written: { file: string; kind: string; bytes: number }[] = [];
  if (targets.output !== undefined && batch.output_file_id)
    written.push({
      file: targets.output,
      kind: 'output',
      bytes: await download(openai, batch.output_file_id, targets.output),
    });
  if (targets.errors !== undefined && batch.error_file_id)
    written.push({
      file: targets.errors,
      kind: 'errors',
      bytes: await download(openai, batch.error_file_id, targets.errors),
    });
  return written;
}

function summary(batch: Batch): string {
  const c = batch.request_counts ?? { total: 0, completed: 0, failed: 0 };
  const lines = [`${batch.id} ${batch.status}: ${c.total} requests, ${c.completed} completed, ${c.failed} failed`];
  if (batch.output_file_id) lines.push(`  output file  ${batch.output_file_id}`);
  if (batch.error_file_id) lines.push(`  error file   ${batch.error_file_id}`);
  for (const e of batch.errors?.data?.slice(0, 10) ?? [])
    lines.push(`  line ${e.line ?? '-'}: ${e.message ?? e.code ?? ''}`);
  if ((batch.errors?.data?.length ?? 0) > 10)
    lines.push(`  ... ${(batch.errors?.data?.length ?? 0) - 10} more errors (gpu-batch status ${batch.id} --json)`);
  if (batch.output_file_id || batch.error_file_id) lines.push(`  download with: gpu-batch download ${batch.id}`);
  return lines.join('\n');
}

function details(batch: Batch): string {
  const c = batch.request_counts ?? { total: 0, completed: 0, failed: 0 };
  const extra = batch as Batch & { priority?: number | null; retry_of?: string | null };
  return [
    `${batch.id}  ${batch.status}`,
    `  endpoint     ${batch.endpoint}  (window ${batch.completion_window}${extra.priority === undefined || extra.priority === null ? '' : `, priority ${extra.priority}`})`,
    `  model        ${batch.model ?? '-'}`,
    `  requests     ${c.total} total, ${c.completed} completed, ${c.failed} failed`,
    `  input file   ${batch.input_file_id}`,
    `  output file  ${batch.output_file_id ?? '-'}`,
    `  error file   ${batch.error_file_id ?? '-'}`,
    `  created      ${date(batch.created_at)}   expires ${date(batch.expires_at)}`,
    ...(batch.in_progress_at ? [`  started      ${date(batch.in_progress_at)}`] : []),
    ...(batch.completed_at ? [`  completed    ${date(batch.completed_at)}`] : []),
    ...(batch.failed_at ? [`  failed       ${date(batch.failed_at)}`] : []),
    ...(batch.expired_at ? [`  expired      ${date(batch.expired_at)}`] : []),
    ...(batch.cancelled_at ? [`  cancelled    ${date(batch.cancelled_at)}`] : []),
    ...(extra.retry_of ? [`  retry of     ${extra.retry_of}`] : []),
    ...(batch.metadata && Object.keys(batch.metadata).length > 0
      ? [
          `  metadata     ${Object.entries(batch.metadata)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
        ]
      : []),
    ...(batch.errors?.data ?? []).slice(0, 20).map((e) => `  line ${e.line ?? '-'}: ${e.message ?? e.code ?? ''}`),
  ].join('\n');
}

/** --interval in seconds as milliseconds: at least 200, 2 s for what is not a number. */
function pollEvery(seconds: string): number {
  return Math.max(200, Number(seconds) * 1000 || 2000);
}

interface WatchFlags {
  wait: boolean;
  interval: string;
  output?: string;
  errors?: string;
  json?: boolean;
}

/** Watches to the end (unless --no-wait), downloads what was asked for, and sets the exit code. */
async function follow(batch: Batch, flags: WatchFlags): Promise<void> {
  const openai = api();
  if (!flags.wait) {
    print(
      flags.json === true,
      batch,
      () => `${batch.id} ${batch.status}\n  watch it with: gpu-batch watch ${batch.id}`,
    );
    return;
  }
  const intervalMs = pollEvery(flags.interval);
  const interrupt = new AbortController();
  const onSigint = (): void => {
    interrupt.abort(new Error('interrupted'));
  };
  process.once('SIGINT', onSigint);
  let final: Batch;
  try {
    final = await watchBatch(openai, batch.id, { intervalMs, quiet: flags.json === true }, interrupt.signal);
  } catch (err) {
    if (!interrupt.signal.aborted) throw err;
    process.stderr.write(`\nStopped watching; ${batch.id} goes on. Watch it again with: gpu-batch watch ${batch.id}\n`);
    process.exitCode = EXIT.interrupted;
    return;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  const written = await downloadResults(openai, final, {
    ...(flags.output !== undefined ? { output: flags.output } : {}),
    ...(flags.errors !== undefined ? { errors: flags.errors } : {}),
  });
  print(flags.json === true, final, () =>
    [summary(final), ...written.map((w) => `  wrote ${w.kind} to ${w.file} (${formatBytes(w.bytes)})`)].join('\n'),
  );
  process.exitCode = exitCodeOf(final);
}

function watchOptions(command: Command): Command {
  return command
    .option('--no-wait', 'return as soon as the batch is created, without watching it')
    .option('--interval <seconds>', 'how often to poll while watching', '2')
    .option('-o, --output <file>', 'when it is done, write the output file here')
    .option('-e, --errors <file>', 'when it is done, write the error file here');
}

export function registerBatchCommands(program: Command): void {
  const json = jsonOption('machine-readable output (the batch object, as the API answers it)');

  watchOptions(
    program
      .command('submit <file>')
      .description('upload a JSONL batch file, create a batch on it, and watch it to the end')
      .option('--endpoint <url>', 'the endpoint the requests are for (default: the first line\'s "url")')
      .option('--window <duration>', 'completion window, e.g. 24h or 2d', '24h')
      .option(
        '--metadata <key=value>',
        'metadata to attach (repeat for more)',
        (value: string, previous: string[]) => [...previous, value],
        [] as string[],
      )
      .option('--priority <1-5>', 'scheduling priority: 1 runs first, 5 last (default 3)'),
  )
    .addOption(json)
    .action(
      async (
        file: string,
        opts: WatchFlags & { endpoint?: string; window: string; metadata?: string[]; priority?: string },
      ) => {
        const openai = api();
        const size = (await stat(file)).size;
        const endpoint = (opts.endpoint as Endpoint | undefined) ?? (await endpointOf(file));
        const metadata = parseMetadata(opts.metadata);
        const quiet = opts.json === true;
        if (!quiet) process.stderr.write(`Uploading ${path.basename(file)} (${formatBytes(size)})...\n`);
        const started = Date.now();
        const uploaded = await openai.files.create({
          file: await toFile(createReadStream(file), path.basename(file)),
          purpose: 'batch',
        });
        if (!quiet)
          process.stderr.write(`Uploaded as ${uploaded.id} in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
        const body: Record<string, unknown> = { input_file_id: uploaded.id, endpoint, completion_window: opts.window };
        if (metadata !== undefined) body.metadata = metadata;
        if (opts.priority !== undefined) body.priority = Number(opts.priority);
        const batch = await openai.batches.create(body as unknown as OpenAI.Batches.BatchCreateParams);
        if (!quiet) process.stderr.write(`Created ${batch.id} (${endpoint})\n`);
        await follow(batch, opts);
      },
    );

  watchOptions(program.command('watch <batchId>').description('watch a batch with a progress bar until it ends'))
    .addOption(json)
    .action(async (batchId: string, opts: WatchFlags) => {
      await follow(await api().batches.retrieve(batchId), opts);
    });

  program
    .command('top')
    .description('every unfinished batch with its phase, progress, rate and ETA, refreshed in place (Ctrl-C stops)')
    .option('--interval <seconds>', 'how often to refresh', '2')
    .option('--once', 'print the table once and exit')
    .option('--scan <n>', 'look at no more than this many of the newest batches', '1000')
    .action(async (opts: { interval: string; once?: boolean; scan: string }) => {
      const stop = new AbortController();
      const onSigint = (): void => {
        stop.abort(new Error('interrupted'));
      };
      process.once('SIGINT', onSigint);
      try {
        await top(
          api(),
          {
            intervalMs: pollEvery(opts.interval),
            once: opts.once === true,
            scan: Math.max(1, Number(opts.scan) || 1000),
          },
          stop.signal,
        );
      } catch (err) {
        // Ctrl-C is how a top ends.
        if (!stop.signal.aborted) throw err;
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });

  idCommand(
    program,
    'status <batchId>',
    "a batch's status, counts, files and errors",
    json,
    (batchId) => api().batches.retrieve(batchId),
    details,
  );

  program
    .command('list')
    .description('the latest batches, newest first')
    .option('--limit <n>', 'how many', '20')
    .option('--after <batchId>', 'continue after this batch')
    .addOption(json)
    .action(async (opts: { limit: string; after?: string; json?: boolean }) => {
      const page = await api().batches.list({
        limit: Number(opts.limit),
        ...(opts.after !== undefined ? { after: opts.after } : {}),
      });
      const rows = page.data;
      print(opts.json === true, { data: rows, has_more: page.has_more }, () => {
        if (rows.length === 0) return 'No batches.';
        const lines = rows.map((b) => {
          const c = b.request_counts ?? { total: 0, completed: 0, failed: 0 };
          return `${b.id.padEnd(31)} ${b.status.padEnd(11)} ${String(c.completed + c.failed).padStart(7)}/${String(c.total).padEnd(7)} ${String(c.failed).padStart(6)} failed  ${date(b.created_at)}  ${b.model ?? ''}`;
        });
        if (page.has_more) lines.push(`(more: gpu-batch list --after ${rows.at(-1)?.id ?? ''})`);
        return lines.join('\n');
      });
    });

  idCommand(
    program,
    'cancel <batchId>',
    'cancel a batch: what finished is kept, the rest is reported as cancelled',
    json,
    (batchId) => api().batches.cancel(batchId),
    (batch) => `${batch.id} ${batch.status}`,
  );

  watchOptions(
    program
      .command('retry <batchId>')
      .description("run a finished batch's failed, expired or cancelled requests again, as a new batch")
      .option('--window <duration>', "completion window of the new batch (default: the original's)"),
  )
    .addOption(json)
    .action(async (batchId: string, opts: WatchFlags & { window?: string }) => {
      const batch: Batch = await api().post(`/batches/${batchId}/retry`, {
        body: opts.window !== undefined ? { completion_window: opts.window } : {},
      });
      if (opts.json !== true) process.stderr.write(`Created ${batch.id} to retry the failed requests of ${batchId}\n`);
      await follow(batch, opts);
    });

  program
    .command('download <batchId>')
    .description("write a batch's output and error files")
    .option('-o, --output <file>', 'where the output file goes (default: <batchId>.output.jsonl)')
    .option('-e, --errors <file>', 'where the error file goes (default: <batchId>.errors.jsonl)')
    .addOption(json)
    .action(async (batchId: string, opts: { output?: string; errors?: string; json?: boolean }) => {
      const openai = api();
      const batch = await openai.batches.retrieve(batchId);
      if (batch.output_file_id == null && batch.error_file_id == null)
        throw new Error(`${batchId} has no files yet (it is ${batch.status})`);
      const written = await downloadResults(openai, batch, {
        output: opts.output ?? `${batchId}.output.jsonl`,
        errors: opts.errors ?? `${batchId}.errors.jsonl`,
      });
      print(opts.json === true, written, () =>
        written.map((w) => `wrote ${w.kind} to ${w.file} (${formatBytes(w.bytes)})`).join('\n'),
      );
    });
}
